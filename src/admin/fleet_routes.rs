//! `POST /api/v1/admin/fleet/reload` and `GET /api/v1/admin/fleet/status`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::AdminState;
use super::answer::Answer;
use super::extract::Body;
use super::handlers::{SourceError, config_source, json, no_config_file};
use crate::fleet::FleetOutcome;

fn not_in_a_fleet() -> Response {
    Answer::failed(
        "not_found",
        "this node is not in a fleet (start it with --cluster-listen)",
    )
    .with(StatusCode::NOT_FOUND)
}

/// Reloads every node of the fleet to the body's config (or this node's config file when the
/// body is empty), all or nothing.
#[utoipa::path(post, path = "/api/v1/admin/fleet/reload", tag = "fleet", operation_id = "fleet_reload",
    request_body(content = String, description = "A config, YAML or JSON; empty: this node's config file", content_type = "application/yaml"),
    responses(
        (status = 200, description = "`activated` on every node", body = Object),
        (status = 400, description = "`build_failed`: no config to reload", body = Answer),
        (status = 404, description = "`not_found`: this node is not in a fleet", body = Answer),
        (status = 422, description = "`aborted`: a node refused it; nothing changed", body = Object),
        (status = 500, description = "`rolled_back` or `diverged`", body = Object)))]
pub(super) async fn reload(State(state): State<AdminState>, Body(body): Body) -> Response {
    let Some(fleet) = state.fleet.get().cloned() else {
        return not_in_a_fleet();
    };
    let source = match config_source(&state, body) {
        Ok(source) => source,
        Err(SourceError::NoFile) => return no_config_file(),
        Err(SourceError::Unread(error)) => {
            return Answer::failed("build_failed", error.to_string()).with(StatusCode::BAD_REQUEST);
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
#[utoipa::path(get, path = "/api/v1/admin/fleet/status", tag = "fleet", operation_id = "fleet_status", responses(
    (status = 200, description = "Every node", body = Object),
    (status = 404, description = "`not_found`: this node is not in a fleet", body = Answer)))]
pub(super) async fn status(State(state): State<AdminState>) -> Response {
    let Some(fleet) = state.fleet.get().cloned() else {
        return not_in_a_fleet();
    };
    json(
        StatusCode::OK,
        serde_json::to_value(fleet.status().await).unwrap_or_default(),
    )
}
