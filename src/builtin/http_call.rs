//! `step.http_call`: an outbound HTTP call whose answer later steps use.
//!
//! The call goes through an `http.upstream` (`upstream` and `path`: its pool, balancing,
//! health and retries) or to a fixed `url`. A `url`'s scheme and host are fixed at build:
//! templates may appear only in its path and query, so that a request cannot choose where the
//! gateway calls. The output is `{"status", "headers", "body"}`, the body parsed as JSON when
//! it is JSON, else text. A non-2xx answer is an output like any other (branch on its
//! `status`); a call that gets no answer fails the step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use hyper::Method;
use hyper::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::proxy::HeaderChanges;
use super::upstream::{self, OutBody, OutRequest, UpstreamPool};
use crate::config::{ConfigError, ConfigErrors, parse_duration, place};
use crate::extension::template::Template;
use crate::extension::{Step, StepBuild, StepContext, StepError};
use crate::net::read_limited;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CallSettings {
    #[serde(default = "get")]
    method: String,
    upstream: Option<String>,
    path: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<Value>,
    timeout: Option<String>,
    max_response_bytes: Option<usize>,
}

fn get() -> String {
    "GET".to_owned()
}

/// `step.http_call`.
struct HttpCall {
    pool: Arc<UpstreamPool>,
    method: Method,
    path: Template,
    headers: HeaderChanges,
    body: Option<Template>,
    timeout: Duration,
    max_response_bytes: usize,
}

/// Splits a `url` into its fixed `http://host:port` and the rest, which may hold templates.
fn split_url(url: &str) -> Result<(String, &str), String> {
    let example = "for example \"http://127.0.0.1:9000/users/{{ request.params.id }}\"";
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "{url:?} must start with http:// (https is not supported yet: call it through a local TLS proxy); {example}"
        ));
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains("{{") || url[..7 + end].contains("{{") {
        return Err(format!(
            "{url:?} has a template in its host: the host is fixed at build, templates may appear only in the path and query; {example}"
        ));
    }
    let parsed: hyper::http::uri::Authority = authority
        .parse()
        .map_err(|_| format!("{authority:?} is not a host[:port]; {example}"))?;
    let with_port = match parsed.port_u16() {
        Some(_) => parsed.as_str().to_owned(),
        None => format!("{}:80", parsed.host()),
    };
    let path = &rest[end..];
    Ok((with_port, if path.is_empty() { "/" } else { path }))
}

pub(super) fn build(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    let settings: CallSettings = build.settings()?;
    let at = |field: &str| place::field(build.place, field);
    let method =
        Method::from_bytes(settings.method.to_ascii_uppercase().as_bytes()).map_err(|_| {
            ConfigError::new(
                at("method"),
                format!("{:?} is not an HTTP method", settings.method),
            )
        })?;
    let (pool, path, path_at) = match (&settings.upstream, &settings.url) {
        (Some(name), None) => {
            let pool: Arc<UpstreamPool> =
                build.modules.lend(name, upstream::TYPE, &at("upstream"))?;
            let path = settings.path.clone().unwrap_or_else(|| "/".to_owned());
            if !path.starts_with('/') {
                return Err(
                    ConfigError::new(at("path"), format!("{path:?} must start with /")).into(),
                );
            }
            (pool, path, "path")
        }
        (None, Some(url)) => {
            if settings.path.is_some() {
                return Err(ConfigError::new(
                    at("path"),
                    "path goes with upstream; with url, the path is part of the url",
                )
                .into());
            }
            let (authority, path) = split_url(url).map_err(|m| ConfigError::new(at("url"), m))?;
            let pool = Arc::new(UpstreamPool::for_url(build.name, authority));
            (pool, path.to_owned(), "url")
        }
        _ => {
            return Err(ConfigError::new(
                build.place,
                "give either upstream (an http.upstream module, with an optional path) or url",
            )
            .into());
        }
    };
    let mut errors = ConfigErrors::default();
    let path = build.template(path_at, &Value::String(path))?;
    let headers = HeaderChanges::set_only(&settings.headers, &at("headers"), build, &mut errors);
    let body = match &settings.body {
        None => None,
        Some(body) => Some(build.template("body", body)?),
    };
    let timeout = match &settings.timeout {
        None => Duration::from_secs(10),
        Some(text) => parse_duration(text).map_err(|m| ConfigError::new(at("timeout"), m))?,
    };
    let step = HttpCall {
        pool,
        method,
        path,
        headers,
        body,
        timeout,
        max_response_bytes: settings
            .max_response_bytes
            .unwrap_or(crate::engine::MAX_BODY_BYTES),
    };
    errors.into_result(Box::new(step) as Box<dyn Step>)
}

impl Step for HttpCall {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(async move {
            let scope = context.scope();
            let mut headers = HeaderMap::new();
            self.headers.apply(&mut headers, &scope);
            let body = match &self.body {
                None => OutBody::Empty,
                Some(template) => match template.try_render(&scope)? {
                    Value::String(text) => OutBody::Whole(Bytes::from(text)),
                    value => {
                        headers
                            .entry(hyper::header::CONTENT_TYPE)
                            .or_insert(HeaderValue::from_static("application/json"));
                        OutBody::Whole(Bytes::from(value.to_string()))
                    }
                },
            };
            if let OutBody::Whole(bytes) = &body {
                headers.insert(
                    hyper::header::CONTENT_LENGTH,
                    HeaderValue::from(bytes.len()),
                );
            }
            let request = OutRequest {
                method: self.method.clone(),
                path_and_query: self.path.render_string(&scope),
                headers,
            };
            let answer = self
                .pool
                .send(&request, body, self.timeout)
                .await
                .map_err(|e| StepError::new(e.to_string()))?;
            let (parts, body) = answer.response.into_parts();
            let bytes = read_limited(body, self.max_response_bytes)
                .await
                .map_err(|e| {
                    StepError::new(format!("upstream {:?}: the response {e}", self.pool.name))
                })?;
            drop(answer.in_flight);
            let mut headers = Map::new();
            for (name, value) in &parts.headers {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
            let body = crate::engine::body_value(&bytes);
            let output: Map<String, Value> = [
                ("status", Value::from(parts.status.as_u16())),
                ("headers", Value::Object(headers)),
                ("body", body),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            Ok(Value::Object(output))
        })
    }
}
