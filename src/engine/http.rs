//! The engine's side of HTTP: routes from `http` triggers, and requests turned into pipeline
//! input and pipeline output turned into responses.
//!
//! The pipeline input for an HTTP request is
//! `{"method", "path", "query", "headers", "params", "body"}`: query values are strings (a
//! repeated key gives a list), header names are lower case, `params` holds the `{name}`
//! segments of the route's path, and the body is JSON when it parses as JSON, else text, else
//! null.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::pipeline::Pipeline;
use crate::extension::ExecuteError;
use crate::extension::Services;
use crate::net::{HttpRequest, HttpResponse, ListenerKey};

/// Largest request body a pipeline accepts.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The routes of every `http.server` module of one engine, by listener.
#[derive(Default)]
pub(crate) struct HttpRouter {
    servers: HashMap<ListenerKey, ServerRoutes>,
}

pub(crate) struct ServerRoutes {
    routes: Vec<Route>,
}

struct Route {
    method: String,
    segments: Vec<PathSegment>,
    pipeline: Arc<Pipeline>,
}

#[derive(PartialEq)]
enum PathSegment {
    Literal(String),
    Param(String),
}

enum RouteMatch<'r> {
    Found(&'r Arc<Pipeline>, Map<String, Value>),
    WrongMethod(Vec<&'r str>),
    NotFound,
}

fn split_path(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

impl HttpRouter {
    /// Declares a server, so that it answers 404 even with no routes.
    pub(crate) fn add_server(&mut self, key: ListenerKey) {
        self.servers
            .entry(key)
            .or_insert_with(|| ServerRoutes { routes: Vec::new() });
    }

    /// Adds a route; on a clash returns the pipeline that already serves it.
    pub(crate) fn add_route(
        &mut self,
        key: &ListenerKey,
        method: &str,
        path: &str,
        pipeline: Arc<Pipeline>,
    ) -> Result<(), String> {
        let segments: Vec<PathSegment> = split_path(path)
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => PathSegment::Param(name.to_owned()),
                    None => PathSegment::Literal(s.to_owned()),
                },
            )
            .collect();
        let server = self
            .servers
            .entry(key.clone())
            .or_insert_with(|| ServerRoutes { routes: Vec::new() });
        if let Some(existing) = server.routes.iter().find(|r| {
            r.segments == segments && (r.method == method || r.method == "*" || method == "*")
        }) {
            return Err(existing.pipeline.name().to_owned());
        }
        server.routes.push(Route {
            method: method.to_owned(),
            segments,
            pipeline,
        });
        Ok(())
    }

    fn find(&self, key: &ListenerKey, method: &str, path: &str) -> Option<RouteMatch<'_>> {
        let server = self.servers.get(key)?;
        let mut allowed = Vec::new();
        for route in &server.routes {
            let Some(params) = match_path(&route.segments, path) else {
                continue;
            };
            if route.method == "*" || route.method == method {
                return Some(RouteMatch::Found(&route.pipeline, params));
            }
            allowed.push(route.method.as_str());
        }
        Some(if allowed.is_empty() {
            RouteMatch::NotFound
        } else {
            RouteMatch::WrongMethod(allowed)
        })
    }

    /// Answers `request`, which arrived on listener `key`.
    pub(crate) async fn serve(
        &self,
        key: &ListenerKey,
        request: HttpRequest,
        services: &Services,
    ) -> HttpResponse {
        let method = request.method().as_str().to_owned();
        let path = request.uri().path().to_owned();
        let (pipeline, params) = match self.find(key, &method, &path) {
            Some(RouteMatch::Found(pipeline, params)) => (pipeline, params),
            Some(RouteMatch::WrongMethod(allowed)) => {
                let mut response = json_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &json!({"error": "method not allowed", "method": method, "path": path, "allowed": allowed}),
                );
                if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
                    response.headers_mut().insert(hyper::header::ALLOW, value);
                }
                return response;
            }
            Some(RouteMatch::NotFound) => {
                return json_response(
                    StatusCode::NOT_FOUND,
                    &json!({"error": "not found", "method": method, "path": path}),
                );
            }
            None => {
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"error": "no server is configured on this address in the live config", "path": path}),
                );
            }
        };
        let input = match request_input(request, params).await {
            Ok(input) => input,
            Err(response) => return response,
        };
        match pipeline.run(&input, services).await {
            Ok(execution) => match execution.response() {
                Some(response) => pipeline_response(response),
                None => json_response(StatusCode::OK, &execution.output()),
            },
            Err(ExecuteError::StepFailed {
                pipeline,
                step,
                message,
            }) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": message, "pipeline": pipeline, "step": step}),
            ),
            Err(other) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": other.to_string()}),
            ),
        }
    }
}

fn match_path(segments: &[PathSegment], path: &str) -> Option<Map<String, Value>> {
    let mut params = Map::new();
    let mut parts = split_path(path);
    for segment in segments {
        let part = parts.next()?;
        match segment {
            PathSegment::Literal(literal) if literal == part => {}
            PathSegment::Literal(_) => return None,
            PathSegment::Param(name) => {
                params.insert(name.clone(), Value::String(percent_decode(part)));
            }
        }
    }
    parts.next().is_none().then_some(params)
}

fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

/// Builds the pipeline input from a request.
async fn request_input(
    request: HttpRequest,
    params: Map<String, Value>,
) -> Result<Value, HttpResponse> {
    let (parts, body) = request.into_parts();
    let mut query = Map::new();
    if let Some(raw) = parts.uri.query() {
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            match query.get_mut(key.as_ref()) {
                None => {
                    query.insert(key.into_owned(), Value::String(value.into_owned()));
                }
                Some(Value::Array(values)) => values.push(Value::String(value.into_owned())),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, Value::String(value.into_owned())]);
                }
            }
        }
    }
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let too_large = error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return Err(if too_large {
                json_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &json!({"error": format!("request body is over the limit of {MAX_BODY_BYTES} bytes")}),
                )
            } else {
                json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": format!("could not read the request body: {error}")}),
                )
            });
        }
    };
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": query,
        "headers": headers,
        "params": params,
        "body": body,
    }))
}

/// Turns a response step's output `{"status", "headers", "body"}` into a response.
fn pipeline_response(output: &Value) -> HttpResponse {
    let status = output
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = json_response(status, output.get("body").unwrap_or(&Value::Null));
    if let Some(Value::Object(headers)) = output.get("headers") {
        for (name, value) in headers {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(text),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

/// A JSON response with `status`.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    // Serializing a Value cannot fail.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = hyper::Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
