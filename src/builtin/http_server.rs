//! `http.server` (a module that serves pipelines over HTTP) and the `http` trigger that routes
//! a pipeline to one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::config::{ConfigErrors, parse_duration, place};
use crate::extension::{
    ConnectionLimits, HttpRoute, ListenerKey, ListenerLease, Module, ModuleBuild, ModuleContext,
    ModuleError, TriggerBinding, TriggerBuild,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServerSettings {
    address: String,
    max_connections: Option<u64>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    body_read_timeout: Option<String>,
    min_body_rate: Option<u64>,
}

impl ServerSettings {
    /// The listener's limits: the defaults, with what the config sets. Problems go to `errors`.
    fn limits(&self, place: &str, errors: &mut ConfigErrors) -> ConnectionLimits {
        let mut limits = ConnectionLimits::server_defaults();
        if let Some(max) = self.max_connections {
            match usize::try_from(max) {
                Ok(max) if max > 0 => limits.max_connections = max,
                _ => errors.push(
                    place::field(place, "maxConnections"),
                    format!("maxConnections must be at least 1, got {max}"),
                ),
            }
        }
        if let Some(rate) = self.min_body_rate {
            limits.min_body_rate = rate;
        }
        let timeouts = [
            (
                "headerReadTimeout",
                &self.header_read_timeout,
                &mut limits.header_read_timeout,
            ),
            ("idleTimeout", &self.idle_timeout, &mut limits.idle_timeout),
            (
                "bodyReadTimeout",
                &self.body_read_timeout,
                &mut limits.body_read_timeout,
            ),
        ];
        for (field, text, target) in timeouts {
            let Some(text) = text else { continue };
            match parse_duration(text) {
                Ok(Duration::ZERO) => errors.push(
                    place::field(place, field),
                    format!("{field} must be longer than zero, got {text:?}"),
                ),
                Ok(duration) => *target = duration,
                Err(message) => errors.push(place::field(place, field), message),
            }
        }
        limits
    }
}

/// The `http.server` module: borrows its listener from the runtime's pool at start and gives
/// it back at stop. Requests are routed by the engine, not by the module.
struct HttpServer {
    key: ListenerKey,
    limits: ConnectionLimits,
    lease: Mutex<Option<ListenerLease>>,
}

impl HttpServer {
    /// The bound address, while started.
    fn local_addr(&self) -> Option<SocketAddr> {
        self.lease().as_ref().map(ListenerLease::local_addr)
    }

    fn lease(&self) -> std::sync::MutexGuard<'_, Option<ListenerLease>> {
        // Only ever holds an Option; a panic elsewhere cannot leave it inconsistent.
        self.lease.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Parses `IP:port`, also accepting `localhost:port` and `:port` (all interfaces: `[::]`,
/// which the listener pool binds dual-stack, IPv4 included, where the system allows).
fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let invalid = || {
        format!(
            "invalid address {text:?} (expected IP:port, such as \"127.0.0.1:8080\", \"[::1]:8080\" or \"localhost:8080\")"
        )
    };
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    let ip = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return Err(invalid()),
    };
    Ok(SocketAddr::new(ip, port))
}

pub(super) fn build_server(build: &ModuleBuild<'_>) -> Result<Box<dyn Module>, ConfigErrors> {
    let settings: ServerSettings = build.settings()?;
    let mut errors = ConfigErrors::default();
    let address = parse_address(&settings.address)
        .map_err(|message| errors.push(place::field(build.place, "address"), message));
    let limits = settings.limits(build.place, &mut errors);
    let (Ok(address), true) = (address, errors.is_empty()) else {
        return Err(errors);
    };
    Ok(Box::new(HttpServer {
        key: ListenerKey::new(address, build.name),
        limits,
        lease: Mutex::new(None),
    }))
}

impl Module for HttpServer {
    fn start<'a>(&'a self, context: &'a ModuleContext) -> BoxFuture<'a, Result<(), ModuleError>> {
        Box::pin(async move {
            let lease = context
                .services
                .listeners()
                .acquire_with(&self.key, self.limits)?;
            tracing::info!(server = %context.name, address = %lease.local_addr(), "http.server serving");
            *self.lease() = Some(lease);
            Ok(())
        })
    }

    fn stop(&self, deadline: Instant) -> BoxFuture<'_, Result<(), ModuleError>> {
        let lease = self.lease().take();
        Box::pin(async move {
            if let Some(lease) = lease {
                lease.release(deadline).await;
            }
            Ok(())
        })
    }

    fn status(&self) -> Map<String, Value> {
        let mut details = Map::new();
        details.insert(
            "address".into(),
            Value::String(self.key.address.to_string()),
        );
        if let Some(local) = self.local_addr() {
            details.insert("listening".into(), Value::String(local.to_string()));
        }
        details.insert(
            "maxConnections".into(),
            Value::from(self.limits.max_connections),
        );
        details
    }

    fn http_listener(&self) -> Option<&ListenerKey> {
        Some(&self.key)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerSettings {
    server: String,
    #[serde(default = "default_method")]
    method: String,
    path: String,
}

fn default_method() -> String {
    "GET".to_owned()
}

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*",
];

pub(super) fn build_trigger(build: &TriggerBuild<'_>) -> Result<TriggerBinding, ConfigErrors> {
    let settings: TriggerSettings = build.settings()?;
    let mut errors = ConfigErrors::default();
    let method = settings.method.to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        errors.push(
            place::field(build.place, "method"),
            format!(
                "unsupported method {:?} (valid: {})",
                settings.method,
                METHODS.join(", ")
            ),
        );
    }
    if !settings.path.starts_with('/') {
        errors.push(
            place::field(build.place, "path"),
            format!("path {:?} must start with \"/\"", settings.path),
        );
    }
    errors.into_result(TriggerBinding::Http(HttpRoute {
        server: settings.server,
        method,
        path: settings.path,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_friendly_forms() {
        assert_eq!(
            parse_address("127.0.0.1:80").unwrap().to_string(),
            "127.0.0.1:80"
        );
        assert_eq!(
            parse_address("localhost:81").unwrap().to_string(),
            "127.0.0.1:81"
        );
        assert_eq!(parse_address(":82").unwrap().to_string(), "[::]:82");
        assert_eq!(parse_address("[::1]:83").unwrap().to_string(), "[::1]:83");
        assert!(
            parse_address("example.com:80")
                .unwrap_err()
                .contains("expected IP:port")
        );
        assert!(parse_address("127.0.0.1").is_err());
    }
}
