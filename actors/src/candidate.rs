//! The Candidate: one short-lived actor per request, which builds a unit off the Supervisor's
//! mailbox.
//!
//! `spawn` waits for `pre_start`, so the build happens in `post_start`: the Supervisor's spawn
//! returns at once and it goes on answering status while the Candidate works. The build runs
//! under the build timeout with panics caught; the result goes back to the Supervisor as a
//! message, and the Candidate stops itself. For a try-activate the Supervisor simply drops the
//! built unit: building has no outside effects, so nothing is left behind.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;

use crate::guard::{contained, later};
use crate::supervisor::{InternalMsg, SupervisorMsg};
use crate::unit::{BuildFailure, Stage, Unit};

/// Builds one unit and reports to the Supervisor.
pub(crate) struct Candidate<U>(PhantomData<fn() -> U>);

impl<U> Candidate<U> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

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

impl<U: Unit> Actor for Candidate<U> {
    type Msg = ();
    type State = Option<CandidateArgs<U>>;
    type Arguments = CandidateArgs<U>;

    async fn pre_start(
        &self,
        _myself: ActorRef<()>,
        args: CandidateArgs<U>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(Some(args))
    }

    async fn post_start(
        &self,
        myself: ActorRef<()>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let Some(args) = state.take() else {
            return Ok(());
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
        let report = InternalMsg::CandidateBuilt {
            request: args.request,
            result: Box::new(result),
            elapsed,
        };
        // If the Supervisor is gone there is no one to tell; the unit is simply dropped.
        let _ = args
            .supervisor
            .send_message(SupervisorMsg::internal(report));
        myself.stop(None);
        Ok(())
    }
}
