//! `swapvisor run CONFIG`: serve until asked to stop, then stop gracefully.

use std::path::PathBuf;

use clap::Args;
use swapvisor::config::{DocumentLimits, process_env, read_file};
use swapvisor::engine::Services;
use swapvisor::{Engine, Registry};

use super::{EXIT_INVALID, EXIT_OK};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (YAML or JSON).
    config: PathBuf,
}

pub async fn run(args: RunArgs) -> u8 {
    let registry = Registry::with_builtins();
    let source = match read_file(&args.config) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("swapvisor: {error}");
            return EXIT_INVALID;
        }
    };
    let engine = match Engine::build_from_source(
        &source,
        &DocumentLimits::default(),
        &registry,
        Services::standalone(),
        &process_env,
    )
    .await
    {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("swapvisor: {}: {error}", args.config.display());
            return EXIT_INVALID;
        }
    };
    if let Err(error) = engine.start().await {
        eprintln!("swapvisor: {error}");
        return EXIT_INVALID;
    }
    let serving: Vec<String> = engine
        .listening()
        .into_iter()
        .map(|(name, address)| format!("{name}=http://{address}"))
        .collect();
    tracing::info!(config = %args.config.display(), serving = %serving.join(" "), "swapvisor is up");
    wait_for_shutdown_signal().await;
    tracing::info!("shutting down");
    if let Err(error) = engine.stop_now().await {
        tracing::warn!(%error, "shutdown was not clean");
    }
    EXIT_OK
}

/// Waits for Ctrl-C or SIGTERM.
async fn wait_for_shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
