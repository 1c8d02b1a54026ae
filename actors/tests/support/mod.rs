//! A scripted fake unit for driving the swap protocol without YAML or HTTP.
//!
//! A [`Script`] says what each step of a unit's life does (succeed, fail, panic, hang, or wait
//! at a gate the test opens), and how the unit wants to be swapped. [`Controls`], the units'
//! shared context, keeps a journal of everything the units did, lets a test refuse the starts
//! of a version from some moment on, and holds builds or starts at gates, telling the test
//! when one has arrived there. A [`Harness`] spawns a Supervisor over a slot of such units and
//! hears every outcome through a [`ReloadObserver`], so tests wait on signals, never on sleeps.

#![allow(dead_code)] // each test file uses its own part of the harness

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swapvisor_actors::ractor::{ActorRef, call};
use swapvisor_actors::{
    Backoff, BuildFailure, Origin, ReloadObserver, ReloadOutcome, ReloadRecord, ReloadRequest,
    Slot, Stage, Supervisor, SupervisorArgs, SupervisorMsg, SupervisorStatus, SwapMode,
    SwapSettings, Unit, UnitError,
};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

/// How long a test waits for any one signal before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// What one step of a unit's life does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Act {
    /// It works.
    #[default]
    Succeed,
    /// It returns an error.
    Fail,
    /// It panics.
    Panic,
    /// It never finishes.
    Hang,
    /// It waits until the test opens the step's gate, then works.
    Wait,
}

/// A unit's spec: its version and what it does.
#[derive(Debug, Clone)]
pub struct Script {
    pub version: String,
    pub build: Act,
    pub start: Act,
    pub stop: Act,
    /// What its state export does (when a successor takes its state).
    pub export: Act,
    /// What its import of a predecessor's state does.
    pub import: Act,
    pub mode: SwapMode,
    pub probation: Option<Duration>,
    /// The build, start, stop and drain timeouts.
    pub timeout: Duration,
    /// Hand the predecessor's journal of served calls to the successor.
    pub hands_over: bool,
}

impl Script {
    /// Version `version`, doing everything right, swapped start-first.
    pub fn new(version: &str) -> Self {
        Self {
            version: version.to_owned(),
            build: Act::Succeed,
            start: Act::Succeed,
            stop: Act::Succeed,
            export: Act::Succeed,
            import: Act::Succeed,
            mode: SwapMode::StartFirst,
            probation: None,
            timeout: Duration::from_secs(5),
            hands_over: false,
        }
    }

    pub fn stop_first(mut self) -> Self {
        self.mode = SwapMode::StopFirst;
        self
    }

    pub fn build(mut self, act: Act) -> Self {
        self.build = act;
        self
    }

    pub fn start(mut self, act: Act) -> Self {
        self.start = act;
        self
    }

    pub fn export(mut self, act: Act) -> Self {
        self.export = act;
        self
    }

    pub fn import(mut self, act: Act) -> Self {
        self.import = act;
        self
    }

    pub fn probation(mut self, window: Duration) -> Self {
        self.probation = Some(window);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn handing_over(mut self) -> Self {
        self.hands_over = true;
        self
    }
}

/// A gate steps wait at, and a count of how many have arrived.
pub struct Gate {
    permits: Semaphore,
    arrived: watch::Sender<usize>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            permits: Semaphore::new(0),
            arrived: watch::channel(0).0,
        }
    }
}

impl Gate {
    async fn pass(&self) {
        self.arrived.send_modify(|n| *n += 1);
        // The semaphore is never closed.
        self.permits.acquire().await.expect("open gate").forget();
    }

    /// Waits until `count` steps have arrived at the gate in all.
    pub async fn arrived(&self, count: usize) {
        let mut arrived = self.arrived.subscribe();
        tokio::time::timeout(PATIENCE, arrived.wait_for(|n| *n >= count))
            .await
            .expect("a step arrives at the gate")
            .expect("the gate is alive");
    }

    /// Lets one waiting (or the next) step through.
    pub fn open_one(&self) {
        self.permits.add_permits(1);
    }
}

/// The shared context of every fake unit of a slot.
pub struct Controls {
    journal: watch::Sender<Vec<String>>,
    refused: Mutex<HashSet<String>>,
    pub build_gate: Gate,
    pub start_gate: Gate,
}

impl Default for Controls {
    fn default() -> Self {
        Self {
            journal: watch::channel(Vec::new()).0,
            refused: Mutex::default(),
            build_gate: Gate::default(),
            start_gate: Gate::default(),
        }
    }
}

impl Controls {
    /// Everything the units did, in order: `build v1`, `start v1`, `stop v1`, `start v2
    /// failed`, ...
    pub fn journal(&self) -> Vec<String> {
        self.journal.borrow().clone()
    }

