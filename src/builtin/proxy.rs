//! `step.proxy`: forwards the request to an `http.upstream` and streams the answer back.
//!
//! Bodies stream both ways: a pipeline holding a proxy does not read the request body (its
//! `request.body` is null) and hands it to the backend as it arrives; the backend's body goes to
//! the client as it arrives. A small body of known length (at most [`REPLAYABLE_BYTES`]) is read
//! first instead, so that a failed attempt can be sent again (see the upstream's retries).
//!
//! Headers: hop-by-hop headers (RFC 9110, 7.6.1) are removed both ways, `X-Forwarded-For`,
//! `-Proto` and `-Host` are set, and `headers.request` and `headers.response` set (templated)
//! and remove what the config says. An `Upgrade` request (a WebSocket) keeps its `Upgrade`
//! and, answered `101`, becomes a tunnel owned by the route ([`upstream::RouteClaim`]).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::upstream::{self, OutBody, OutRequest, RouteClaim, SendError, UpstreamPool};
use crate::config::{ConfigError, ConfigErrors, parse_duration, place};
use crate::extension::template::{RenderScope, Template};
use crate::extension::{HttpExchange, Step, StepBuild, StepContext, StepError, StreamBody};
use crate::net::read_limited;

/// Largest request body read whole before it is sent, so that it can be sent again.
pub(crate) const REPLAYABLE_BYTES: u64 = 64 * 1024;

/// Header changes on one side: `set` (templated values) and `remove`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct HeaderChangesRaw {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HeadersRaw {
    #[serde(default)]
    request: HeaderChangesRaw,
    #[serde(default)]
    response: HeaderChangesRaw,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxySettings {
    upstream: String,
    path: Option<String>,
    #[serde(default)]
    headers: HeadersRaw,
    timeout: Option<String>,
    /// Read the body whole first (up to 1 MiB), so that steps before the proxy can check
    /// `request.body`, and forward it as it arrived.
    #[serde(default)]
    buffer: bool,
}

/// Compiled header changes.
pub(super) struct HeaderChanges {
    set: Vec<(HeaderName, Template)>,
    remove: Vec<HeaderName>,
}

impl HeaderChanges {
    /// Checks and compiles `raw`, found at `at`.
    pub(super) fn compile(
        raw: HeaderChangesRaw,
        at: &str,
        build: &StepBuild<'_>,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let set = compile_set(&raw.set, &place::field(at, "set"), build, &mut errors);
        let remove_at = place::field(at, "remove");
        let remove = raw
            .remove
            .iter()
            .enumerate()
            .filter_map(|(i, text)| header_name(text, place::index(&remove_at, i), &mut errors))
            .collect();
        errors.into_result(Self { set, remove })
    }

    /// Headers to set only: the map of names to templated values at `at` (`step.http_call`'s
    /// `headers`). Its errors go to `errors`.
    pub(super) fn set_only(
        set: &BTreeMap<String, String>,
        at: &str,
        build: &StepBuild<'_>,
        errors: &mut ConfigErrors,
    ) -> Self {
        Self {
            set: compile_set(set, at, build, errors),
            remove: Vec::new(),
        }
    }

    /// Applies the changes to `headers`.
    pub(super) fn apply(&self, headers: &mut HeaderMap, scope: &RenderScope<'_>) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, template) in &self.set {
            if let Ok(value) = HeaderValue::try_from(template.render_string(scope)) {
                headers.insert(name.clone(), value);
            }
        }
    }
}

/// `name` as a header name, or an error at `place`.
fn header_name(name: &str, place: String, errors: &mut ConfigErrors) -> Option<HeaderName> {
    HeaderName::try_from(name)
        .map_err(|_| errors.push(place, format!("{name:?} is not a valid HTTP header name")))
        .ok()
}

/// The names and compiled values of the map `set`, found at `at`.
fn compile_set(
    set: &BTreeMap<String, String>,
    at: &str,
    build: &StepBuild<'_>,
    errors: &mut ConfigErrors,
) -> Vec<(HeaderName, Template)> {
    let mut compiled = Vec::new();
    for (key, value) in set {
        let value_at = place::key(at, key);
        let Some(header) = header_name(key, value_at.clone(), errors) else {
            continue;
        };
        match Template::compile(&Value::String(value.clone()), &value_at, &build.templates) {
            Ok(template) => compiled.push((header, template)),
            Err(e) => errors.0.push(e),
        }
    }
    compiled
}

/// `step.proxy`.
struct Proxy {
    pool: Arc<UpstreamPool>,
    claim: RouteClaim,
    path: Option<Template>,
    request_headers: HeaderChanges,
    response_headers: HeaderChanges,
    timeout: Duration,
    buffer: bool,
}

pub(super) fn build(
    build: &StepBuild<'_>,
) -> Result<Box<dyn crate::extension::Step>, ConfigErrors> {
    let settings: ProxySettings = build.settings()?;
    let pool: Arc<UpstreamPool> = build.modules.lend(
        &settings.upstream,
        upstream::TYPE,
        &place::field(build.place, "upstream"),
    )?;
    let timeout = match &settings.timeout {
        None => pool.settings_request_timeout(),
        Some(text) => parse_duration(text)
            .map_err(|m| ConfigError::new(place::field(build.place, "timeout"), m))?,
    };
    let path = match &settings.path {
        None => None,
        Some(path) if !path.starts_with('/') => {
            return Err(ConfigError::new(
                place::field(build.place, "path"),
                format!(
                    "{path:?} must start with /, for example \"/v1/{{{{ request.params.rest }}}}\""
                ),
            )
            .into());
        }
        Some(path) => Some(build.template("path", &Value::String(path.clone()))?),
    };
    let headers_at = place::field(build.place, "headers");
    let request_headers = HeaderChanges::compile(
        settings.headers.request,
        &place::field(&headers_at, "request"),
        build,
    )?;
    let response_headers = HeaderChanges::compile(
        settings.headers.response,
        &place::field(&headers_at, "response"),
        build,
    )?;
    Ok(Box::new(Proxy {
        claim: RouteClaim::new(&pool, build.pipeline_fingerprint),
        pool,
        path,
        request_headers,
        response_headers,
        timeout,
        buffer: settings.buffer,
    }))
}

