//! Running someone else's code safely: under a deadline, with panics caught.
//!
//! Everything the swap protocol runs on a unit's behalf (build, start, stop, state handover)
//! goes through [`run`], and so does everything a runtime built on this crate runs on behalf of
//! the code it hosts (a module's start, a step, a plugin call). Two things can go wrong with
//! code one does not own, and both become a value instead of a disaster:
//!
//! - it **panics**: the panic is caught and becomes [`Interrupted::Panicked`], so the actor or
//!   task that ran it goes on (a panic in a trait method is caught whether it happens before the
//!   method returns its future or while the future is polled);
//! - it **never finishes**: at the deadline the work is dropped and the result is
//!   [`Interrupted::Overran`], so a hang cannot hold a reload or a shutdown forever.
//!
//! Factories and other synchronous code use [`run_sync`], which only catches panics.
//!
//! ```
//! use std::time::Duration;
//! use swapvisor_actors::guard::{self, Interrupted};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let deadline = guard::deadline_in(Duration::from_millis(20));
//! assert_eq!(guard::run(Some(deadline), || async { 7 }).await, Ok(7));
//! assert_eq!(
//!     guard::run(Some(deadline), || std::future::pending::<()>()).await,
//!     Err(Interrupted::Overran)
//! );
//! let panicked = guard::run(None, || async { panic!("boom") }).await;
//! assert_eq!(panicked, Err::<(), _>(Interrupted::Panicked("boom".into())));
//! assert_eq!(panicked.unwrap_err().to_string(), "panicked: boom");
//! # }
//! ```

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;

/// How guarded work failed to finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Interrupted {
    /// It panicked; the panic's message.
    #[error("panicked: {0}")]
    Panicked(String),
    /// It was still running at its deadline and was dropped.
    #[error("did not finish before its deadline")]
    Overran,
}

impl Interrupted {
    /// The interruption for a caught panic's payload (its message, when it has one).
    pub fn from_panic(payload: &(dyn Any + Send)) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic with a non-string payload".to_owned()
        };
        Interrupted::Panicked(message)
    }
}

/// Calls `make` and runs the future it returns until `deadline` (or to the end with `None`),
/// catching a panic in either.
pub async fn run<F, Fut>(deadline: Option<Instant>, make: F) -> Result<Fut::Output, Interrupted>
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    let work = match std::panic::catch_unwind(AssertUnwindSafe(make)) {
        Ok(work) => AssertUnwindSafe(work).catch_unwind(),
        Err(panic) => return Err(Interrupted::from_panic(&*panic)),
    };
    let finished = match deadline {
        // Boxed: a timer is large, and a future awaiting this one (an actor's handler, a
        // pipeline step) would otherwise carry room for it even when there is no deadline.
        Some(deadline) => match Box::pin(tokio::time::timeout_at(deadline, work)).await {
            Ok(finished) => finished,
            Err(_) => return Err(Interrupted::Overran),
        },
        None => work.await,
    };
    finished.map_err(|panic| Interrupted::from_panic(&*panic))
}

/// Calls `make`, catching a panic: the synchronous [`run`], for factories.
pub fn run_sync<T>(make: impl FnOnce() -> T) -> Result<T, Interrupted> {
    std::panic::catch_unwind(AssertUnwindSafe(make))
        .map_err(|panic| Interrupted::from_panic(&*panic))
}

/// The instant `duration` from now, or a far-off instant when that is not representable (a
/// config may give any duration; a deadline must never panic).
pub fn deadline_in(duration: Duration) -> Instant {
    later(Instant::now(), duration)
}

/// How long past the deadline a unit was given a guard waits before it abandons the unit:
/// long enough that a unit which gives up on time reports its own, more precise error.
pub(crate) const GRACE: Duration = Duration::from_millis(100);

/// `deadline` plus `grace`, saturating like [`deadline_in`].
pub(crate) fn later(deadline: Instant, grace: Duration) -> Instant {
    const FAR_OFF: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    deadline
        .checked_add(grace)
        .or_else(|| deadline.checked_add(FAR_OFF))
        .unwrap_or(deadline)
}

/// Runs the work `make` returns for the unit named `unit` until `deadline`, with the
/// interruption worded for the protocol's errors and logs: `engine panicked during build: ...`,
/// `plugin "hits" did not finish stop before its deadline`.
pub(crate) async fn contained<Fut: Future>(
    unit: &str,
    what: &str,
    deadline: Instant,
    make: impl FnOnce() -> Fut,
) -> Result<Fut::Output, String> {
    run(Some(deadline), make)
        .await
        .map_err(|interrupted| match interrupted {
            Interrupted::Panicked(message) => format!("{unit} panicked during {what}: {message}"),
            Interrupted::Overran => format!("{unit} did not finish {what} before its deadline"),
        })
}

/// Like [`contained`], with the work's own error flattened into the message.
pub(crate) async fn guarded<T, E: std::fmt::Display, Fut: Future<Output = Result<T, E>>>(
    unit: &str,
    what: &str,
    deadline: Instant,
    make: impl FnOnce() -> Fut,
) -> Result<T, String> {
    contained(unit, what, deadline, make)
        .await
        .and_then(|result| result.map_err(|error| error.to_string()))
}
