//! What became of replaced units: how many retired, and which drains and stops failed.
//!
//! A replaced unit retires after the swap has answered (start-first) or in the middle of it
//! (stop-first): it drains until the drain deadline, then stops until the stop timeout. Either
//! may fail without changing the outcome of the reload, which has already activated, so the
//! failures are recorded here, where status and metrics read them, with how long the
//! retirement took, measured from its own beginning.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// The part of a retirement that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RetireStage {
    /// Work was still in flight at the drain deadline (and was left to finish on its own).
    Drain,
    /// The unit's stop failed, panicked or ran past the stop timeout.
    Stop,
}

/// One failed retirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetireFailure {
    /// The generation of the unit that retired.
    pub generation: u64,
    /// Which part failed.
    pub stage: RetireStage,
    /// What went wrong.
    pub error: String,
    /// From the start of the retirement (the drain) to the failure's end, in milliseconds.
    pub took_ms: u64,
}

/// Retirements so far, as status shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetirementStatus {
    /// Replaced units that finished retiring, cleanly or not.
    pub retired: u64,
    /// Retirements whose drain deadline passed with work in flight.
    pub drain_overruns: u64,
    /// Retirements whose stop failed.
    pub stop_failures: u64,
    /// The most recent failure.
    pub last_failure: Option<RetireFailure>,
}

/// The counters, shared by the Active (which records) and the Supervisor (which reports).
#[derive(Debug, Default)]
pub(crate) struct Retirements {
    retired: AtomicU64,
    drain_overruns: AtomicU64,
    stop_failures: AtomicU64,
    last_failure: Mutex<Option<RetireFailure>>,
}

impl Retirements {
    /// Records a failure of `stage` in the retirement of `generation`, `took` after it began.
    pub(crate) fn failed(
        &self,
        generation: u64,
        stage: RetireStage,
        error: String,
        took: Duration,
    ) {
        let counter = match stage {
            RetireStage::Drain => &self.drain_overruns,
            RetireStage::Stop => &self.stop_failures,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        let failure = RetireFailure {
            generation,
            stage,
            error,
            took_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        };
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(failure);
    }

    /// Records a finished retirement.
    pub(crate) fn retired(&self) {
        self.retired.fetch_add(1, Ordering::SeqCst);
    }

    /// A snapshot for status.
    pub(crate) fn status(&self) -> RetirementStatus {
        RetirementStatus {
            retired: self.retired.load(Ordering::SeqCst),
            drain_overruns: self.drain_overruns.load(Ordering::SeqCst),
            stop_failures: self.stop_failures.load(Ordering::SeqCst),
            last_failure: self
                .last_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}
