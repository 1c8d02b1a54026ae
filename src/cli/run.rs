//! `swapvisor run CONFIG`: serve until asked to stop, reloading on file changes, SIGHUP or the
//! admin API, then stop gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::{self, AdminState};
use crate::config::read_file;
use crate::extension::{ConnectionLimits, DescriptorBudget};
use crate::{Origin, Registry, Reload, Runtime};
use clap::Args;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE, watch};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (YAML or JSON).
    #[arg(env = "SWAPVISOR_CONFIG")]
    config: PathBuf,

    /// Reload when the config file's content changes (saves by rename and Kubernetes ConfigMap
    /// updates included).
    #[arg(
        long,
        env = "SWAPVISOR_WATCH",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    watch: bool,

    /// Where the admin API listens, or `off`.
    #[arg(
        long,
        value_name = "ADDR|off",
        default_value = "127.0.0.1:9797",
        value_parser = parse_admin,
        env = "SWAPVISOR_ADMIN"
    )]
    admin: AdminAddress,

    #[command(flatten)]
    token: TokenArgs,

    /// Largest admin request body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024, env = "SWAPVISOR_ADMIN_MAX_BODY")]
    admin_max_body: usize,

    #[command(flatten)]
    admin_limits: AdminLimitArgs,

    #[cfg(feature = "fleet")]
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// The admin API's connection cap and timeouts (docs/ADMIN_API.md, "Limits").
#[derive(Debug, Args)]
struct AdminLimitArgs {
    /// Most connections the admin API holds at once [default: an eighth of the open-file
    /// limit, at most 256].
    #[arg(
        long,
        value_name = "N",
        env = "SWAPVISOR_ADMIN_MAX_CONNECTIONS",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    admin_max_connections: Option<u32>,

    /// How long an admin connection may take to send a request head.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout, env = "SWAPVISOR_ADMIN_HEADER_READ_TIMEOUT")]
    admin_header_read_timeout: Duration,

    /// How long a kept-alive admin connection may wait for its next request.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout, env = "SWAPVISOR_ADMIN_IDLE_TIMEOUT")]
    admin_idle_timeout: Duration,

    /// How long an admin request may take to send its body (then 408).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout, env = "SWAPVISOR_ADMIN_BODY_READ_TIMEOUT")]
    admin_body_read_timeout: Duration,

    /// The slowest an admin request body may arrive after its first 10 seconds, in bytes per
    /// second (then 408); 0 for no minimum.
    #[arg(long, value_name = "BYTES", default_value_t = ConnectionLimits::DEFAULT_MIN_BODY_RATE, env = "SWAPVISOR_ADMIN_MIN_BODY_RATE")]
    admin_min_body_rate: u64,
}

impl AdminLimitArgs {
    fn limits(&self) -> ConnectionLimits {
        let defaults = ConnectionLimits::admin_defaults();
        ConnectionLimits {
            header_read_timeout: self.admin_header_read_timeout,
            idle_timeout: self.admin_idle_timeout,
            body_read_timeout: self.admin_body_read_timeout,
            min_body_rate: self.admin_min_body_rate,
            max_connections: self
                .admin_max_connections
                .map_or(defaults.max_connections, |n| n as usize),
        }
    }
}

/// A timeout flag: a duration such as `500ms` or `30s`, above zero.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    match crate::config::parse_duration(text)? {
        Duration::ZERO => Err("a timeout must be longer than zero".into()),
        duration => Ok(duration),
    }
}

/// Joining a fleet (the `fleet` feature).
#[cfg(feature = "fleet")]
#[derive(Debug, Args)]
struct ClusterArgs {
    /// Join a fleet: accept cluster connections on this address (port 0: an ephemeral port).
    /// It must not face untrusted networks.
    #[arg(long, value_name = "ADDR", value_parser = parse_address, env = "SWAPVISOR_CLUSTER_LISTEN")]
    cluster_listen: Option<SocketAddr>,

    /// Fleet nodes to connect to, comma-separated.
    #[arg(
        long,
        value_name = "ADDR,...",
        value_delimiter = ',',
        value_parser = parse_address,
        env = "SWAPVISOR_CLUSTER_PEERS",
        requires = "cluster_listen"
    )]
    cluster_peers: Vec<SocketAddr>,

    /// The file holding the fleet's shared cookie (surrounding whitespace ignored).
    #[arg(long, value_name = "FILE", env = "SWAPVISOR_CLUSTER_COOKIE_FILE")]
    cluster_cookie_file: Option<PathBuf>,
}

