//! The admin HTTP API: status, try-activate, reload, per-plugin reload, health and metrics.
//!
//! The admin server is not part of the swapped engine: it has its own listener and its own
//! router, so a reload can never wait on the admin server's own shutdown. Bodies are JSON with
//! camelCase keys. docs/ADMIN_API.md documents every endpoint with a curl example.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/healthz` | 200 `{"status":"ok"}` |
//! | GET | `/readyz` | 200 while requests are served (running, or reloading start-first), else 503; the body carries the state |
//! | GET | `/metrics` | Prometheus text |
//! | GET | `/api/v1/admin/engine/status` | the status object, with the generation as `ETag` |
//! | GET | `/api/v1/admin/engine/config` | the live config as JSON, `${VAR}` unexpanded |
//! | GET | `/api/v1/admin/engine/config/previous` | the previous generation's config, as the live one; 404 before the first reload |
//! | POST | `/api/v1/admin/engine/try-activate` (and `/api/workflow/try-activate`) | 200 `build_ok`, 422 `build_failed`, 400 when the body is not a document |
//! | POST | `/api/v1/admin/engine/reload` | 200 `activated`, 400/422 `build_failed`, 500 `rolled_back`/`degraded`, 200 `unchanged`, 412 `conflict` on an `If-Match` mismatch |
//! | GET | `/api/v1/admin/plugins` | every plugin instance's status, with its last reload and the count of each outcome |
//! | GET | `/api/v1/admin/plugins/{name}` | one instance's status and its reload history; 404 for an unknown plugin |
//! | POST | `/api/v1/admin/plugins/{name}/reload` | the codes of an engine reload; 404 for an unknown plugin |
//! | GET | `/api/v1/admin/process` | pid, version, binary, the pid it was upgraded from, the last upgrade (501 when the process cannot upgrade) |
//! | POST | `/api/v1/admin/upgrade` | a binary upgrade: 200 `upgraded` (this process then exits), 500 `failed` (it serves on), 409 `busy` |
//! | GET | `/api/v1/admin/openapi.json` | the OpenAPI 3.1 document of all of these, derived from the handlers' types |
//! | GET | `/` | 303 to `/ui` |
//! | GET | `/ui` (`/ui/app.js`, `/ui/style.css`) | the admin page, embedded in the binary; public, it holds no data |
//! | POST | `/api/v1/admin/login` | the token in the body (`{"token": ...}` or a form): 200 and a `swapvisor_session` cookie, or 401 and none |
//! | POST | `/api/v1/admin/logout` | ends the session and clears its cookie |
//!
//! With a token set, every `/api/` path but the login requires `Authorization: Bearer <token>`
//! (compared in constant time) or a session cookie from the login; a cookie-authenticated
//! request other than `GET`/`HEAD` must also carry `X-Swapvisor-Csrf` (else 403).

mod answer;
mod extract;
#[cfg(feature = "fleet")]
mod fleet_routes;
mod handlers;
mod metrics;
mod openapi;
mod plugin_routes;
mod process;
mod ui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::routing::{get, post};
use tower::ServiceExt as _;

pub use metrics::Metrics;
pub use process::ProcessControl;

use crate::extension::ConnectionLimits;
use crate::net::{Gate, serve_listener};

use crate::runtime::Runtime;

/// Everything the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// The runtime being administered, once its first engine has started: the admin API serves
    /// before that (`/healthz` 200, `/readyz` 503 `starting`), so probes are answered during a
    /// slow start.
    runtime: Arc<OnceLock<Arc<Runtime>>>,
    /// The config file an empty reload body reloads from.
    pub config_path: Option<PathBuf>,
    /// The bearer token every `/api/` path requires, if any.
    pub token: Option<Arc<str>>,
    /// Largest accepted request body, in bytes.
    pub max_body: usize,
    /// Reload metrics.
    pub metrics: Arc<Metrics>,
    /// The fleet this node joined, if any.
    #[cfg(feature = "fleet")]
    fleet: Arc<OnceLock<Arc<crate::fleet::Fleet>>>,
    /// The process, when it can describe and upgrade itself.
    process: Arc<OnceLock<Arc<dyn ProcessControl>>>,
    /// The admin page's sessions, opened by its login.
    sessions: Arc<ui::Sessions>,
}

impl std::fmt::Debug for AdminState {
    /// The token is never shown, only whether there is one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("started", &self.runtime.get().is_some())
            .field("config_path", &self.config_path)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// The state of an admin API with no runtime attached yet, reloading from `config_path`
    /// when a reload has no body.
    pub fn new(config_path: Option<PathBuf>, token: Option<&str>, max_body: usize) -> Self {
        Self {
            runtime: Arc::default(),
            config_path,
            token: token.map(Arc::from),
            max_body,
            metrics: Arc::default(),
            #[cfg(feature = "fleet")]
            fleet: Arc::default(),
            process: Arc::default(),
            sessions: Arc::default(),
        }
    }

    /// Serves the fleet endpoints for `fleet`. Later calls are ignored.
    #[cfg(feature = "fleet")]
    pub fn attach_fleet(&self, fleet: Arc<crate::fleet::Fleet>) {
        let _ = self.fleet.set(fleet);
    }

    /// Attaches the runtime once its first engine has started; until then every endpoint but
    /// `/healthz` answers 503 with the state `starting`. Later calls are ignored.
    pub fn attach(&self, runtime: Arc<Runtime>) {
        let _ = self.runtime.set(runtime);
    }