    /// Waits until the journal holds `entry`.
    pub async fn wait_for(&self, entry: &str) {
        let mut journal = self.journal.subscribe();
        let found = tokio::time::timeout(
            PATIENCE,
            journal.wait_for(|entries| entries.iter().any(|e| e == entry)),
        )
        .await;
        assert!(
            matches!(found, Ok(Ok(_))),
            "waited {PATIENCE:?} for {entry:?}; journal: {:?}",
            self.journal()
        );
    }

    /// The journal entries that start with `prefix` (`"stop "`, say).
    pub fn entries(&self, prefix: &str) -> Vec<String> {
        self.journal()
            .into_iter()
            .filter(|e| e.starts_with(prefix))
            .collect()
    }

    fn note(&self, entry: String) {
        self.journal.send_modify(|journal| journal.push(entry));
    }

    /// From now on, every start of `version` fails (`false`: works again).
    pub fn refuse_starts(&self, version: &str, refuse: bool) {
        let mut refused = self.refused.lock().unwrap();
        if refuse {
            refused.insert(version.to_owned());
        } else {
            refused.remove(version);
        }
    }

    fn refuses(&self, version: &str) -> bool {
        self.refused.lock().unwrap().contains(version)
    }
}

/// The fake unit.
pub struct Fake {
    script: Arc<Script>,
    controls: Arc<Controls>,
    /// What this unit has been handed and has served, for handover tests.
    pub served: Mutex<Vec<String>>,
}

impl Fake {
    pub fn version(&self) -> &str {
        &self.script.version
    }

    async fn act(&self, step: &str, act: Act, gate: Option<&Gate>) -> Result<(), String> {
        let version = &self.script.version;
        match act {
            Act::Succeed => {}
            Act::Fail => {
                self.controls.note(format!("{step} {version} failed"));
                return Err(format!("{version} fails to {step} on purpose"));
            }
            Act::Panic => panic!("{version} panics in {step} on purpose"),
            Act::Hang => std::future::pending().await,
            Act::Wait => {
                if let Some(gate) = gate {
                    gate.pass().await;
                }
            }
        }
        self.controls.note(format!("{step} {version}"));
        Ok(())
    }
}

impl Unit for Fake {
    type Spec = Script;
    type Context = Controls;
    type Summary = String;
    type State = Vec<String>;

    async fn build(spec: Arc<Script>, context: Arc<Controls>) -> Result<Self, BuildFailure> {
        let unit = Fake {
            script: spec.clone(),
            controls: context.clone(),
            served: Mutex::default(),
        };
        unit.act("build", spec.build, Some(&context.build_gate))
            .await
            .map_err(|e| BuildFailure::new(Stage::Build, e))?;
        Ok(unit)
    }

    async fn start(&self, _deadline: Instant) -> Result<(), UnitError> {
        if self.controls.refuses(&self.script.version) {
            self.controls
                .note(format!("start {} failed", self.script.version));
            return Err(UnitError::new(format!(
                "{} is refused a start",
                self.script.version
            )));
        }
        self.act("start", self.script.start, Some(&self.controls.start_gate))
            .await
            .map_err(UnitError::new)
    }

    async fn stop(&self, _deadline: Instant) -> Result<(), UnitError> {
        self.act("stop", self.script.stop, None)
            .await
            .map_err(UnitError::new)
    }

    fn spec(&self) -> Arc<Script> {
        self.script.clone()
    }

    fn fingerprint(&self) -> String {
        self.script.version.clone()
    }

    fn summary(&self) -> String {
        format!("{} builds", self.script.version)
    }

    fn swap_settings(&self) -> SwapSettings {
        let timeout = self.script.timeout;
        SwapSettings {
            mode: self.script.mode,
            build_timeout: timeout,
            start_timeout: timeout,
            stop_timeout: timeout,
            drain_timeout: timeout,
            probation: self.script.probation,
        }
    }

    fn hands_over_state(&self) -> bool {
        self.script.hands_over
    }

    async fn export_state(&self, _deadline: Instant) -> Result<Option<Vec<String>>, UnitError> {
        self.act("export", self.script.export, None)
            .await
            .map_err(UnitError::new)?;
        Ok(Some(self.served.lock().unwrap().clone()))
    }

    async fn import_state(&self, state: Vec<String>) -> Result<(), UnitError> {
        self.act("import", self.script.import, None)
            .await
            .map_err(UnitError::new)?;
        self.served.lock().unwrap().extend(state);
        Ok(())
    }
}

/// Forwards every outcome to the test.
struct Outcomes(mpsc::UnboundedSender<ReloadRecord>);

impl ReloadObserver for Outcomes {
    fn reload_finished(&self, record: &ReloadRecord) {
        let _ = self.0.send(record.clone());
    }
}

