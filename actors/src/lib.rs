//! The generic swap protocol of swapvisor, on ractor.
//!
//! This crate knows nothing of YAML, modules, pipelines or HTTP. It swaps *units*: anything
//! that implements [`Unit`] — built without outside effects, started, stopped, and optionally
//! handing its state to its successor. The same protocol swaps a whole engine and a single
//! plugin instance.
//!
//! Three actors carry it out, and callers never wait on any of them to reach the live unit:
//!
//! - the [`Supervisor`] (one per slot) serializes every reload through its mailbox, owns the
//!   generation, the last-known-good spec and the history, and answers status at once;
//! - a `Candidate` (one per request) builds the unit off the Supervisor's mailbox, under a
//!   timeout, with panics caught, and reports back by message;
//! - the `Active` (one per slot) owns the live unit and swaps it, start-first or stop-first,
//!   rolling back a failed start.
//!
//! The live unit is published through a [`Slot`]: a lock-free handle with in-flight
//! accounting, so a swap drains the old unit before stopping it.

mod active;
mod candidate;
mod guard;
mod mode;
mod outcome;
mod slot;
mod supervisor;
mod unit;

pub use guard::{catch_panics, panic_message};
pub use mode::SwapMode;
pub use outcome::{Origin, ReloadOutcome, ReloadRecord, StageTimings};
pub use slot::{Lease, Live, Slot, Unavailable};
pub use supervisor::{
    Backoff, ReloadObserver, ReloadRequest, Resume, RunState, Supervisor, SupervisorArgs,
    SupervisorMsg, SupervisorState, SupervisorStatus, SwapReport,
};
pub use unit::{BuildFailure, Stage, SwapSettings, Unit, UnitError};

/// Re-exported so embedders can use `call!` and `ActorRef` without naming ractor themselves.
pub use ractor;