#[cfg(feature = "fleet")]
impl ClusterArgs {
    /// The fleet settings, when `--cluster-listen` is given.
    fn settings(&self) -> Result<Option<crate::fleet::FleetSettings>, String> {
        let Some(listen) = self.cluster_listen else {
            return Ok(None);
        };
        let Some(path) = &self.cluster_cookie_file else {
            return Err(
                "--cluster-listen needs --cluster-cookie-file (or SWAPVISOR_CLUSTER_COOKIE_FILE)"
                    .into(),
            );
        };
        let cookie = std::fs::read_to_string(path)
            .map_err(|e| {
                format!(
                    "cannot read the cluster cookie file {}: {e}",
                    path.display()
                )
            })?
            .trim()
            .to_owned();
        Ok(Some(crate::fleet::FleetSettings {
            listen,
            peers: self.cluster_peers.clone(),
            cookie,
            call_timeout: std::time::Duration::from_secs(30),
        }))
    }
}

/// `--admin`: an address, or off.
#[derive(Debug, Clone, Copy)]
pub enum AdminAddress {
    Off,
    At(SocketAddr),
}

fn parse_admin(text: &str) -> Result<AdminAddress, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(AdminAddress::Off);
    }
    parse_address(text).map(AdminAddress::At)
}

/// An address such as `127.0.0.1:9797` or `localhost:9797`.
pub(super) fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let text = text
        .strip_prefix("localhost:")
        .map(|port| format!("127.0.0.1:{port}"))
        .unwrap_or_else(|| text.to_owned());
    text.parse()
        .map_err(|_| format!("{text:?} is not an address such as 127.0.0.1:9797"))
}

pub async fn run(args: RunArgs, registry: Registry) -> u8 {
    // Listen for signals before anything else, so that a signal sent as soon as the service
    // reports itself up is never met by the default action (termination without cleanup).
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("swapvisor: cannot install signal handlers: {error}");
            return EXIT_USAGE;
        }
    };
    // Every connection takes a descriptor from one per-process budget: make it the budget the
    // operator set (the hard limit), not the soft default.
    match DescriptorBudget::raise_open_file_limit() {
        Ok((before, after)) if after > before => {
            tracing::info!(
                before,
                after,
                "raised the open-file limit to the hard limit"
            )
        }
        Ok((_, after)) => tracing::debug!(limit = after, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit; keeping it"),
    }
    let token = match args.token.read() {
        Ok(token) => token,
        Err(error) => {
            eprintln!("swapvisor: {error}");
            return EXIT_USAGE;
        }
    };
    // The admin API serves before the engine starts, so probes are answered during a slow
    // start (`/readyz` says `starting`), and a refused admin setup starts nothing.
    let admin_state = AdminState::new(
        Some(args.config.clone()),
        token.as_deref(),
        args.admin_max_body,
    );
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut admin_address = "off".to_owned();
    let admin_task = match args.admin {
        AdminAddress::Off => None,
        AdminAddress::At(address) => match admin::bind(address, token.as_deref()).await {
            Ok(listener) => {
                if let Ok(local) = listener.local_addr() {
                    admin_address = format!("http://{local}");
                }
                tracing::info!(admin = %admin_address, "the admin API is up");
                Some(tokio::spawn(admin::serve(
                    listener,
                    admin_state.clone(),
                    args.admin_limits.limits(),
                    async {
                        let _ = admin_stopped.await;
                    },
                )))
            }
            Err(error) => {
                eprintln!("swapvisor: {error}");
                return EXIT_USAGE;
            }
        },
    };
    let stop_admin = || async {
        let _ = admin_stop.send(());
        if let Some(task) = admin_task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
    };
    let source = match read_file(&args.config) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("swapvisor: {error}");
            stop_admin().await;
            return EXIT_INVALID;
        }
    };
    let started = Runtime::builder(registry)
        .observer(admin_state.metrics.clone())
        .start(source);
    // A shutdown signal during a slow start ends the start instead of waiting for it.
    let started = tokio::select! {
        started = started => started,
        event = signals.shutdown() => {
            tracing::info!(signal = event, "shutting down before the first engine started");
            stop_admin().await;
            return EXIT_OK;
        }
    };
    let runtime = match started {
        Ok(runtime) => Arc::new(runtime),
        Err(error) => {
            eprintln!("swapvisor: {}: {error}", args.config.display());
            stop_admin().await;
            return EXIT_INVALID;
        }
    };
    admin_state.attach(runtime.clone());
    #[cfg(feature = "fleet")]
    let _fleet = match args.cluster.settings() {
        Ok(None) => None,
        Ok(Some(settings)) => match crate::fleet::Fleet::join(runtime.clone(), settings).await {
            Ok(fleet) => {
                let fleet = Arc::new(fleet);
                admin_state.attach_fleet(fleet.clone());
                tokio::spawn(catch_up(fleet.clone()));
                Some(fleet)
            }
            Err(error) => {
                eprintln!("swapvisor: {error}");
                let _ = runtime.shutdown().await;
                stop_admin().await;
                return EXIT_USAGE;
            }
        },
        Err(error) => {
            eprintln!("swapvisor: {error}");
            let _ = runtime.shutdown().await;
            stop_admin().await;
            return EXIT_USAGE;
        }
    };
    let watcher = if args.watch {
        match watch::watch(&args.config, runtime.clone()) {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::error!(%error, "cannot watch the config file; continuing without --watch");
                None
            }
        }
    } else {
        None
    };

    let serving: Vec<String> = runtime
        .status()
        .await
        .map(|status| status.listening())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, address)| format!("{name}=http://{address}"))
        .collect();
    tracing::info!(
        config = %args.config.display(),
        serving = %serving.join(" "),
        admin = %admin_address,
        "swapvisor is up"
    );

    loop {
        match signals.next().await {
            Event::Reload => {
                tracing::info!("SIGHUP: reloading the config file");
                match read_file(&args.config) {
                    Ok(source) => {
                        let runtime = runtime.clone();
                        // Not awaited here, so that a slow reload never delays a shutdown signal.
                        tokio::spawn(async move {
                            let request = Reload::new(source).from(Origin::Signal);
                            let _ = runtime.reload(request).await;
                        });
                    }
                    Err(error) => {
                        tracing::error!(%error, "SIGHUP: cannot read the config file; keeping the current config")
                    }
                }
            }
            Event::Shutdown(name) => {
                tracing::info!(signal = name, "shutting down");
                break;
            }
        }
    }
    drop(watcher);
    if let Err(error) = runtime.shutdown().await {
        tracing::warn!(%error, "shutdown was not clean");
    }
    stop_admin().await;
    tracing::info!("stopped");
    EXIT_OK
}

