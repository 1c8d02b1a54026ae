//! `swapvisor run CONFIG`: serve until asked to stop, reloading on file changes, SIGHUP or the
//! admin API, then stop gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use swapvisor::admin::{self, AdminState, Metrics};
use swapvisor::config::read_file;
use swapvisor::{Origin, Registry, Reload, Runtime};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE, watch};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (YAML or JSON).
    config: PathBuf,

    /// Reload when the config file changes (saves by rename included).
    #[arg(long)]
    watch: bool,

    /// Where the admin API listens, or `off`.
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:9797", value_parser = parse_admin)]
    admin: AdminAddress,

    /// Bearer token every /api/ admin path requires. Required for a non-loopback --admin.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SWAPVISOR_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,

    /// Largest admin request body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    admin_max_body: usize,
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
    let text = text
        .strip_prefix("localhost:")
        .map(|port| format!("127.0.0.1:{port}"))
        .unwrap_or_else(|| text.to_owned());
    text.parse()
        .map(AdminAddress::At)
        .map_err(|_| format!("{text:?} is not an address such as 127.0.0.1:9797 (or off)"))
}

pub async fn run(args: RunArgs) -> u8 {
    // Listen for signals before anything else, so that a signal sent as soon as the service
    // reports itself up is never met by the default action (termination without cleanup).
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("swapvisor: cannot install signal handlers: {error}");
            return EXIT_USAGE;
        }
    };
    if args.admin_token.as_deref() == Some("") {
        eprintln!("swapvisor: the admin token must not be empty");
        return EXIT_USAGE;
    }
    // The admin listener is bound before the engine starts, so a refused admin setup starts
    // nothing.
    let admin_listener = match args.admin {
        AdminAddress::Off => None,
        AdminAddress::At(address) => {
            match admin::bind(address, args.admin_token.as_deref()).await {
                Ok(listener) => Some(listener),
                Err(error) => {
                    eprintln!("swapvisor: {error}");
                    return EXIT_USAGE;
                }
            }
        }
    };
    let source = match read_file(&args.config) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("swapvisor: {error}");
            return EXIT_INVALID;
        }
    };
    let metrics = Arc::new(Metrics::default());
    let started = Runtime::builder(Registry::with_builtins())
        .observer(metrics.clone())
        .start(source)
        .await;
    let runtime = match started {
        Ok(runtime) => Arc::new(runtime),
        Err(error) => {
            eprintln!("swapvisor: {}: {error}", args.config.display());
            return EXIT_INVALID;
        }
    };

    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut admin_address = "off".to_owned();
    let admin_task = admin_listener.map(|listener| {
        if let Ok(local) = listener.local_addr() {
            admin_address = format!("http://{local}");
        }
        let state = AdminState {
            runtime: runtime.clone(),
            config_path: Some(args.config.clone()),
            token: args.admin_token.as_deref().map(Arc::from),
            max_body: args.admin_max_body,
            metrics: metrics.clone(),
        };
        tokio::spawn(admin::serve(listener, state, async {
            let _ = admin_stopped.await;
        }))
    });
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
    let _ = admin_stop.send(());
    if let Some(task) = admin_task {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    tracing::info!("stopped");
    EXIT_OK
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

    async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.hangup.recv() => Event::Reload,
            _ = self.interrupt.recv() => Event::Shutdown("SIGINT"),
            _ = self.terminate.recv() => Event::Shutdown("SIGTERM"),
        }
    }
}
