//! The `swapvisor` command line, as a library call, so a binary of your own can register its own
//! types and keep everything else: `run` with `--watch`, SIGHUP and the admin API, `validate`,
//! `types`, and the admin API client (`reload`, `status`, `try-activate`).
//!
//! A custom binary is a registry and one call (see `examples/custom_binary.rs`):
//!
//! ```no_run
//! use swapvisor::Registry;
//!
//! fn main() -> std::process::ExitCode {
//!     let registry = Registry::with_builtins();
//!     // registry.register_step("step.mine", "my-binary", ...);
//!     swapvisor::cli::main(registry)
//! }
//! ```
//!
//! Every flag of `run` and of the client commands can also be given as a `SWAPVISOR_...`
//! environment variable; `--help` names each one.

mod client;
mod logging;
mod run;
mod systemd;
mod types;
mod upgrade;
mod validate;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use logging::LogFormat;

use crate::Registry;

/// Exit code for a clean exit, an `activated` (or `unchanged`) reload, a `build_ok` verdict.
pub const EXIT_OK: u8 = 0;
/// Exit code for a config that does not validate, or an admin answer other than success.
pub const EXIT_INVALID: u8 = 1;
/// Exit code for a usage error or a refused setup.
pub const EXIT_USAGE: u8 = 2;

/// swapvisor runs a config-driven engine and keeps it serving while its config changes.
#[derive(Debug, Parser)]
#[command(name = "swapvisor", version, about, long_about = None)]
pub struct Cli {
    /// Log filter, in tracing's EnvFilter syntax (default: info, or $RUST_LOG).
    #[arg(long, global = true, value_name = "FILTER", env = "SWAPVISOR_LOG")]
    pub log: Option<String>,

    /// Log lines as text, or as one JSON object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "SWAPVISOR_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

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
        /// Run each process plugin that declares no `stepTypes` once, to learn them from its
        /// initialize answer. This EXECUTES the config's plugin commands: use it only on
        /// configs you trust. Without it, validate runs nothing.
        #[arg(long)]
        describe: bool,
    },
    /// List the registered module, step and trigger types and plugin kinds.
    Types {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running instance to reload: FILE's content, or its own config file without FILE.
    /// Exits 0 when the answer is `activated` or `unchanged`, else 1.
    Reload(client::ReloadArgs),
    /// Print a running instance's status. Exits 0 when it answers, else 1.
    Status(client::StatusArgs),
    /// Ask a running instance whether FILE would build, without activating it. Exits 0 on
    /// `build_ok`, else 1.
    TryActivate(client::TryActivateArgs),
    /// Ask a running instance to upgrade its binary without dropping a connection: it starts
    /// the new executable on its listening sockets and exits once that serves. Exits 0 when
    /// the answer is `upgraded`, else 1 (the instance serves on).
    Upgrade(client::UpgradeArgs),
    /// Reload a whole fleet all or nothing, or show its nodes, through any node's admin API.
    #[cfg(feature = "fleet")]
    #[command(subcommand)]
    Fleet(client::FleetCommand),
}

/// Parses the command line, sets up logging, and runs the chosen command with `registry`'s
/// types. Returns the process exit code.
pub fn main(registry: Registry) -> ExitCode {
    let args = Cli::parse();
    logging::init(args.log.as_deref(), args.log_format);
    logging::log_panics();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("swapvisor: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // On a worker, not on this thread: a signal then wakes the command's task on the worker
    // whose I/O driver saw it, instead of waking this thread first (on an idle VM, SIGHUP to
    // the reload being taken up went from about 1.0 ms to about 0.65 ms; docs/BENCHMARKS.md).
    let code = runtime.block_on(async {
        tokio::spawn(dispatch(args, registry))
            .await
            .unwrap_or_else(|error| {
                // The command panicked (the panic hook has logged it): exit as a panic would.
                eprintln!("swapvisor: {error}");
                101
            })
    });
    // Tasks still running (draining connections past their deadline) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(code)
}

/// Runs the chosen command and returns the process exit code. [`main`] without the set-up, for
/// a caller with its own runtime and logging.
pub async fn dispatch(cli: Cli, registry: Registry) -> u8 {
    match cli.command {
        Command::Run(args) => run::run(args, registry).await,
        Command::Validate { config, describe } => {
            if describe {
                crate::builtin::allow_describe();
            }
            validate::validate(&registry, &config).await
        }
        Command::Types { json } => types::types(&registry, json),
        Command::Reload(args) => client::reload(args).await,
        Command::Status(args) => client::status(args).await,
        Command::TryActivate(args) => client::try_activate(args).await,
        Command::Upgrade(args) => client::upgrade(args).await,
        #[cfg(feature = "fleet")]
        Command::Fleet(command) => client::fleet(command).await,
    }
}
