//! The process itself: `GET /api/v1/admin/process` (pid, binary, the last upgrade) and
//! `POST /api/v1/admin/upgrade` (a binary upgrade), served when the process that serves the
//! admin API can upgrade itself (the `swapvisor` binary can; an embedder's may not).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;

use super::AdminState;
use super::answer::Answer;
use super::extract::Body;
use super::handlers::json;

/// What the admin API asks of the process it runs in.
pub trait ProcessControl: Send + Sync + 'static {
    /// The process: pid, version, binary, when it started, the pid it was upgraded from, and
    /// its last upgrade.
    fn describe(&self) -> Value;

    /// Upgrades to `binary` (the process's own executable when `None`). Answers whether it
    /// took place, and its report.
    fn upgrade(&self, binary: Option<PathBuf>) -> BoxFuture<'static, (bool, Value)>;
}

/// The body of `POST /api/v1/admin/upgrade`; empty for the process's own executable.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpgradeBody {
    /// The executable to upgrade to; the process's own when absent.
    #[schema(value_type = Option<String>)]
    binary: Option<PathBuf>,
}

fn unavailable() -> Response {
    Answer::failed("unavailable", "this process cannot upgrade itself")
        .with(StatusCode::NOT_IMPLEMENTED)
}

/// The process: pid, version, binary, when it started, the pid it was upgraded from, and its
/// last upgrade.
#[utoipa::path(get, path = "/api/v1/admin/process", tag = "process", responses(
    (status = 200, description = "`{\"pid\", \"version\", \"binary\", \"startedAt\", \"upgradedFrom\", \"lastUpgrade\"}`", body = Object),
    (status = 501, description = "`unavailable`: this process cannot upgrade itself", body = Answer)))]
pub(super) async fn describe(State(state): State<AdminState>) -> Response {
    match state.process.get() {
        Some(process) => json(StatusCode::OK, process.describe()),
        None => unavailable(),
    }
}

/// A binary upgrade: 200 with the report once the new process serves (this one then exits),
/// 500 with it when the old process serves on, 409 while another upgrade runs.
#[utoipa::path(post, path = "/api/v1/admin/upgrade", tag = "process",
    request_body(content = UpgradeBody, description = "Empty for the process's own executable"),
    responses(
        (status = 200, description = "`upgraded`: the report", body = Object),
        (status = 400, description = "`invalid`: the body is not `{\"binary\": \"/path\"}`", body = Answer),
        (status = 409, description = "`busy`: another upgrade runs", body = Object),
        (status = 500, description = "`failed`: the report; this process serves on", body = Object),
        (status = 501, description = "`unavailable`: this process cannot upgrade itself", body = Answer)))]
pub(super) async fn upgrade(State(state): State<AdminState>, Body(body): Body) -> Response {
    let Some(process) = state.process.get().cloned() else {
        return unavailable();
    };
    let request: UpgradeBody = if body.iter().all(u8::is_ascii_whitespace) {
        UpgradeBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(error) => {
                return Answer::failed(
                    "invalid",
                    format!("the body must be {{\"binary\": \"/path\"}} or empty: {error}"),
                )
                .with(StatusCode::BAD_REQUEST);
            }
        }
    };
    let (upgraded, report) = process.upgrade(request.binary).await;
    let status = match (upgraded, report.get("status").and_then(Value::as_str)) {
        (true, _) => StatusCode::OK,
        (false, Some("busy")) => StatusCode::CONFLICT,
        (false, _) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    json(status, report)
}

impl AdminState {
    /// Serves the process endpoints through `process`. Later calls are ignored.
    pub fn attach_process(&self, process: Arc<dyn ProcessControl>) {
        let _ = self.process.set(process);
    }
}
