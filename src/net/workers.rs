//! The threads that serve connections: one single-threaded tokio runtime per core.
//!
//! Measured on two cores (docs/BENCHMARKS.md, issue 29), a keep-alive request served on the
//! work-stealing runtime costs about twice what the same request costs on a runtime of one
//! thread: every wake-up may land on the other worker, and the two workers contend on the
//! run queues, the I/O driver and the connection's own state. Two single-threaded processes
//! served 1.8 times what one two-worker process did. So, the way nginx's workers and actix's
//! arbiters do, each accepted connection is handed to one of a few *connection threads*, each
//! running a current-thread runtime, and lives there until it closes: its reads, its writes,
//! its pipeline runs and its timers never cross a thread.
//!
//! The accept loops stay on the caller's runtime and keep owning their connections (a
//! `JoinSet` spawns onto a connection thread's handle), so closing, draining and aborting are
//! unchanged. Connections are dealt round-robin. The threads are started at the first
//! connection and live as long as the process; `SWAPVISOR_CONNECTION_THREADS` sets how many
//! (default: the number of cores), and `0` serves connections on the accepting runtime as
//! before.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;

/// The environment variable that sets the number of connection threads.
pub(crate) const THREADS_ENV: &str = "SWAPVISOR_CONNECTION_THREADS";

static THREADS: OnceLock<Vec<Handle>> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The connection thread the next connection goes to; `None` when connections are served on
/// the accepting runtime (`SWAPVISOR_CONNECTION_THREADS=0`, or no thread could be started).
pub(super) fn next() -> Option<&'static Handle> {
    let threads = THREADS.get_or_init(start);
    if threads.is_empty() {
        return None;
    }
    threads.get(NEXT.fetch_add(1, Ordering::Relaxed) % threads.len())
}

fn wanted() -> usize {
    match std::env::var(THREADS_ENV) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(value = %text, "{THREADS_ENV} is not a number; using one thread per core");
            cores()
        }),
        Err(_) => cores(),
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn start() -> Vec<Handle> {
    let mut handles = Vec::new();
    for index in 0..wanted() {
        match spawn(index) {
            Ok(handle) => handles.push(handle),
            Err(error) => {
                tracing::warn!(%error, started = handles.len(), "cannot start a connection thread; serving on the threads started");
                break;
            }
        }
    }
    handles
}

/// Starts connection thread `index` and returns its runtime's handle.
fn spawn(index: usize) -> std::io::Result<Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(format!("swapvisor-conn-{index}"))
        // Runs the connections spawned onto its handle until the process exits.
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}