    /// `{"node", "fleetGeneration"}` of the fleet this node is in, for its status.
    fn fleet_summary(&self) -> Option<serde_json::Value> {
        #[cfg(feature = "fleet")]
        if let Some(fleet) = self.fleet.get() {
            return Some(serde_json::json!({
                "node": fleet.name(),
                "fleetGeneration": fleet.fleet_generation(),
            }));
        }
        None
    }

    /// The runtime, once attached.
    fn runtime(&self) -> Option<&Arc<Runtime>> {
        self.runtime.get()
    }
}

/// Why the admin API cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Binding a non-loopback address without a token would expose reloads to the network.
    #[error(
        "refusing to serve the admin API on non-loopback address {0} without a token: set --admin-token (or SWAPVISOR_ADMIN_TOKEN), or bind 127.0.0.1"
    )]
    ExposedWithoutToken(SocketAddr),
    /// The token is too easy to guess, or cannot be sent in a header as it is.
    #[error("{0}")]
    WeakToken(String),
    /// The address could not be bound.
    #[error("cannot bind the admin API on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// Checks that serving the admin API on `address` with `token` is safe.
fn check_exposure(address: SocketAddr, token: Option<&str>) -> Result<(), AdminError> {
    if let Some(token) = token {
        crate::secret::check("the admin token", token).map_err(AdminError::WeakToken)?;
    }
    if !address.ip().is_loopback() && token.is_none() {
        return Err(AdminError::ExposedWithoutToken(address));
    }
    Ok(())
}

/// Binds the admin listener, refusing a non-loopback address without a token.
pub async fn bind(
    address: SocketAddr,
    token: Option<&str>,
) -> Result<tokio::net::TcpListener, AdminError> {
    check_exposure(address, token)?;
    // A socket given to the process (systemd's, named `admin`, or an upgrade's) is used as
    // it is, checked for exposure at the address it is actually bound to.
    if let Some(inherited) = crate::net::handoff::take_named(ADMIN_SOCKET, address) {
        if let Ok(local) = inherited.local_addr() {
            check_exposure(local, token)?;
        }
        return tokio::net::TcpListener::from_std(inherited)
            .map_err(|source| AdminError::Bind { address, source });
    }
    crate::net::bind(address)
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|source| AdminError::Bind { address, source })
}

/// The name of the admin API's socket when one is given to the process (systemd's
/// `FileDescriptorName=admin`, or an upgrade's hand-off).
pub const ADMIN_SOCKET: &str = "admin";

/// The admin API's routes.
fn router(state: AdminState) -> Router {
    let routes = Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/api/v1/admin/engine/status", get(handlers::status))
        .route("/api/v1/admin/engine/config", get(handlers::live_config))
        .route(
            "/api/v1/admin/engine/config/previous",
            get(handlers::previous_config),
        )
        .route(
            "/api/v1/admin/engine/try-activate",
            post(handlers::try_activate),
        )
        .route("/api/workflow/try-activate", post(handlers::try_activate))
        .route("/api/v1/admin/engine/reload", post(handlers::reload))
        .route("/api/v1/admin/plugins", get(plugin_routes::plugins))
        .route("/api/v1/admin/plugins/{name}", get(plugin_routes::plugin))
        .route(
            "/api/v1/admin/plugins/{name}/reload",
            post(plugin_routes::reload_plugin),
        )
        .route("/api/v1/admin/openapi.json", get(openapi::openapi_json))
        .route("/api/v1/admin/process", get(process::describe))
        .route("/api/v1/admin/upgrade", post(process::upgrade))
        .route("/", get(ui::root))
        .route("/ui", get(ui::index))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/style.css", get(ui::style))
        .route("/api/v1/admin/login", post(ui::login))
        .route("/api/v1/admin/logout", post(ui::logout));
    // Without the `fleet` feature the fallback answers these paths 404.
    #[cfg(feature = "fleet")]
    let routes = routes
        .route("/api/v1/admin/fleet/reload", post(fleet_routes::reload))
        .route("/api/v1/admin/fleet/status", get(fleet_routes::status));
    routes
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::require_token,
        ))
        .with_state(state)
}

/// Serves the admin API on `listener` within `limits` until `shutdown` completes, then lets
/// open requests finish for up to five seconds.
///
/// The admin API's connections do not count against the process's connection budget: they
/// come out of its reserve, so a flood on the engine's listeners leaves probes and reloads
/// working (see [`DescriptorBudget`](crate::extension::DescriptorBudget)).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let gate = Gate::new(
        listener.local_addr()?.to_string(),
        "admin",
        limits,
        None,
        &["/healthz", "/readyz"],
    );
    let (closing, closed) = tokio::sync::watch::channel(None);
    let router = router(state);
    let make_handler = move || {
        let router = router.clone();
        Some(move |request: crate::net::HttpRequest| {
            let answer = router.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                match answer.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        })
    };
    let serving = serve_listener(std::sync::Arc::new(listener), gate, closed, make_handler);
    tokio::pin!(serving);
    tokio::select! {
        () = serving.as_mut() => return Ok(()),
        () = shutdown => {}
    }
    let _ = closing.send(Some(
        tokio::time::Instant::now() + std::time::Duration::from_secs(5),
    ));
    serving.await;
    Ok(())
}
