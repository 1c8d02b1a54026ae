//! `swapvisor run CONFIG`: serve until asked to stop, then stop gracefully.

use std::path::PathBuf;

use clap::Args;
use swapvisor::config::read_file;
use swapvisor::{Registry, Runtime, RuntimeOptions};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{EXIT_INVALID, EXIT_OK};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (YAML or JSON).
    config: PathBuf,
}

pub async fn run(args: RunArgs) -> u8 {
    // Listen for signals before anything else, so that a signal sent as soon as the service
    // reports itself up is never met by the default action (termination without cleanup).
    let shutdown = match ShutdownSignals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("swapvisor: cannot install signal handlers: {error}");
            return super::EXIT_USAGE;
        }
    };
    let source = match read_file(&args.config) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("swapvisor: {error}");
            return EXIT_INVALID;
        }
    };
    let runtime =
        match Runtime::start_with(source, Registry::with_builtins(), RuntimeOptions::default())
            .await
        {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("swapvisor: {}: {error}", args.config.display());
                return EXIT_INVALID;
            }
        };
    let serving: Vec<String> = runtime
        .live_engine()
        .map(|engine| engine.listening())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, address)| format!("{name}=http://{address}"))
        .collect();
    tracing::info!(config = %args.config.display(), serving = %serving.join(" "), "swapvisor is up");
    shutdown.wait().await;
    tracing::info!("shutting down");
    if let Err(error) = runtime.shutdown().await {
        tracing::warn!(%error, "shutdown was not clean");
    }
    EXIT_OK
}

/// SIGINT and SIGTERM, listened for from the moment they are installed.
struct ShutdownSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for either signal.
    async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
