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
use serde_json::{Value, json};

use super::AdminState;
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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpgradeBody {
    binary: Option<PathBuf>,
}

fn unavailable() -> Response {
    json(
        StatusCode::NOT_IMPLEMENTED,
        json!({"status": "unavailable", "error": "this process cannot upgrade itself"}),
    )
}

/// `GET /api/v1/admin/process`.
pub(super) async fn describe(State(state): State<AdminState>) -> Response {
    match state.process.get() {
        Some(process) => json(StatusCode::OK, process.describe()),
        None => unavailable(),
    }
}

/// `POST /api/v1/admin/upgrade`: 200 with the report once the new process serves (this one
/// then exits), 500 with it when the old process serves on.
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
                return json(
                    StatusCode::BAD_REQUEST,
                    json!({"status": "invalid", "error": format!("the body must be {{\"binary\": \"/path\"}} or empty: {error}")}),
                );
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
