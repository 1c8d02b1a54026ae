//! `step.static`: serves the files of one folder.
//!
//! The file's path under `root` is the `path` template when given (taken as it renders, not
//! percent-decoded again), else the route's `{*rest}` parameter (decoded once by the router),
//! else the request path (decoded once here). [`resolve`] joins it to the root safely: a path
//! that could leave the root, or a symlink that does, answers the same 404 as a missing file,
//! and the refusal is logged at debug.
//!
//! The answer itself is tower-http's `ServeFile` on the resolved file: a strong `ETag` (the
//! file's mtime in nanoseconds and its size; opaque to clients), `Last-Modified`, `If-Match`
//! and `If-Unmodified-Since` (412), `If-None-Match` and `If-Modified-Since` (304), one byte
//! range (206 with `Content-Range`, 416 when unsatisfiable), `HEAD`, a `Content-Type` from
//! the extension, and the body streamed in 64 KiB chunks. Choices made here: a request with
//! several ranges gets the whole file (200), and so does one with `If-Range` (never checked,
//! so never a mix of two versions of a file).

mod resolve;

use std::path::PathBuf;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_http::services::ServeFile;

use self::resolve::{Resolved, resolve};
use super::proxy::json_answer;
use crate::config::{ConfigErrors, place};
use crate::extension::template::Template;
use crate::extension::{HttpExchange, Step, StepBuild, StepContext, StepError};

/// The request headers the file's answer depends on, passed to `ServeFile`.
const CONDITIONS: [header::HeaderName; 5] = [
    header::RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StaticSettings {
    root: String,
    path: Option<String>,
    #[serde(default = "index_html")]
    index: String,
    cache_control: Option<String>,
}

fn index_html() -> String {
    "index.html".to_owned()
}

/// `step.static`.
struct Static {
    root: PathBuf,
    path: Option<Template>,
    index: String,
    cache_control: Option<HeaderValue>,
}

/// Builds a `step.static`. Its one look outside: `root` must be a folder that exists (a
/// metadata read, nothing opened), so that a typo fails the build, not every request.
pub(super) fn build(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    let settings: StaticSettings = build.settings()?;
    let mut errors = ConfigErrors::default();
    if let Err(message) = check_root(&settings.root) {
        errors.push(place::field(build.place, "root"), message);
    }
    if let Err(message) = check_index(&settings.index) {
        errors.push(place::field(build.place, "index"), message);
    }
    let cache_control = match settings.cache_control.as_deref().map(HeaderValue::try_from) {
        None => None,
        Some(Ok(value)) => Some(value),
        Some(Err(_)) => {
            errors.push(
                place::field(build.place, "cacheControl"),
                "is not a valid header value (printable ASCII, for example \"public, max-age=3600\")",
            );
            None
        }
    };
    let path = match settings.path {
        None => None,
        Some(path) => match build.template("path", &Value::String(path)) {
            Ok(template) => Some(template),
            Err(more) => {
                errors.0.extend(more.0);
                None
            }
        },
    };
    let step = Static {
        root: PathBuf::from(settings.root),
        path,
        index: settings.index,
        cache_control,
    };
    errors.into_result(Box::new(step) as Box<dyn Step>)
}

/// Why `root` cannot be served from, if it cannot.
fn check_root(root: &str) -> Result<(), String> {
    let valid = "the folder to serve, absolute or relative to the runtime's working directory";
    if root.is_empty() || root.contains('\0') {
        return Err(format!("{root:?} is not a folder path ({valid})"));
    }
    match std::fs::metadata(root) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(format!("{root:?} is not a folder ({valid})")),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("folder {root:?} does not exist ({valid})"))
        }
        Err(error) => Err(format!("folder {root:?} cannot be read: {error}")),
    }
}

/// Why `index` is not a file name, if it is not.
fn check_index(index: &str) -> Result<(), String> {
    let bad =
        index.is_empty() || index == "." || index == ".." || index.contains(['/', '\\', '\0']);
    if bad {
        Err(format!(
            "{index:?} is not a file name (the file served for a folder, for example \"index.html\")"
        ))
    } else {
        Ok(())
    }
}

