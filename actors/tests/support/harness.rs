//! The [`Harness`]: a Supervisor over a slot of fake units, the outcomes it records, and the
//! answers to requests sent without waiting.

use std::sync::Arc;
use std::time::Duration;

use swapvisor_actors::ractor::{ActorRef, call};
use swapvisor_actors::{
    Backoff, Origin, ReloadObserver, ReloadOutcome, ReloadRecord, ReloadRequest, Slot, Supervisor,
    SupervisorArgs, SupervisorMsg, SupervisorStatus,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Controls, Fake, PATIENCE, Script};

/// Forwards every outcome to the test.
struct Outcomes(mpsc::UnboundedSender<ReloadRecord>);

impl ReloadObserver for Outcomes {
    fn reload_finished(&self, record: &ReloadRecord) {
        let _ = self.0.send(record.clone());
    }
}

/// A Supervisor over a slot of fake units.
pub(crate) struct Harness {
    pub supervisor: ActorRef<SupervisorMsg<Fake>>,
    pub exited: Option<tokio::task::JoinHandle<()>>,
    pub slot: Arc<Slot<Fake>>,
    pub controls: Arc<Controls>,
    outcomes: mpsc::UnboundedReceiver<ReloadRecord>,
}

/// Fresh controls and an empty slot whose callers wait at most 5 s at a closed gate.
pub(crate) fn parts() -> (Arc<Controls>, Arc<Slot<Fake>>) {
    (
        Arc::new(Controls::default()),
        Arc::new(Slot::new(Duration::from_secs(5))),
    )
}

/// The version `slot` serves now, if any.
pub(crate) fn served(slot: &Slot<Fake>) -> Option<String> {
    slot.try_acquire().map(|lease| lease.version().to_owned())
}

/// Supervisor arguments for fake units: restores retried every 10 ms, outcomes forwarded.
pub(crate) fn args(
    controls: &Arc<Controls>,
    slot: &Arc<Slot<Fake>>,
) -> (SupervisorArgs<Fake>, mpsc::UnboundedReceiver<ReloadRecord>) {
    let (sender, outcomes) = mpsc::unbounded_channel();
    let mut args = SupervisorArgs::new("fake", controls.clone(), slot.clone());
    args.restore_backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(10));
    args.observer = Some(Arc::new(Outcomes(sender)));
    (args, outcomes)
}

impl Harness {
    /// A Supervisor with nothing live yet.
    pub(crate) async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A Supervisor whose arguments `adjust` changes first.
    pub(crate) async fn spawn_with(adjust: impl FnOnce(&mut SupervisorArgs<Fake>)) -> Self {
        let (controls, slot) = parts();
        let (mut args, outcomes) = args(&controls, &slot);
        adjust(&mut args);
        let (supervisor, exited) = Supervisor::spawn_for(args).await.expect("spawns");
        Self {
            supervisor,
            exited: Some(exited),
            slot,
            controls,
            outcomes,
        }
    }

    /// A Supervisor serving `script` as generation 1.
    pub(crate) async fn serving(script: Script) -> Self {
        let mut harness = Self::spawn().await;
        let record = harness.reload(script).await;
        assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 1 });
        harness.next_outcome().await;
        harness
    }

    /// Reloads to `script` from the API and waits for the record.
    pub(crate) async fn reload(&self, script: Script) -> ReloadRecord {
        self.request(ReloadRequest::new(script)).await
    }

    /// Sends `request` and waits for its record.
    pub(crate) async fn request(&self, request: ReloadRequest<Script>) -> ReloadRecord {
        call!(self.supervisor, SupervisorMsg::Reload, request).expect("the Supervisor answers")
    }

    /// Sends `script` from `origin` without waiting for the answer. Requests sent one after
    /// the other reach the mailbox in that order.
    pub(crate) fn send(&self, script: Script, origin: Origin, expecting: Option<u64>) -> Pending {
        let mut request = ReloadRequest::new(script).from(origin);
        request.expected_generation = expecting;
        let (reply, answer) = swapvisor_actors::ractor::concurrency::oneshot();
        self.supervisor
            .send_message(SupervisorMsg::Reload(request, reply.into()))
            .expect("the Supervisor takes messages");
        Pending(answer)
    }

    pub(crate) async fn status(&self) -> SupervisorStatus {
        call!(self.supervisor, SupervisorMsg::Status).expect("the Supervisor answers")
    }

    /// The next outcome the Supervisor recorded, whoever asked (restores and reverts too).
    pub(crate) async fn next_outcome(&mut self) -> ReloadRecord {
        tokio::time::timeout(PATIENCE, self.outcomes.recv())
            .await
            .expect("an outcome is recorded")
            .expect("the Supervisor is alive")
    }

    /// Waits until the status satisfies `check`, re-reading it every 2 ms (bounded by
    /// [`PATIENCE`]): for changes no message announces, such as a replaced Active.
    pub(crate) async fn wait_for_status(
        &self,
        what: &str,
        check: impl Fn(&SupervisorStatus) -> bool,
    ) -> SupervisorStatus {
        let started = Instant::now();
        loop {
            let status = self.status().await;
            if check(&status) {
                return status;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "waited {PATIENCE:?} for {what}; status: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The version the slot serves now, if any.
    pub(crate) fn served(&self) -> Option<String> {
        served(&self.slot)
    }

    /// Shuts the Supervisor down and waits for it to exit.
    pub(crate) async fn shutdown(&mut self) {
        call!(self.supervisor, SupervisorMsg::Shutdown).expect("the Supervisor answers");
        self.wait_exited().await;
    }

    /// Waits for the Supervisor to exit.
    pub(crate) async fn wait_exited(&mut self) {
        if let Some(exited) = self.exited.take() {
            tokio::time::timeout(PATIENCE, exited)
                .await
                .expect("the Supervisor exits")
                .expect("its task ends");
        }
    }
}

/// The answer to a request sent with [`Harness::send`].
pub(crate) struct Pending(swapvisor_actors::ractor::concurrency::OneshotReceiver<ReloadRecord>);

impl Pending {
    /// Waits for the record.
    pub(crate) async fn answer(self) -> ReloadRecord {
        tokio::time::timeout(PATIENCE, self.0)
            .await
            .expect("the request is answered")
            .expect("the Supervisor answers")
    }

    /// The record, if the request has been answered already.
    pub(crate) fn try_answer(&mut self) -> Option<ReloadRecord> {
        self.0.try_recv().ok()
    }
}