/// A Supervisor over a slot of fake units.
pub struct Harness {
    pub supervisor: ActorRef<SupervisorMsg<Fake>>,
    pub exited: Option<tokio::task::JoinHandle<()>>,
    pub slot: Arc<Slot<Fake>>,
    pub controls: Arc<Controls>,
    outcomes: mpsc::UnboundedReceiver<ReloadRecord>,
}

/// Fresh controls and an empty slot whose callers wait at most 5 s at a closed gate.
pub fn parts() -> (Arc<Controls>, Arc<Slot<Fake>>) {
    (
        Arc::new(Controls::default()),
        Arc::new(Slot::new(Duration::from_secs(5))),
    )
}

/// The version `slot` serves now, if any.
pub fn served(slot: &Slot<Fake>) -> Option<String> {
    slot.try_acquire().map(|lease| lease.version().to_owned())
}

/// Supervisor arguments for fake units: restores retried every 10 ms, outcomes forwarded.
pub fn args(
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
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A Supervisor whose arguments `adjust` changes first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut SupervisorArgs<Fake>)) -> Self {
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
    pub async fn serving(script: Script) -> Self {
        let mut harness = Self::spawn().await;
        let record = harness.reload(script).await;
        assert_eq!(record.outcome, ReloadOutcome::Activated { generation: 1 });
        harness.next_outcome().await;
        harness
    }

    /// Reloads to `script` from the API and waits for the record.
    pub async fn reload(&self, script: Script) -> ReloadRecord {
        self.request(ReloadRequest::new(script)).await
    }

    /// Sends `request` and waits for its record.
    pub async fn request(&self, request: ReloadRequest<Script>) -> ReloadRecord {
        call!(self.supervisor, SupervisorMsg::Reload, request).expect("the Supervisor answers")
    }

    /// Sends `script` from `origin` without waiting for the answer. Requests sent one after
    /// the other reach the mailbox in that order.
    pub fn send(&self, script: Script, origin: Origin, expecting: Option<u64>) -> Pending {
        let mut request = ReloadRequest::new(script).from(origin);
        request.expected_generation = expecting;
        let (reply, answer) = swapvisor_actors::ractor::concurrency::oneshot();
        self.supervisor
            .send_message(SupervisorMsg::Reload(request, reply.into()))
            .expect("the Supervisor takes messages");
        Pending(answer)
    }

    pub async fn status(&self) -> SupervisorStatus {
        call!(self.supervisor, SupervisorMsg::Status).expect("the Supervisor answers")
    }

    /// The next outcome the Supervisor recorded, whoever asked (restores and reverts too).
    pub async fn next_outcome(&mut self) -> ReloadRecord {
        tokio::time::timeout(PATIENCE, self.outcomes.recv())
            .await
            .expect("an outcome is recorded")
            .expect("the Supervisor is alive")
    }

    /// Waits until the status satisfies `check`, re-reading it every 2 ms (bounded by
    /// [`PATIENCE`]): for changes no message announces, such as a replaced Active.
    pub async fn wait_for_status(
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
    pub fn served(&self) -> Option<String> {
        served(&self.slot)
    }

    /// Shuts the Supervisor down and waits for it to exit.
    pub async fn shutdown(&mut self) {
        call!(self.supervisor, SupervisorMsg::Shutdown).expect("the Supervisor answers");
        self.wait_exited().await;
    }

    /// Waits for the Supervisor to exit.
    pub async fn wait_exited(&mut self) {
        if let Some(exited) = self.exited.take() {
            tokio::time::timeout(PATIENCE, exited)
                .await
                .expect("the Supervisor exits")
                .expect("its task ends");
        }
    }
}

/// The answer to a request sent with [`Harness::send`].
pub struct Pending(swapvisor_actors::ractor::concurrency::OneshotReceiver<ReloadRecord>);

impl Pending {
    /// Waits for the record.
    pub async fn answer(self) -> ReloadRecord {
        tokio::time::timeout(PATIENCE, self.0)
            .await
            .expect("the request is answered")
            .expect("the Supervisor answers")
    }

    /// The record, if the request has been answered already.
    pub fn try_answer(&mut self) -> Option<ReloadRecord> {
        self.0.try_recv().ok()
    }
}

/// `Rejected { stage: Build, error }` with the error, or a panic naming what came instead.
pub fn rejected_at_build(outcome: &ReloadOutcome) -> &str {
    match outcome {
        ReloadOutcome::Rejected {
            stage: Stage::Build,
            error,
        } => error,
        other => panic!("expected a build rejection, got {other:?}"),
    }
}

/// The error of a `RolledBack`, or a panic naming what came instead.
pub fn rolled_back(outcome: &ReloadOutcome) -> &str {
    match outcome {
        ReloadOutcome::RolledBack { error } => error,
        other => panic!("expected a rollback, got {other:?}"),
    }
}

/// Silences the panics the tests provoke on purpose.
pub fn quiet_expected_panics() {
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