impl Static {
    /// The path under the root that this request asks for, decoded.
    fn wanted(&self, context: &StepContext<'_>, exchange: &HttpExchange) -> Option<String> {
        if let Some(template) = &self.path {
            return Some(template.render_string(&context.scope()));
        }
        let rest = context.request.get("params").and_then(|p| p.get("rest"));
        if let Some(Value::String(rest)) = rest {
            return Some(rest.clone());
        }
        let path = exchange.head().uri.path();
        let path = path.strip_prefix('/').unwrap_or(path);
        // Not UTF-8 once decoded: no file this step serves has such a name.
        percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .ok()
            .map(|p| p.into_owned())
    }

    /// Answers `exchange` with the file at `file`.
    async fn serve(&self, exchange: &HttpExchange, file: &std::path::Path) -> StatusCode {
        let head = exchange.head();
        let mut request = Request::new(http_body_util::Empty::<Bytes>::new());
        *request.method_mut() = head.method.clone();
        let ranged = !head.headers.contains_key(header::IF_RANGE);
        for name in CONDITIONS {
            if name == header::RANGE && !ranged {
                continue;
            }
            if let Some(value) = head.headers.get(&name) {
                request.headers_mut().insert(name, value.clone());
            }
        }
        let answer = ServeFile::new(file)
            .ignore_multi_range_requests(true)
            .try_call(request)
            .await;
        match answer {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                let status = parts.status;
                let cached = status.is_success() || status == StatusCode::NOT_MODIFIED;
                if let (Some(value), true) = (&self.cache_control, cached) {
                    parts.headers.insert(header::CACHE_CONTROL, value.clone());
                }
                let body = body.map_err(Into::into).boxed_unsync();
                exchange.respond(hyper::Response::from_parts(parts, body));
                status
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                not_found(exchange);
                StatusCode::NOT_FOUND
            }
            Err(error) => {
                tracing::warn!(file = %file.display(), %error, "step.static: reading a file failed");
                let status = StatusCode::INTERNAL_SERVER_ERROR;
                exchange.respond(json_answer(
                    status,
                    &json!({ "error": "reading the file failed" }),
                ));
                status
            }
        }
    }
}

/// Answers 404, the same for a missing file and a refused path.
fn not_found(exchange: &HttpExchange) {
    let path = exchange.head().uri.path();
    exchange.respond(json_answer(
        StatusCode::NOT_FOUND,
        &json!({ "error": "not found", "path": path }),
    ));
}

impl Step for Static {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(async move {
            let Some(exchange) = context.http else {
                return Err(StepError::new(
                    "step.static answers HTTP requests only (this run has none)".to_owned(),
                ));
            };
            let method = &exchange.head().method;
            if method != Method::GET && method != Method::HEAD {
                let status = StatusCode::METHOD_NOT_ALLOWED;
                let mut answer = json_answer(
                    status,
                    &json!({ "error": "method not allowed", "allowed": ["GET", "HEAD"] }),
                );
                answer
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                exchange.respond(answer);
                return Ok(json!({ "status": status.as_u16() }));
            }
            let wanted = self.wanted(context, exchange);
            let resolved = match &wanted {
                Some(wanted) => resolve(&self.root, wanted, &self.index).await,
                None => Resolved::Refused("not UTF-8 once decoded"),
            };
            let status = match resolved {
                Resolved::File(file) => self.serve(exchange, &file).await,
                Resolved::NotFound => {
                    not_found(exchange);
                    StatusCode::NOT_FOUND
                }
                Resolved::Refused(reason) => {
                    tracing::debug!(
                        pipeline = context.pipeline,
                        step = context.step,
                        path = ?wanted,
                        reason,
                        "step.static refused a path"
                    );
                    not_found(exchange);
                    StatusCode::NOT_FOUND
                }
            };
            Ok(json!({ "status": status.as_u16(), "path": wanted }))
        })
    }
}