/// Headers that describe one connection, never forwarded (RFC 9110, 7.6.1), beside those the
/// `Connection` header names.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes the hop-by-hop headers of `headers`, and `Upgrade` unless `keep_upgrade`.
pub(super) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .filter(|name| !(keep_upgrade && name == header::UPGRADE))
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    if !keep_upgrade {
        headers.remove(header::UPGRADE);
    } else {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether `head` asks to upgrade its connection.
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// The request's body for the upstream: none, read whole when small and of known length, or
/// streamed.
async fn out_body(exchange: &HttpExchange, upgrade: bool) -> Result<OutBody, String> {
    let headers = &exchange.head().headers;
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    let Some(body) = exchange.take_body() else {
        // Read whole by the pipeline (`buffer: true`), or nothing to send.
        return Ok(exchange.read_body().map_or(OutBody::Empty, OutBody::Whole));
    };
    match (length, chunked) {
        _ if upgrade => Ok(OutBody::Empty),
        (None | Some(0), false) => Ok(OutBody::Empty),
        (Some(n), false) if n <= REPLAYABLE_BYTES => read_limited(body, REPLAYABLE_BYTES as usize)
            .await
            .map(OutBody::Whole)
            .map_err(|e| format!("reading the request body: {e}")),
        _ => Ok(OutBody::Stream(body)),
    }
}

/// A JSON answer of the step itself (the upstream gave none), as a streamed response: the
/// engine's own JSON answer, boxed.
pub(super) fn json_answer(status: StatusCode, body: &Value) -> Response<StreamBody> {
    crate::engine::json_response(status, body).map(BodyExt::boxed_unsync)
}

/// The status that answers a request the upstream gave no response to.
pub(super) fn error_status(error: &SendError) -> StatusCode {
    match error {
        SendError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        SendError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        SendError::Failed { .. } => StatusCode::BAD_GATEWAY,
    }
}

/// A backend's body, with its request counted in flight until the body is done.
struct Tracked {
    body: Incoming,
    _answer: upstream::InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Step for Proxy {
    fn takes_body(&self) -> bool {
        !self.buffer
    }

    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(async move {
            let Some(exchange) = context.http else {
                return Err(StepError::new(
                    "step.proxy answers HTTP requests only (this run has none)".to_owned(),
                ));
            };
            let head = exchange.head();
            let scope = context.scope();
            let upgrade = wants_upgrade(&head.headers);
            let mut headers = head.headers.clone();
            remove_hop_by_hop(&mut headers, upgrade);
            forwarded(&mut headers, exchange);
            self.request_headers.apply(&mut headers, &scope);
            let original = head.uri.path_and_query().map_or("/", |p| p.as_str());
            let path_and_query = match &self.path {
                None => original.to_owned(),
                Some(template) => {
                    let mut path = template.render_string(&scope);
                    if let (false, Some(query)) = (path.contains('?'), head.uri.query()) {
                        path.push('?');
                        path.push_str(query);
                    }
                    path
                }
            };
            let body = out_body(exchange, upgrade).await.map_err(StepError::new)?;
            let request = OutRequest {
                method: head.method.clone(),
                path_and_query,
                headers,
            };
            let answer = match self.pool.send(&request, body, self.timeout).await {
                Ok(answer) => answer,
                Err(error) => {
                    let status = error_status(&error);
                    let message = error.to_string();
                    exchange.respond(json_answer(status, &json!({ "error": message })));
                    return Ok(json!({ "status": status.as_u16(), "error": message }));
                }
            };
            let target = answer.target.clone();
            let (mut parts, body) = answer.response.into_parts();
            let status = parts.status;
            let upgraded = status == StatusCode::SWITCHING_PROTOCOLS && upgrade;
            remove_hop_by_hop(&mut parts.headers, upgraded);
            self.response_headers.apply(&mut parts.headers, &scope);
            if upgraded {
                let backend = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
                match (exchange.take_upgrade(), backend) {
                    (Some(client), Some(backend)) => self.claim.open(client, backend),
                    _ => {
                        tracing::warn!(upstream = %self.pool.name, "a 101 answer without an upgrade to carry")
                    }
                }
            }
            let tracked = Tracked {
                body,
                _answer: answer.in_flight,
            };
            let response = Response::from_parts(parts, tracked.map_err(Into::into).boxed_unsync());
            exchange.respond(response);
            Ok(json!({ "status": status.as_u16(), "target": target }))
        })
    }
}

/// Sets `X-Forwarded-For` (appended to what a proxy before us set), `-Proto` and `-Host`.
fn forwarded(headers: &mut HeaderMap, exchange: &HttpExchange) {
    static FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    static PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    static HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    if let Some(client) = exchange.client() {
        let ip = client.ip().to_string();
        let value = match headers.get(&FOR).and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {ip}"),
            None => ip,
        };
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(FOR.clone(), value);
        }
    }
    headers.insert(PROTO.clone(), HeaderValue::from_static("http"));
    if let Some(host) = exchange.head().headers.get(header::HOST) {
        headers.insert(HOST.clone(), host.clone());
    }
}
