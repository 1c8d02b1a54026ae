//! Command-line parsing and the subcommands.

mod run;
mod types;
mod validate;
mod watch;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Exit code for a clean exit.
pub const EXIT_OK: u8 = 0;
/// Exit code for a config that does not validate.
pub const EXIT_INVALID: u8 = 1;
/// Exit code for a usage error or a refused setup.
pub const EXIT_USAGE: u8 = 2;

/// swapvisor runs a config-driven engine and keeps it serving while its config changes.
#[derive(Debug, Parser)]
#[command(name = "swapvisor", version, about, long_about = None)]
pub struct Cli {
    /// Log filter, in tracing's EnvFilter syntax (default: info, or $RUST_LOG).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a config; reload it on file changes (--watch), SIGHUP or the admin API; stop
    /// gracefully on Ctrl-C or SIGTERM.
    Run(run::RunArgs),
    /// Build a config without starting anything, and print the verdict as JSON.
    Validate {
        /// The config file (YAML or JSON).
        config: PathBuf,
    },
    /// List the registered module, step and trigger types and plugin kinds.
    Types {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the chosen subcommand and returns the process exit code.
pub async fn dispatch(cli: Cli) -> u8 {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Validate { config } => validate::validate(&config).await,
        Command::Types { json } => types::types(json),
    }
}

/// Logs go to stderr, so that stdout carries only the command's own output.
pub fn init_logging(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(filter) => EnvFilter::try_new(filter),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    }
    .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
