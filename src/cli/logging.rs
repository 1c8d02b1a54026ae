//! Log set-up: text for people, JSON lines for machines, on stderr so that stdout carries only
//! the command's own output.

use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the event's `fields`, and the
    /// spans it happened in (a reload's `id`, `origin` and `outcome` among them).
    Json,
}

/// Installs the global subscriber. `filter` is tracing's EnvFilter syntax; without it, $RUST_LOG
/// or `info`.
pub(super) fn init(filter: Option<&str>, format: LogFormat) {
    let filter = match filter {
        Some(filter) => EnvFilter::try_new(filter),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    }
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// A panic in a module or plugin is caught and reported as an error; log it as one line instead
/// of the default hook's backtrace on stderr.
pub(super) fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = match crate::actors::guard::Interrupted::from_panic(info.payload()) {
            crate::actors::guard::Interrupted::Panicked(message) => message,
            other => other.to_string(),
        };
        tracing::error!(%location, "panic: {message}");
    }));
}
