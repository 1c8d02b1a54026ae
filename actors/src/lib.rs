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
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use swapvisor_actors::ractor::call;
//! use swapvisor_actors::*;
//! use tokio::time::Instant;
//!
//! /// A unit that serves a greeting; its spec is the text.
//! struct Greeter {
//!     text: Arc<String>,
//! }
//!
//! impl Unit for Greeter {
//!     type Spec = String;
//!     type Context = ();
//!     type Summary = usize;
//!     type State = ();
//!
//!     async fn build(spec: Arc<String>, _context: Arc<()>) -> Result<Self, BuildFailure> {
//!         if spec.is_empty() {
//!             return Err(BuildFailure::new(Stage::Validate, "a greeting must not be empty"));
//!         }
//!         Ok(Greeter { text: spec })
//!     }
//!
//!     async fn start(&self, _deadline: Instant) -> Result<(), UnitError> {
//!         Ok(())
//!     }
//!
//!     async fn stop(&self, _deadline: Instant) -> Result<(), UnitError> {
//!         Ok(())
//!     }
//!
//!     fn spec(&self) -> Arc<String> {
//!         self.text.clone()
//!     }
//!
//!     fn fingerprint(&self) -> String {
//!         self.text.to_string()
//!     }
//!
//!     fn summary(&self) -> usize {
//!         self.text.len()
//!     }
//!
//!     fn swap_settings(&self) -> SwapSettings {
//!         SwapSettings::default()
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() {
//!     let slot: Arc<Slot<Greeter>> = Arc::new(Slot::default());
//!     let (supervisor, exited) = Supervisor::spawn_for(SupervisorArgs {
//!         unit_name: "greeter".to_owned(),
//!         context: Arc::new(()),
//!         slot: slot.clone(),
//!         build_timeout: Duration::from_secs(1),
//!         history_limit: 20,
//!         restore_backoff: Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) },
//!         observer: None,
//!         resume: None,
//!     })
//!     .await
//!     .unwrap();
//!
//!     let record = call!(supervisor, SupervisorMsg::Reload, ReloadRequest::new("hello".to_owned())).unwrap();
//!     assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 1 });
//!     // Callers take a lease from the slot; no actor is on the way.
//!     assert_eq!(slot.acquire().await.unwrap().text.as_str(), "hello");
//!
//!     let record = call!(supervisor, SupervisorMsg::Reload, ReloadRequest::new(String::new())).unwrap();
//!     assert!(matches!(record.outcome, ReloadOutcome::Rejected { stage: Stage::Validate, .. }));
//!     assert_eq!(slot.acquire().await.unwrap().text.as_str(), "hello");
//!
//!     call!(supervisor, SupervisorMsg::Shutdown).unwrap();
//!     exited.await.unwrap();
//! }
//! ```

#![warn(missing_docs)]

mod active;
mod candidate;
mod guard;
mod mode;
mod outcome;
mod slot;
mod supervisor;
mod unit;

pub use guard::{catch_panics, deadline_in, panic_message};
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
