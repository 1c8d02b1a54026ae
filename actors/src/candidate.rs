//! The Candidate: one short-lived task per request, which builds a unit off the Supervisor's
//! mailbox.
//!
//! The Supervisor spawns it and goes on answering status while it works. The build runs under
//! the build timeout with panics caught; the result goes back to the Supervisor as a message,
//! and the task ends. For a try-activate the Supervisor simply drops the built unit: building
//! has no outside effects, so nothing is left behind.
//!
//! A Candidate is a task, not an actor: it receives no messages, so an actor's mailboxes,
//! registration and supervision link would only cost a reload time (about a fifth of the
//! protocol's fixed cost when they were there) and give nothing the task does not. The
//! isolation is the same: a panic in the build is caught by the guard, a hang ends at the
//! deadline, and a task that ends any other way without reporting (cancelled at shutdown, or a
//! panic outside the guard) still reports, from its [`Report`]'s drop, so its request never
//! waits for ever.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::guard::{contained, later};
use crate::supervisor::{InternalMsg, SupervisorMsg};
use crate::unit::{BuildFailure, Stage, Unit};

/// What a Candidate is spawned with.
pub(crate) struct CandidateArgs<U: Unit> {
    /// The request this build is for.
    pub(crate) request: u64,
    pub(crate) spec: Arc<U::Spec>,
    pub(crate) context: Arc<U::Context>,
    pub(crate) timeout: Duration,
    /// The unit's name, for error messages.
    pub(crate) unit_name: Arc<str>,
    pub(crate) supervisor: ActorRef<SupervisorMsg<U>>,
    pub(crate) span: tracing::Span,
}

impl<U: Unit> fmt::Debug for CandidateArgs<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CandidateArgs")
            .field("request", &self.request)
            .field("timeout", &self.timeout)
            .field("unit_name", &self.unit_name)
            .field("supervisor", &self.supervisor)
            .finish_non_exhaustive()
    }
}

/// Starts building; aborting the handle cancels the build (the request is then reported gone).
pub(crate) fn spawn<U: Unit>(args: CandidateArgs<U>) -> AbortHandle {
    tokio::spawn(build(args)).abort_handle()
}

async fn build<U: Unit>(args: CandidateArgs<U>) {
    let report = Report {
        supervisor: args.supervisor,
        request: args.request,
        sent: false,
    };
    let span =
        tracing::info_span!(parent: &args.span, "build", duration_ms = tracing::field::Empty);
    let started = Instant::now();
    let deadline = later(started, args.timeout);
    let (spec, context) = (args.spec, args.context);
    let build = contained(&args.unit_name, "build", deadline, || {
        U::build(spec, context)
    });
    let built = tracing::Instrument::instrument(build, span.clone()).await;
    let elapsed = started.elapsed();
    span.record("duration_ms", elapsed.as_secs_f64() * 1000.0);
    let result = built.unwrap_or_else(|message| Err(BuildFailure::new(Stage::Build, message)));
    report.built(result, elapsed);
}

/// The Candidate's one duty: tell the Supervisor how its request ended, whatever happens.
struct Report<U: Unit> {
    supervisor: ActorRef<SupervisorMsg<U>>,
    request: u64,
    sent: bool,
}

impl<U: Unit> fmt::Debug for Report<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report")
            .field("supervisor", &self.supervisor)
            .field("request", &self.request)
            .field("sent", &self.sent)
            .finish()
    }
}

impl<U: Unit> Report<U> {
    fn built(mut self, result: Result<U, BuildFailure>, elapsed: Duration) {
        self.sent = true;
        let report = InternalMsg::CandidateBuilt {
            request: self.request,
            result: Box::new(result),
            elapsed,
        };
        // If the Supervisor is gone there is no one to tell; the unit is simply dropped.
        let _ = self
            .supervisor
            .send_message(SupervisorMsg::internal(report));
    }
}

impl<U: Unit> Drop for Report<U> {
    fn drop(&mut self) {
        if self.sent {
            return;
        }
        // Cancelled, or unwinding from a panic the build's guard did not see: sent from this
        // task after anything else it sent, so it cannot overtake a report.
        let gone = InternalMsg::CandidateGone {
            request: self.request,
            reason: "it was cancelled or panicked".to_owned(),
        };
        let _ = self.supervisor.send_message(SupervisorMsg::internal(gone));
    }
}
