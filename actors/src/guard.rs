//! Running unit code safely: under a deadline, with panics caught and turned into errors that
//! name the unit.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;

/// The instant `duration` from now, or a far-off instant when that is not representable (a
/// unit may give any duration; a deadline must never panic).
pub fn deadline_in(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 60 * 60))
}

/// `deadline` plus `grace`, saturating like [`deadline_in`].
pub(crate) fn later(deadline: Instant, grace: Duration) -> Instant {
    deadline.checked_add(grace).unwrap_or(deadline)
}

/// Calls `make` and runs the future it returns, catching a panic in either: a trait method may
/// panic before it returns its future as well as while it is polled.
pub async fn catch_panics<F, Fut>(make: F) -> Result<Fut::Output, Box<dyn std::any::Any + Send>>
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    match std::panic::catch_unwind(AssertUnwindSafe(make)) {
        Ok(work) => AssertUnwindSafe(work).catch_unwind().await,
        Err(panic) => Err(panic),
    }
}

/// Runs `work` until `deadline`. The outer `Err` is a panic or an overrun, as a message naming
/// `unit` and `what` it was doing; the inner result is the work's own.
pub(crate) async fn contained<T>(
    unit: &str,
    what: &str,
    deadline: Instant,
    work: impl Future<Output = T>,
) -> Result<T, String> {
    match tokio::time::timeout_at(deadline, AssertUnwindSafe(work).catch_unwind()).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(panic)) => Err(format!(
            "{unit} panicked during {what}: {}",
            panic_message(&*panic)
        )),
        Err(_) => Err(format!("{unit} did not finish {what} before its deadline")),
    }
}

/// Like [`contained`], with the work's own error flattened into the message.
pub(crate) async fn guarded<T, E: std::fmt::Display>(
    unit: &str,
    what: &str,
    deadline: Instant,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    contained(unit, what, deadline, work)
        .await
        .and_then(|result| result.map_err(|error| error.to_string()))
}

/// The text of a caught panic's payload (its message, when it has one).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
