//! The admin API's handlers for health, metrics and the engine: one small function per
//! endpoint, each with the `#[utoipa::path]` the OpenAPI document is made of.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use swapvisor_actors::{Origin, ReloadOutcome, ReloadRecord, RunState, Stage};

use super::AdminState;
use super::answer::Answer;
use super::extract::{Attached, Body, IfMatch};
use crate::config::{LoadError, read_file};
use crate::engine::EngineSpec;
use crate::runtime::{Reload, Runtime, RuntimeStatus, TryActivateResult};

/// A JSON response.
pub(super) fn json(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// 503: the runtime is shutting down.
pub(super) fn stopped() -> Response {
    Answer::failed("unavailable", "the runtime is shutting down")
        .with(StatusCode::SERVICE_UNAVAILABLE)
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive: `{\"status\": \"ok\"}`", body = Answer)))]
pub(super) async fn healthz() -> Response {
    Answer::new("ok").with(StatusCode::OK)
}

/// 200 while requests are served, 503 while nothing serves (starting, a stop-first gap,
/// degraded, stopping). A start-first reload keeps it 200 throughout.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Requests are served: `ready`, with the state", body = Answer),
    (status = 503, description = "Nothing serves now: `not_ready`, with the state", body = Answer)))]
pub(super) async fn readyz(State(state): State<AdminState>) -> Response {
    let Some(runtime) = state.runtime() else {
        return Answer::new("not_ready")
            .state(RunState::Starting)
            .with(StatusCode::SERVICE_UNAVAILABLE);
    };
    match runtime.status().await {
        Ok(status)
            if status.serving
                && matches!(status.state, RunState::Running | RunState::Reloading) =>
        {
            Answer::new("ready")
                .state(status.state)
                .with(StatusCode::OK)
        }
        Ok(status) => Answer::new("not_ready")
            .state(status.state)
            .with(StatusCode::SERVICE_UNAVAILABLE),
        Err(_) => Answer::new("not_ready")
            .state(RunState::Stopping)
            .with(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// `response` with the generation as its entity tag, for `If-Match` on the next reload.
fn with_etag(response: Response, generation: u64) -> Response {
    with_header(response, header::ETAG, &format!("\"{generation}\""))
}

/// `response` with `name: value` (left out if `value` cannot be a header value).
pub(super) fn with_header(
    mut response: Response,
    name: header::HeaderName,
    value: &str,
) -> Response {
    if let Ok(value) = header::HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
    response
}

/// The runtime's status, with the generation as `ETag` (for `If-Match` on a reload).
#[utoipa::path(get, path = "/api/v1/admin/engine/status", tag = "engine", responses(
    (status = 200, description = "The status; a node in a fleet adds `fleet`", body = RuntimeStatus,
     headers(("ETag" = String, description = "The live generation, quoted")))))]
pub(super) async fn status(
    State(state): State<AdminState>,
    Attached(runtime): Attached,
) -> Response {
    match runtime.status().await {
        Ok(status) => {
            let generation = status.generation;
            let mut body = serde_json::to_value(status).unwrap_or_default();
            if let Some(fleet) = state.fleet_summary() {
                // Beside configHash: which fleet reload this node runs.
                body["fleet"] = fleet;
            }
            with_etag(json(StatusCode::OK, body), generation)
        }
        Err(_) => stopped(),
    }
}

/// The config the live generation runs, as written (so `${VAR}` references stay unexpanded
/// and no secret they hold leaks), with the generation as `ETag`. Posting it back to
/// `reload` answers `unchanged`.
#[utoipa::path(get, path = "/api/v1/admin/engine/config", tag = "engine", responses(
    (status = 200, description = "The live config as a JSON document", body = Object,
     headers(("ETag" = String, description = "The live generation, quoted")))))]
pub(super) async fn live_config(Attached(runtime): Attached) -> Response {
    let missing = Answer::failed("unavailable", "no engine is serving now");
    config_answer(
        runtime.observe().live_config(),
        missing.with(StatusCode::SERVICE_UNAVAILABLE),
    )
}

/// A config as written with its generation as `ETag`, or `missing`.
fn config_answer(
    found: Option<(u64, std::sync::Arc<crate::config::Config>)>,
    missing: Response,
) -> Response {
    match found {
        Some((generation, config)) => {
            with_etag(json(StatusCode::OK, config.to_document()), generation)
        }
        None => missing,
    }
}

/// The config the generation before the live one ran, as written, with that generation as
/// `ETag`: what the admin page diffs the live config against.
#[utoipa::path(get, path = "/api/v1/admin/engine/config/previous", tag = "engine", responses(
    (status = 200, description = "The previous generation's config as a JSON document", body = Object,
     headers(("ETag" = String, description = "That generation, quoted"))),
    (status = 404, description = "`not_found`: no reload has activated yet", body = Answer)))]
pub(super) async fn previous_config(Attached(runtime): Attached) -> Response {
    let missing = Answer::failed("not_found", "no generation before the live one");
    config_answer(
        runtime.observe().previous_config(),
        missing.with(StatusCode::NOT_FOUND),
    )
}

/// Prometheus text format (0.0.4): every family `/metrics` shows.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text", body = String, content_type = "text/plain")))]
pub(super) async fn metrics(
    State(state): State<AdminState>,
    Attached(runtime): Attached,
) -> Response {
    match runtime.status().await {
        Ok(status) => {
            let text = state.metrics.render(&status, &runtime);
            ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
        }
        Err(_) => stopped(),
    }
}

