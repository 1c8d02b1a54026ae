//! The admin API's handlers: one small function per endpoint.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use swapvisor_actors::{Origin, ReloadOutcome, ReloadRecord, ReloadRequest, RunState, Stage};

use super::AdminState;
use super::extract::{Attached, Body, IfMatch};
use crate::config::{LoadError, PluginSpec, read_file};
use crate::engine::EngineSpec;
use crate::runtime::{Reload, Runtime, TryActivateResult};

/// A JSON response.
pub(super) fn json(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn stopped() -> Response {
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"status": "unavailable", "error": "the runtime is shutting down"}),
    )
}

/// `GET /healthz`: the process is alive.
pub(super) async fn healthz() -> Response {
    json(StatusCode::OK, json!({"status": "ok"}))
}

/// `GET /readyz`: 200 while requests are served, 503 while nothing serves (starting, a
/// stop-first gap, degraded, stopping). A start-first reload keeps it 200 throughout.
pub(super) async fn readyz(State(state): State<AdminState>) -> Response {
    let Some(runtime) = state.runtime() else {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "state": "starting"}),
        );
    };
    match runtime.status().await {
        Ok(status)
            if status.serving
                && matches!(status.state, RunState::Running | RunState::Reloading) =>
        {
            json(
                StatusCode::OK,
                json!({"status": "ready", "state": status.state}),
            )
        }
        Ok(status) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "state": status.state}),
        ),
        Err(_) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "state": "stopping"}),
        ),
    }
}

/// `response` with the generation as its entity tag, for `If-Match` on the next reload.
fn with_etag(mut response: Response, generation: u64) -> Response {
    if let Ok(value) = header::HeaderValue::from_str(&format!("\"{generation}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// `GET /api/v1/admin/engine/status`, with the generation as `ETag`.
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

/// `GET /api/v1/admin/engine/config`: the config the live generation runs, as written (so
/// `${VAR}` references stay unexpanded and no secret they hold leaks), with the generation as
/// `ETag`. Posting it back to `reload` answers `unchanged`.
pub(super) async fn live_config(Attached(runtime): Attached) -> Response {
    match runtime.observe().live_config() {
        Some((generation, config)) => {
            with_etag(json(StatusCode::OK, config.to_document()), generation)
        }
        None => json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "error": "no engine is serving now"}),
        ),
    }
}

/// `GET /metrics`: Prometheus text format.
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

/// `POST /api/v1/admin/engine/try-activate`: build the body's config and tear it down.
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
fn failed_build(stage: Stage) -> StatusCode {
    if stage == Stage::Parse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}

/// `POST /api/v1/admin/engine/reload`: the body's config, or the config file when the body is
/// empty.
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
    json(
        StatusCode::BAD_REQUEST,
        json!({"status": "build_failed", "error": "the body is empty and there is no config file to reload from"}),
    )
}

async fn reload_answer_for_unread(runtime: &Runtime, error: LoadError) -> Response {
    let generation = runtime.status().await.map(|s| s.generation).unwrap_or(0);
    json(
        StatusCode::BAD_REQUEST,
        json!({"status": "build_failed", "error": error.to_string(), "generation": generation}),
    )
}

/// 404 for a plugin name no instance has.
fn no_such_plugin(name: &str) -> Response {
    json(
        StatusCode::NOT_FOUND,
        json!({"status": "not_found", "error": format!("no plugin named {name:?} is running")}),
    )
}

/// `GET /api/v1/admin/plugins`: every plugin instance's status, each with its last reload and
/// its count of each outcome.
pub(super) async fn plugins(Attached(runtime): Attached) -> Response {
    match runtime.status().await {
        Ok(status) => json(StatusCode::OK, json!({ "plugins": status.plugins })),
        Err(_) => stopped(),
    }
}

/// `GET /api/v1/admin/plugins/{name}`: one plugin instance's status and its reload history
/// (the latest 20, oldest first); 404 for an unknown plugin.
pub(super) async fn plugin(Attached(runtime): Attached, Path(name): Path<String>) -> Response {
    match runtime.plugin(&name) {
        Ok(plugin) => {
            let mut body = serde_json::to_value(plugin.status()).unwrap_or_default();
            body["history"] = serde_json::to_value(plugin.history()).unwrap_or_default();
            json(StatusCode::OK, body)
        }
        Err(_) => no_such_plugin(&name),
    }
}

/// `POST /api/v1/admin/plugins/{name}/reload`: the body is one `plugins:` entry.
pub(super) async fn reload_plugin(
    Attached(runtime): Attached,
    Path(name): Path<String>,
    Body(body): Body,
) -> Response {
    let Ok(plugin) = runtime.plugin(&name) else {
        return no_such_plugin(&name);
    };
    let spec = match PluginSpec::parse(&body) {
        Ok(spec) => spec,
        Err(error) => {
            let code = match error {
                LoadError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            let record = plugin.refused(Origin::Admin, error.to_string());
            return json(
                code,
                json!({"status": "build_failed", "error": error.to_string(), "generation": record.generation}),
            );
        }
    };
    let request = ReloadRequest::<PluginSpec>::new(spec).from(Origin::Admin);
    match plugin.reload(request).await {
        Ok(record) => reload_answer(&record),
        Err(_) => no_such_plugin(&name),
    }
}

/// The status code and body for a reload's outcome.
fn reload_answer(record: &ReloadRecord) -> Response {
    let generation = record.generation;
    match &record.outcome {
        ReloadOutcome::Activated { generation } => json(
            StatusCode::OK,
            json!({"status": "activated", "generation": generation}),
        ),
        ReloadOutcome::Rejected { stage, error } => json(
            failed_build(*stage),
            json!({"status": "build_failed", "error": error, "generation": generation}),
        ),
        ReloadOutcome::RolledBack { error } => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"status": "rolled_back", "error": error, "generation": generation}),
        ),
        ReloadOutcome::Degraded {
            error,
            restore_error,
        } => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"status": "degraded", "error": error, "restoreError": restore_error, "generation": generation}),
        ),
        ReloadOutcome::Conflict { .. } => json(
            StatusCode::PRECONDITION_FAILED,
            json!({"status": "conflict", "generation": generation}),
        ),
        ReloadOutcome::Superseded => json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "superseded", "generation": generation}),
        ),
        other => json(
            StatusCode::OK,
            json!({"status": other.name(), "generation": generation}),
        ),
    }
}

/// Any path the API does not have.
pub(super) async fn not_found(request: axum::extract::Request) -> Response {
    json(
        StatusCode::NOT_FOUND,
        json!({"status": "not_found", "error": format!("no such endpoint: {} {}", request.method(), request.uri().path())}),
    )
}

/// A path the API has, with another method.
pub(super) async fn method_not_allowed(request: axum::extract::Request) -> Response {
    json(
        StatusCode::METHOD_NOT_ALLOWED,
        json!({"status": "method_not_allowed", "error": format!("{} is not allowed on {}", request.method(), request.uri().path())}),
    )
}
