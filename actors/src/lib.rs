//! The generic swap protocol of swapvisor, on ractor.
//!
//! This crate knows nothing of YAML, modules, pipelines or HTTP. It swaps *units*: anything
//! that implements [`Unit`] — built without outside effects, started, stopped, and optionally
//! handing its state to its successor. The same protocol swaps a whole engine and a single
//! plugin instance.
//!
//! # The actors
//!
//! ```text
//! Supervisor<U>              one per slot: owns the generation, the last-known-good spec and
//!  │                         the history; serializes every request through its mailbox
//!  ├── Active<U>             one per slot: owns the live unit, carries out swaps
//!  └── Candidate (0..n)      one task per request: builds a spec, reports, ends
//!
//! Slot<U>                    the live unit, published lock-free; callers take leases here
//! ```
//!
//! Callers never wait on an actor to reach the live unit: they take a [`Lease`] from the
//! [`Slot`]. The actors only decide what the slot publishes.
//!
//! # The message flow of a reload
//!
//! ```text
//! caller ──Reload(spec)──▶ Supervisor ── spawns ──▶ Candidate
//!                              │                       │ build(spec), under the build
//!                              │◀── CandidateBuilt ────┘ timeout, panics caught
//!                              │
//!                              ├── Swap(unit) ──▶ Active
//!                              │                    │ start-first: start new, publish, retire old
//!                              │                    │ stop-first:  close gate, stop old, start new
//!                              │◀── SwapFinished ───┘ (a failed start is rolled back)
//!                              │
//! caller ◀── ReloadRecord ─────┘ one typed ReloadOutcome per request
//! ```
//!
//! - [`Supervisor`] serializes every reload through its mailbox (queued requests wait; file
//!   watcher and signal requests coalesce), turns every request into exactly one
//!   [`ReloadOutcome`], restores a degraded slot with [`Backoff`], reverts a generation on
//!   probation, and answers status at once.
//! - A Candidate (a task, not an actor: it takes no messages) builds the unit off the
//!   Supervisor's mailbox, under the build timeout, with panics caught ([`guard`]), and reports
//!   back by message. A try-activate drops the built
//!   unit: building has no outside effects.
//! - The Active swaps the unit in, start-first or stop-first ([`SwapMode`]), rolling back a
//!   failed start, and drains the old unit before stopping it.
//! - [`HibernatingSupervisor`] keeps the Supervisor and the Active only while a request needs
//!   them, for slots that seldom reload.
//!
//! Only the requests in [`SupervisorMsg`] are public; the protocol's own messages travel
//! inside [`Internal`], which no code outside this crate can construct.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
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
//!     let args = SupervisorArgs::new("greeter", Arc::new(()), slot.clone());
//!     let (supervisor, exited) = Supervisor::spawn_for(args).await.unwrap();
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

mod active;
mod backoff;
mod candidate;
mod changes;
pub mod guard;
mod hibernating;
mod mode;
#[cfg(feature = "openapi")]
mod openapi;
mod outcome;
mod retirement;
mod slot;
mod supervisor;
mod unit;

pub use backoff::Backoff;
pub use changes::{Changes, PartChanges};
pub use hibernating::{HibernatingSupervisor, SupervisorUnavailable};
pub use mode::SwapMode;
pub use outcome::{Origin, ReloadOutcome, ReloadRecord, StageTimings};
pub use retirement::{RetireFailure, RetireStage, RetirementStatus};
pub use slot::{Lease, Slot, Unavailable};
pub use supervisor::{
    CommitRequest, Internal, Prepared, ReloadObserver, ReloadRequest, Resume, RunState, Supervisor,
    SupervisorArgs, SupervisorMsg, SupervisorStatus,
};
pub use unit::{BuildFailure, Stage, SwapSettings, Unit, UnitError};

/// Re-exported so embedders can use `call!` and `ActorRef` without naming ractor themselves.
pub use ractor;
