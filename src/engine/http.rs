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
use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::pipeline::Pipeline;
use super::requests::RequestStats;
use crate::extension::ExecuteError;
use crate::extension::{HttpExchange, Services};
use crate::net::{
    BodyError, HttpRequest, HttpResponse, ListenerKey, RequestBody, linger, read_limited,
};

/// Largest request body a pipeline accepts.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The routes of every `http.server` module of one engine, by listener.
#[derive(Default)]
pub(crate) struct HttpRouter {
    servers: HashMap<ListenerKey, ServerRoutes>,
}

/// One server's routes: a path tree (matchit, the router axum uses: static segments beat
/// parameters, whatever the declaration order) whose leaves hold each method's pipeline.
#[derive(Default)]
pub(crate) struct ServerRoutes {
    paths: matchit::Router<usize>,
    entries: Vec<PathEntry>,
}

/// The routes of one path pattern, by method.
struct PathEntry {
    pattern: String,
    routes: Vec<Route>,
}

struct Route {
    method: String,
    pipeline: Arc<Pipeline>,
    requests: Arc<RequestStats>,
}

/// Why a route cannot be added.
#[derive(Debug)]
pub(crate) enum RouteError {
    /// Another pipeline already serves a request this route would: `route` is that pipeline's
    /// method and path.
    Clash { pipeline: String, route: String },
    /// The path is not a route pattern.
    Invalid(String),
}

enum RouteMatch<'r> {
    Found(&'r Route, Map<String, Value>),
    WrongMethod(Vec<&'r str>),
    NotFound,
}

/// `path` with empty segments dropped (`/a//b/` is `/a/b`), as routes and requests are compared.
fn normalized(path: &str) -> std::borrow::Cow<'_, str> {
    let clean =
        path.starts_with('/') && !path.contains("//") && (path.len() == 1 || !path.ends_with('/'));
    if clean {
        return path.into();
    }
    let mut out = String::with_capacity(path.len() + 1);
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    out.into()
}

impl HttpRouter {
    /// Declares a server, so that it answers 404 even with no routes.
    pub(crate) fn add_server(&mut self, key: ListenerKey) {
        self.servers.entry(key).or_default();
    }

    /// Adds a route. A route that would serve a request another one already serves (the same
    /// path and method, `*` meaning every method, or the same path with other parameter names)
    /// is a clash.
    pub(crate) fn add_route(
        &mut self,
        key: &ListenerKey,
        method: &str,
        path: &str,
        pipeline: Arc<Pipeline>,
        requests: Arc<RequestStats>,
    ) -> Result<(), RouteError> {
        let server = self.servers.entry(key.clone()).or_default();
        let pattern = normalized(path).into_owned();
        let route = Route {
            method: method.to_owned(),
            pipeline,
            requests,
        };
        let index = match server.paths.insert(pattern.clone(), server.entries.len()) {
            Ok(()) => {
                server.entries.push(PathEntry {
                    pattern,
                    routes: vec![route],
                });
                return Ok(());
            }
            Err(matchit::InsertError::Conflict { with }) => server
                .entries
                .iter()
                .position(|e| e.pattern == with)
                .ok_or(RouteError::Invalid(format!(
                    "path {path:?} conflicts with route {with:?}"
                )))?,
            Err(other) => {
                return Err(RouteError::Invalid(format!(
                    "path {path:?} is not a valid route: {other} (parameters are written {{name}}, a trailing catch-all {{*name}})"
                )));
            }
        };
        let entry = &mut server.entries[index];
        let clash = if entry.pattern != pattern {
            // The same path with other parameter names: one request, two pipelines.
            entry.routes.first()
        } else {
            entry
                .routes
                .iter()
                .find(|r| r.method == method || r.method == "*" || method == "*")
        };
        if let Some(existing) = clash {
            return Err(RouteError::Clash {
                pipeline: existing.pipeline.name().to_owned(),
                route: format!("{} {}", existing.method, entry.pattern),
            });
        }
        entry.routes.push(route);
        Ok(())
    }

