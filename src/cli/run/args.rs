//! The flags of `swapvisor run`: the config, `--watch`, the admin API's address, token and
//! limits, and the fleet's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::extension::ConnectionLimits;

#[derive(Debug, Args)]
/// The flags of `swapvisor run`.
pub(crate) struct RunArgs {
    /// The config file (YAML or JSON).
    #[arg(env = "SWAPVISOR_CONFIG")]
    pub(super) config: PathBuf,

    /// Reload when the config file's content changes (saves by rename and Kubernetes ConfigMap
    /// updates included).
    #[arg(
        long,
        env = "SWAPVISOR_WATCH",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(super) watch: bool,

    /// Where the admin API listens, or `off`.
    #[arg(
        long,
        value_name = "ADDR|off",
        default_value = "127.0.0.1:9797",
        value_parser = parse_admin,
        env = "SWAPVISOR_ADMIN"
    )]
    pub(super) admin: AdminAddress,

    #[command(flatten)]
    pub(super) token: TokenArgs,

    /// Where the process keeps what outlives it (the last good config, plugin checkpoints),
    /// or `off` [default: $STATE_DIRECTORY (systemd's StateDirectory=), else
    /// $XDG_STATE_HOME/swapvisor, else ~/.local/state/swapvisor].
    #[arg(long, value_name = "DIR|off", env = "SWAPVISOR_STATE_DIR")]
    pub(super) state_dir: Option<PathBuf>,

    /// How long the new process of a binary upgrade may take to build and start the config.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout, env = "SWAPVISOR_UPGRADE_TIMEOUT")]
    pub(super) upgrade_timeout: Duration,

    /// How long open connections get to finish their request during a binary upgrade's
    /// hand-off (each is answered once more, then closed; idle ones are closed at the end).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout, env = "SWAPVISOR_UPGRADE_DRAIN")]
    pub(super) upgrade_drain: Duration,

    /// Start from the last config that activated (saved in the state folder) instead of the
    /// config file; the file is still what SIGHUP and --watch reload.
    #[arg(long, env = "SWAPVISOR_RESUME", value_parser = clap::builder::BoolishValueParser::new())]
    pub(super) resume: bool,

    /// Largest admin request body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024, env = "SWAPVISOR_ADMIN_MAX_BODY")]
    pub(super) admin_max_body: usize,

    #[command(flatten)]
    pub(super) admin_limits: AdminLimitArgs,

    #[cfg(feature = "fleet")]
    #[command(flatten)]
    pub(super) cluster: ClusterArgs,
}

/// The admin API's connection cap and timeouts (docs/ADMIN_API.md, "Limits").
#[derive(Debug, Args)]
pub(super) struct AdminLimitArgs {
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

impl RunArgs {
    /// The state folder: opened and checked, `None` when off. A folder given by flag or
    /// variable that cannot be used is an error; the default one is only warned about.
    pub(super) fn state(&self) -> Result<Option<crate::state::StateDir>, String> {
        let (path, given) = match &self.state_dir {
            Some(path) if path.as_os_str().eq_ignore_ascii_case("off") => return Ok(None),
            Some(path) => (path.clone(), true),
            None => match crate::state::default_path() {
                Some(path) => (path, false),
                None => return Ok(None),
            },
        };
        match crate::state::StateDir::open(path) {
            Ok(dir) => Ok(Some(dir)),
            Err(error) if given => Err(error.to_string()),
            Err(error) => {
                tracing::warn!(%error, "cannot use the default state folder; running without one (set --state-dir)");
                Ok(None)
            }
        }
    }
}

impl AdminLimitArgs {
    pub(super) fn limits(&self) -> ConnectionLimits {
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
pub(super) struct ClusterArgs {
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
    pub(super) fn settings(&self) -> Result<Option<crate::fleet::FleetSettings>, String> {
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
pub(super) enum AdminAddress {
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
pub(in crate::cli) fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let text = text
        .strip_prefix("localhost:")
        .map(|port| format!("127.0.0.1:{port}"))
        .unwrap_or_else(|| text.to_owned());
    text.parse()
        .map_err(|_| format!("{text:?} is not an address such as 127.0.0.1:9797"))
}

/// The admin token: given, read from a file, or none.
#[derive(Debug, Args)]
pub(in crate::cli) struct TokenArgs {
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
    pub(in crate::cli) fn read(&self) -> Result<Option<String>, String> {
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