/// A node that (re)joins a fleet which moved on while it was away reloads to the fleet's
/// config.
#[cfg(feature = "fleet")]
async fn catch_up(fleet: Arc<crate::fleet::Fleet>) {
    use crate::fleet::CatchUp;
    match fleet.catch_up(std::time::Duration::from_secs(10)).await {
        CatchUp::Alone => tracing::info!("no other fleet node is up yet"),
        CatchUp::Current => tracing::info!("this node is on the fleet's config"),
        CatchUp::Reloaded {
            from,
            fleet_generation,
            answer,
        } => tracing::info!(
            %from,
            fleet_generation,
            outcome = %answer.outcome,
            "caught up with the fleet"
        ),
        CatchUp::Failed(error) => {
            tracing::error!(%error, "cannot catch up with the fleet; this node is diverged")
        }
    }
}

/// The admin token: given, read from a file, or none.
#[derive(Debug, Args)]
pub(super) struct TokenArgs {
    /// Bearer token every /api/ admin path requires. Required for a non-loopback --admin.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SWAPVISOR_ADMIN_TOKEN",
        hide_env_values = true,
        conflicts_with = "admin_token_file"
    )]
    admin_token: Option<String>,

    /// Read the admin token from this file (a Kubernetes secret, for example); surrounding
    /// whitespace is ignored.
    #[arg(long, value_name = "FILE", env = "SWAPVISOR_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token, if one is given; an error names an unreadable or empty one.
    pub(super) fn read(&self) -> Result<Option<String>, String> {
        let token = match (&self.admin_token, &self.admin_token_file) {
            (Some(token), _) => token.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the admin token file {}: {e}", path.display()))?
                .trim()
                .to_owned(),
            (None, None) => return Ok(None),
        };
        crate::secret::check("the admin token", &token)?;
        Ok(Some(token))
    }
}

enum Event {
    Reload,
    Shutdown(&'static str),
}

/// SIGHUP, SIGINT and SIGTERM, listened for from the moment they are installed.
struct Signals {
    hangup: Signal,
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            hangup: signal(SignalKind::hangup())?,
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// The next shutdown signal's name; SIGHUP is ignored (nothing to reload yet).
    async fn shutdown(&mut self) -> &'static str {
        loop {
            if let Event::Shutdown(name) = self.next().await {
                return name;
            }
        }
    }

    async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.hangup.recv() => Event::Reload,
            _ = self.interrupt.recv() => Event::Shutdown("SIGINT"),
            _ = self.terminate.recv() => Event::Shutdown("SIGTERM"),
        }
    }
}
