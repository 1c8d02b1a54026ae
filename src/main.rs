//! The `swapvisor` command line: run a config, validate one, or list the registered types.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.log.as_deref());
    // A panic in a module or plugin is caught and reported as an error; log it as one line
    // instead of the default hook's backtrace on stderr.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = match swapvisor::actors::guard::Interrupted::from_panic(info.payload()) {
            swapvisor::actors::guard::Interrupted::Panicked(message) => message,
            other => other.to_string(),
        };
        tracing::error!(%location, "panic: {message}");
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("swapvisor: cannot start the async runtime: {error}");
            return ExitCode::from(cli::EXIT_USAGE);
        }
    };
    let code = runtime.block_on(cli::dispatch(args));
    // Tasks still running (draining connections past their deadline) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(code)
}
