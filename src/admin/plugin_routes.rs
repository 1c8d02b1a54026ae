//! The plugin endpoints: every instance's status, one instance's status and history, and a
//! per-plugin reload.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use swapvisor_actors::{Origin, ReloadRequest};

use super::answer::Answer;
use super::extract::{Attached, Body};
use super::handlers::{json, reload_answer, stopped};
use crate::config::{LoadError, PluginSpec};
use crate::plugin::{PluginReload, PluginStatus};

/// `{"plugins": [...]}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PluginList {
    /// Every plugin instance, in start order.
    plugins: Vec<PluginStatus>,
}

/// One plugin instance's status and its reload history.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PluginDetail {
    #[serde(flatten)]
    status: PluginStatus,
    /// Its latest 20 reloads, oldest first.
    history: Vec<PluginReload>,
}

/// 404 for a plugin name no instance has.
fn no_such_plugin(name: &str) -> Response {
    Answer::failed("not_found", format!("no plugin named {name:?} is running"))
        .with(StatusCode::NOT_FOUND)
}

/// Every plugin instance's status, each with its last reload and its count of each outcome.
#[utoipa::path(get, path = "/api/v1/admin/plugins", tag = "plugins",
    responses((status = 200, description = "Every plugin instance", body = PluginList)))]
pub(super) async fn plugins(Attached(runtime): Attached) -> Response {
    match runtime.status().await {
        Ok(status) => json(
            StatusCode::OK,
            serde_json::to_value(PluginList {
                plugins: status.plugins,
            })
            .unwrap_or_default(),
        ),
        Err(_) => stopped(),
    }
}

/// One plugin instance's status and its reload history (the latest 20, oldest first).
#[utoipa::path(get, path = "/api/v1/admin/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "The instance's name in the config")),
    responses(
        (status = 200, description = "The instance", body = PluginDetail),
        (status = 404, description = "`not_found`: no instance has that name", body = Answer)))]
pub(super) async fn plugin(Attached(runtime): Attached, Path(name): Path<String>) -> Response {
    match runtime.plugin(&name) {
        Ok(plugin) => {
            let detail = PluginDetail {
                status: plugin.status(),
                history: plugin.history(),
            };
            json(
                StatusCode::OK,
                serde_json::to_value(detail).unwrap_or_default(),
            )
        }
        Err(_) => no_such_plugin(&name),
    }
}

/// Reloads one plugin instance alone to the body, one `plugins:` entry (YAML or JSON).
#[utoipa::path(post, path = "/api/v1/admin/plugins/{name}/reload", tag = "plugins",
    params(("name" = String, Path, description = "The instance's name in the config")),
    request_body(content = String, description = "One `plugins:` entry, YAML or JSON", content_type = "application/yaml"),
    responses(
        (status = 200, description = "`activated`, or `unchanged`", body = Answer),
        (status = 400, description = "`build_failed`: not an entry", body = Answer),
        (status = 404, description = "`not_found`: no instance has that name", body = Answer),
        (status = 412, description = "`conflict`", body = Answer),
        (status = 422, description = "`build_failed`: the entry does not build", body = Answer),
        (status = 500, description = "`rolled_back` (the previous instance serves on) or `degraded`", body = Answer)))]
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
            return Answer::failed("build_failed", error.to_string())
                .generation(record.generation)
                .with(code);
        }
    };
    let request = ReloadRequest::<PluginSpec>::new(spec).from(Origin::Admin);
    match plugin.reload(request).await {
        Ok(record) => reload_answer(&record),
        Err(_) => no_such_plugin(&name),
    }
}
