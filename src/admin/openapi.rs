//! The admin API's OpenAPI 3.1 document, served at `GET /api/v1/admin/openapi.json`.
//!
//! It is derived, not written: each handler carries its `#[utoipa::path]` (method, path,
//! body, answers), and every body it names is the type the handler serializes (the runtime's
//! status types, `Answer` for short answers), so the document cannot say one thing while
//! the code sends another. What every endpoint shares is added here once, by [`Shared`]:
//! the bearer token and its `401` on `/api/` paths (but the login), the `403` of a cookie
//! without its CSRF header, `503` while the runtime is not attached
//! (or is shutting down), and the `413`/`408`/`400` of reading a body.

use axum::http::StatusCode;
use axum::response::Response;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::handlers::json;
use super::{handlers, plugin_routes, process, ui};

#[derive(OpenApi)]
#[openapi(
    info(title = "swapvisor admin API", description = "Status, reloads, plugins and the process of a running swapvisor: see docs/ADMIN_API.md."),
    paths(
        handlers::healthz,
        handlers::readyz,
        handlers::metrics,
        handlers::status,
        handlers::live_config,
        handlers::previous_config,
        handlers::try_activate,
        handlers::reload,
        plugin_routes::plugins,
        plugin_routes::plugin,
        plugin_routes::reload_plugin,
        process::describe,
        process::upgrade,
        openapi_json,
        ui::root,
        ui::index,
        ui::login,
        ui::logout,
    ),
    modifiers(&Shared)
)]
struct AdminApi;

/// The fleet's endpoints, in a build with the fleet.
#[cfg(feature = "fleet")]
#[derive(OpenApi)]
#[openapi(paths(super::fleet_routes::reload, super::fleet_routes::status), modifiers(&Shared))]
struct FleetApi;

/// The document.
pub(super) fn document() -> utoipa::openapi::OpenApi {
    #[cfg_attr(not(feature = "fleet"), allow(unused_mut))]
    let mut document = AdminApi::openapi();
    #[cfg(feature = "fleet")]
    document.merge(FleetApi::openapi());
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}

/// This document.
#[utoipa::path(get, path = "/api/v1/admin/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub(super) async fn openapi_json() -> Response {
    json(
        StatusCode::OK,
        serde_json::to_value(document()).unwrap_or_default(),
    )
}

/// What every endpoint shares, added to each operation.
struct Shared;

/// The security scheme's name.
const BEARER: &str = "bearer";

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        for (path, item) in &mut openapi.paths.paths {
            let api = path.starts_with("/api/");
            let attached = api || path == "/metrics";
            for (post, operation) in [(false, item.get.as_mut()), (true, item.post.as_mut())] {
                let Some(operation) = operation else {
                    continue;
                };
                let responses = &mut operation.responses.responses;
                let mut add = |code: StatusCode, why: &str| {
                    responses
                        .entry(code.as_u16().to_string())
                        .or_insert_with(|| answer(why));
                };
                let public = path == "/api/v1/admin/login";
                if api && !public {
                    add(
                        StatusCode::UNAUTHORIZED,
                        "`unauthorized`: a token is set and the request does not carry it",
                    );
                    operation.security =
                        Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                }
                if api && !public && post {
                    add(
                        StatusCode::FORBIDDEN,
                        "`forbidden`: authenticated by the session cookie without `X-Swapvisor-Csrf`",
                    );
                }
                let unattached = [
                    "/api/v1/admin/openapi.json",
                    "/api/v1/admin/login",
                    "/api/v1/admin/logout",
                ];
                if attached && !unattached.contains(&path.as_str()) {
                    add(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "`unavailable`: the first engine has not started yet, or the runtime is shutting down",
                    );
                }
                if post {
                    add(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "`payload_too_large`: the body is over --admin-max-body",
                    );
                    add(
                        StatusCode::REQUEST_TIMEOUT,
                        "`request_timeout`: the body did not arrive in time",
                    );
                    add(
                        StatusCode::BAD_REQUEST,
                        "`bad_request`: the body could not be read",
                    );
                }
            }
        }
    }
}

/// A response whose body is an `Answer`.
fn answer(description: &str) -> RefOr<utoipa::openapi::Response> {
    let content = Content::new(Some(Ref::from_schema_name("Answer")));
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", content)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::document;

    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let document = serde_json::to_value(document()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().unwrap();
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/v1/admin/engine/status",
            "/api/v1/admin/engine/reload",
            "/api/v1/admin/plugins/{name}",
            "/api/v1/admin/openapi.json",
        ] {
            assert!(paths.contains_key(path), "{path} is missing");
        }
    }
}