    fn find(&self, key: &ListenerKey, method: &str, path: &str) -> Option<RouteMatch<'_>> {
        let server = self.servers.get(key)?;
        let path = normalized(path);
        let Ok(found) = server.paths.at(&path) else {
            return Some(RouteMatch::NotFound);
        };
        let entry = &server.entries[*found.value];
        let exact = entry
            .routes
            .iter()
            .find(|r| r.method == method || r.method == "*");
        // A GET route answers HEAD too (RFC 9110, 9.3.2): hyper sends the head without the body.
        let route = exact.or_else(|| {
            (method == "HEAD")
                .then(|| entry.routes.iter().find(|r| r.method == "GET"))
                .flatten()
        });
        let Some(route) = route else {
            let allowed = entry.routes.iter().map(|r| r.method.as_str()).collect();
            return Some(RouteMatch::WrongMethod(allowed));
        };
        // Path percent-decoding: `%20` is a space, and `+` stays `+` (that is form decoding).
        let params = found
            .params
            .iter()
            .map(|(name, value)| {
                let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                (name.to_owned(), Value::String(decoded.into_owned()))
            })
            .collect();
        Some(RouteMatch::Found(route, params))
    }

    /// Answers `request`, which arrived on listener `key`.
    pub(crate) async fn serve(
        &self,
        key: &ListenerKey,
        request: HttpRequest,
        services: &Services,
    ) -> HttpResponse {
        let found = self.find(key, request.method().as_str(), request.uri().path());
        let (route, params) = match found {
            Some(RouteMatch::Found(route, params)) => (route, params),
            unrouted => {
                // Owned only here: a routed request never copies its method and path.
                let method = request.method().as_str().to_owned();
                let path = request.uri().path().to_owned();
                // Answered without the body: read and discard it, so that a client that
                // writes its whole body before reading still gets the answer.
                linger(request.into_body());
                return unrouted_response(unrouted, method, path);
            }
        };
        let started = std::time::Instant::now();
        let response = run_route(route, request, params, services).await;
        route.requests.record(response.status(), started.elapsed());
        response
    }
}

/// The answer to a request no route takes.
fn unrouted_response(found: Option<RouteMatch<'_>>, method: String, path: String) -> HttpResponse {
    match found {
        Some(RouteMatch::WrongMethod(allowed)) => {
            let mut response = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "method not allowed", "method": method, "path": path, "allowed": allowed}),
            );
            if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
                response.headers_mut().insert(hyper::header::ALLOW, value);
            }
            response
        }
        Some(RouteMatch::NotFound) => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "not found", "method": method, "path": path}),
        ),
        // Found is taken before; None is a listener with no server in the live config.
        _ => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "no server is configured on this address in the live config", "path": path}),
        ),
    }
}

/// Runs the route's pipeline on `request` and turns its output into the response.
async fn run_route(
    route: &Route,
    request: HttpRequest,
    params: Map<String, Value>,
    services: &Services,
) -> HttpResponse {
    let (exchange, body) = HttpExchange::new(request, route.pipeline.takes_body());
    let input = match request_input(&exchange, body, params).await {
        Ok(input) => input,
        Err(response) => return response,
    };
    let ran = route.pipeline.run(&input, services, Some(&exchange)).await;
    if let Some(streamed) = exchange.take_response() {
        // A step answered with a stream (a proxy): that is the answer, whatever came after.
        return streamed.map(http_body_util::Either::Right);
    }
    match ran {
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
        Err(error @ ExecuteError::TimedOut { .. }) => json_response(
            StatusCode::GATEWAY_TIMEOUT,
            &json!({"error": error.to_string(), "pipeline": route.pipeline.name()}),
        ),
        Err(other) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": other.to_string()}),
        ),
    }
}

/// Builds the pipeline input from a request's head and, unless a step streams it, its body.
async fn request_input(
    exchange: &HttpExchange,
    body: Option<RequestBody>,
    params: Map<String, Value>,
) -> Result<Value, HttpResponse> {
    let parts = exchange.head();
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
    let bytes = match body {
        None => Ok(Bytes::new()),
        Some(body) => read_limited(body, MAX_BODY_BYTES).await,
    };
    let bytes = match bytes {
        Ok(bytes) => bytes,
        Err(error @ BodyError::TooLarge(_)) => {
            return Err(json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"error": format!("request {error}")}),
            ));
        }
        Err(error @ BodyError::TimedOut(_)) => {
            return Err(json_response(
                StatusCode::REQUEST_TIMEOUT,
                &json!({"error": error.to_string()}),
            ));
        }
        Err(error) => {
            return Err(json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": error.to_string()}),
            ));
        }
    };
    if !bytes.is_empty() {
        exchange.set_read_body(bytes.clone());
    }
    let body = body_value(&bytes);
    // Not `json!`: it would copy each part through `to_value`, a deep copy per request.
    let input: Map<String, Value> = [
        ("method", Value::from(parts.method.as_str())),
        ("path", Value::from(parts.uri.path())),
        ("query", Value::Object(query)),
        ("headers", Value::Object(headers)),
        ("params", Value::Object(params)),
        ("body", body),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    Ok(Value::Object(input))
}

/// A body as a pipeline sees it: JSON when it parses as JSON, else text, else (empty) null.
pub(crate) fn body_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }
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
    // Room for a typical small answer up front, instead of growing from empty in steps.
    let mut bytes = Vec::with_capacity(128);
    // Serializing a Value cannot fail.
    if serde_json::to_writer(&mut bytes, body).is_err() {
        bytes.clear();
    }
    let mut response = hyper::Response::new(crate::net::whole(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
