//! `POST /api/v1/admin/fleet/reload` and `GET /api/v1/admin/fleet/status`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::AdminState;
use super::extract::Body;
use super::handlers::{SourceError, config_source, json, no_config_file};
use crate::fleet::FleetOutcome;

fn not_in_a_fleet() -> Response {
    json(
        StatusCode::NOT_FOUND,
        json!({"status": "not_found", "error": "this node is not in a fleet (start it with --cluster-listen)"}),
    )
}

/// Reloads every node of the fleet to the body's config (or this node's config file when the
/// body is empty), all or nothing.
pub(super) async fn reload(State(state): State<AdminState>, Body(body): Body) -> Response {
    let Some(fleet) = state.fleet.get().cloned() else {
        return not_in_a_fleet();
    };
    let source = match config_source(&state, body) {
        Ok(source) => source,
        Err(SourceError::NoFile) => return no_config_file(),
        Err(SourceError::Unread(error)) => {
            return json(
                StatusCode::BAD_REQUEST,
                json!({"status": "build_failed", "error": error.to_string()}),
            );
        }
    };
    let answer = fleet.reload(&String::from_utf8_lossy(&source)).await;
    let code = match answer.status {
        FleetOutcome::Activated => StatusCode::OK,
        FleetOutcome::Aborted => StatusCode::UNPROCESSABLE_ENTITY,
        FleetOutcome::RolledBack | FleetOutcome::Diverged => StatusCode::INTERNAL_SERVER_ERROR,
    };
    json(code, serde_json::to_value(answer).unwrap_or_default())
}

/// Every node of the fleet, with `agreed` false when they run different configs.
pub(super) async fn status(State(state): State<AdminState>) -> Response {
    let Some(fleet) = state.fleet.get().cloned() else {
        return not_in_a_fleet();
    };
    json(
        StatusCode::OK,
        serde_json::to_value(fleet.status().await).unwrap_or_default(),
    )
}
