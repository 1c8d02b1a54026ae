//! A scripted fake unit for driving the swap protocol without YAML or HTTP.
//!
//! A [`Script`] says what each step of a unit's life does (succeed, fail, panic, hang, or wait
//! at a gate the test opens), and how the unit wants to be swapped. [`Controls`], the units'
//! shared context, keeps a journal of everything the units did, lets a test refuse the starts
//! of a version from some moment on, and holds builds or starts at gates, telling the test
//! when one has arrived there. A [`Harness`] spawns a Supervisor over a slot of such units and
//! hears every outcome through a
//! [`ReloadObserver`](swapvisor_actors::ReloadObserver), so tests wait on signals, never on sleeps.

#![allow(dead_code)] // each test file uses its own part of the harness

mod controls;
mod fake;
mod harness;
mod script;

use std::time::Duration;

use swapvisor_actors::{ReloadOutcome, Stage};

pub(crate) use controls::{Controls, Gate};
pub(crate) use fake::Fake;
pub(crate) use harness::{Harness, args, parts, served};
pub(crate) use script::{Act, Script};

/// How long a test waits for any one signal before it fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// `Rejected { stage: Build, error }` with the error, or a panic naming what came instead.
pub(crate) fn rejected_at_build(outcome: &ReloadOutcome) -> &str {
    match outcome {
        ReloadOutcome::Rejected {
            stage: Stage::Build,
            error,
        } => error,
        other => panic!("expected a build rejection, got {other:?}"),
    }
}

/// The error of a `RolledBack`, or a panic naming what came instead.
pub(crate) fn rolled_back(outcome: &ReloadOutcome) -> &str {
    match outcome {
        ReloadOutcome::RolledBack { error } => error,
        other => panic!("expected a rollback, got {other:?}"),
    }
}

/// Silences the panics the tests provoke on purpose.
pub(crate) fn quiet_expected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message =
                swapvisor_actors::guard::Interrupted::from_panic(info.payload()).to_string();
            if !message.contains("on purpose") {
                default(info);
            }
        }));
    });
}