/// Builds the body's config (YAML or JSON) and tears it down: nothing starts, nothing runs.
#[utoipa::path(post, path = "/api/v1/admin/engine/try-activate", tag = "engine",
    request_body(content = String, description = "A config, YAML or JSON", content_type = "application/yaml"),
    responses(
        (status = 200, description = "`build_ok`: it builds", body = TryActivateResult),
        (status = 400, description = "`build_failed`: not a document", body = TryActivateResult),
        (status = 422, description = "`build_failed`: it does not build", body = TryActivateResult)))]
pub(super) async fn try_activate(Attached(runtime): Attached, Body(body): Body) -> Response {
    let verdict = runtime
        .try_activate(EngineSpec::Source(body.to_vec().into()))
        .await;
    match verdict {
        Ok(verdict) => {
            let code = match &verdict {
                TryActivateResult::BuildOk { .. } => StatusCode::OK,
                TryActivateResult::BuildFailed { stage, .. } => failed_build(*stage),
            };
            json(code, serde_json::to_value(verdict).unwrap_or_default())
        }
        Err(_) => stopped(),
    }
}

/// 400 for input that is not a document at all, 422 for a document that does not build.
pub(super) fn failed_build(stage: Stage) -> StatusCode {
    if stage == Stage::Parse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}

/// Reloads to the body's config, or to the config file when the body is empty.
#[utoipa::path(post, path = "/api/v1/admin/engine/reload", tag = "engine",
    request_body(content = String, description = "A config, YAML or JSON; empty: the config file", content_type = "application/yaml"),
    params(("If-Match" = Option<String>, Header, description = "Reload only if this is the live generation (`3`, `\"3\"` or `W/\"3\"`)")),
    responses(
        (status = 200, description = "`activated`, or `unchanged`", body = Answer),
        (status = 400, description = "`build_failed`: not a document, no file to reload from; `bad_request`: a bad `If-Match`", body = Answer),
        (status = 412, description = "`conflict`: `If-Match` names another generation", body = Answer),
        (status = 422, description = "`build_failed`: it does not build", body = Answer),
        (status = 500, description = "`rolled_back` (the previous config serves on) or `degraded`", body = Answer)))]
pub(super) async fn reload(
    State(state): State<AdminState>,
    Attached(runtime): Attached,
    IfMatch(expected): IfMatch,
    Body(body): Body,
) -> Response {
    let source = match config_source(&state, body) {
        Ok(source) => source,
        Err(SourceError::NoFile) => return no_config_file(),
        Err(SourceError::Unread(error)) => return reload_answer_for_unread(&runtime, error).await,
    };
    let mut request = Reload::new(source).from(Origin::Admin);
    request.expected_generation = expected;
    match runtime.reload(request).await {
        Ok(record) => reload_answer(&record),
        Err(_) => stopped(),
    }
}

/// Why a reload has no config to build.
pub(super) enum SourceError {
    /// The body is empty and the runtime was not started from a file.
    NoFile,
    /// The body is empty and the config file cannot be read.
    Unread(LoadError),
}

/// A reload's config: the body, or the config file when the body is empty.
pub(super) fn config_source(
    state: &AdminState,
    body: bytes::Bytes,
) -> Result<Vec<u8>, SourceError> {
    if !body.is_empty() {
        return Ok(body.to_vec());
    }
    let path = state.config_path.as_ref().ok_or(SourceError::NoFile)?;
    read_file(path).map_err(SourceError::Unread)
}

/// 400 for an empty reload body with no config file to reload from.
pub(super) fn no_config_file() -> Response {
    Answer::failed(
        "build_failed",
        "the body is empty and there is no config file to reload from",
    )
    .with(StatusCode::BAD_REQUEST)
}

async fn reload_answer_for_unread(runtime: &Runtime, error: LoadError) -> Response {
    let generation = runtime.status().await.map(|s| s.generation).unwrap_or(0);
    Answer::failed("build_failed", error.to_string())
        .generation(generation)
        .with(StatusCode::BAD_REQUEST)
}

/// The status code and answer for a reload's outcome.
pub(super) fn reload_answer(record: &ReloadRecord) -> Response {
    let answer = |status: &'static str| Answer::new(status).generation(record.generation);
    match &record.outcome {
        ReloadOutcome::Activated { .. } => answer("activated").with(StatusCode::OK),
        ReloadOutcome::Rejected { stage, error } => Answer::failed("build_failed", error)
            .generation(record.generation)
            .with(failed_build(*stage)),
        ReloadOutcome::RolledBack { error } => Answer::failed("rolled_back", error)
            .generation(record.generation)
            .with(StatusCode::INTERNAL_SERVER_ERROR),
        ReloadOutcome::Degraded {
            error,
            restore_error,
        } => Answer::failed("degraded", error)
            .restore_error(Some(restore_error.clone()))
            .generation(record.generation)
            .with(StatusCode::INTERNAL_SERVER_ERROR),
        ReloadOutcome::Conflict { .. } => answer("conflict").with(StatusCode::PRECONDITION_FAILED),
        ReloadOutcome::Superseded => answer("superseded").with(StatusCode::SERVICE_UNAVAILABLE),
        other => answer(other.name()).with(StatusCode::OK),
    }
}

/// Any path the API does not have.
pub(super) async fn not_found(request: axum::extract::Request) -> Response {
    let error = format!(
        "no such endpoint: {} {}",
        request.method(),
        request.uri().path()
    );
    Answer::failed("not_found", error).with(StatusCode::NOT_FOUND)
}

/// A path the API has, with another method.
pub(super) async fn method_not_allowed(request: axum::extract::Request) -> Response {
    let error = format!(
        "{} is not allowed on {}",
        request.method(),
        request.uri().path()
    );
    Answer::failed("method_not_allowed", error).with(StatusCode::METHOD_NOT_ALLOWED)
}
