//! Module types that record what happens to them, and the controls that make them fail.

use super::*;

/// Every start and stop of `test.record` modules, in order, as "start a" / "stop a".
pub(crate) type Journal = Arc<Mutex<Vec<String>>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RecordSettings {
    #[serde(default)]
    fail_start: bool,
    #[serde(default)]
    panic_start: bool,
    #[serde(default)]
    fail_stop: bool,
}

struct Recorder {
    name: String,
    settings: RecordSettings,
    journal: Journal,
}

impl Module for Recorder {
    fn start<'a>(&'a self, _context: &'a ModuleContext) -> BoxFuture<'a, Result<(), ModuleError>> {
        Box::pin(async move {
            if self.settings.panic_start {
                panic!("recorder {} panics on purpose", self.name);
            }
            if self.settings.fail_start {
                self.journal
                    .lock()
                    .unwrap()
                    .push(format!("fail {}", self.name));
                return Err(ModuleError::new(format!("{} refuses to start", self.name)));
            }
            self.journal
                .lock()
                .unwrap()
                .push(format!("start {}", self.name));
            Ok(())
        })
    }

    fn stop(&self, _deadline: Instant) -> BoxFuture<'_, Result<(), ModuleError>> {
        Box::pin(async move {
            self.journal
                .lock()
                .unwrap()
                .push(format!("stop {}", self.name));
            if self.settings.fail_stop {
                return Err(ModuleError::new("refuses to stop"));
            }
            Ok(())
        })
    }
}

/// The built-in registry plus `test.record`, whose starts and stops land in the journal.
pub(crate) fn recording_registry() -> (Registry, Journal) {
    let journal: Journal = Arc::default();
    let mut registry = Registry::with_builtins();
    let shared = journal.clone();
    registry
        .contributing("tests", |r| {
            r.register_module("test.record", move |build: &ModuleBuild<'_>| {
                let settings: RecordSettings = build.settings()?;
                Ok::<Box<dyn Module>, ConfigErrors>(Box::new(Recorder {
                    name: build.name.to_owned(),
                    settings,
                    journal: shared.clone(),
                }))
            })
        })
        .unwrap();
    (registry, journal)
}

/// Switches the tests flip to steer the `test.toggle` and `test.gated` module types.
#[derive(Clone)]
pub(crate) struct Controls {
    /// While true, every `test.toggle` module fails to start.
    pub fail_starts: Arc<std::sync::atomic::AtomicBool>,
    /// How many times a `test.toggle` module was asked to start.
    pub start_attempts: Arc<std::sync::atomic::AtomicUsize>,
    /// Each `test.gated` build waits for one permit.
    pub build_gate: Arc<tokio::sync::Semaphore>,
    /// Signalled whenever a `test.gated` build begins waiting.
    pub build_waiting: Arc<tokio::sync::Notify>,
}

impl Default for Controls {
    fn default() -> Self {
        Self {
            fail_starts: Arc::default(),
            start_attempts: Arc::default(),
            build_gate: Arc::new(tokio::sync::Semaphore::new(0)),
            build_waiting: Arc::default(),
        }
    }
}

struct Toggle(Controls);

impl Module for Toggle {
    // Steered per start: every engine must start it anew for the switch to take effect.
    fn carry_over(&self) -> bool {
        false
    }

    fn start<'a>(&'a self, _context: &'a ModuleContext) -> BoxFuture<'a, Result<(), ModuleError>> {
        Box::pin(async move {
            self.0
                .start_attempts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.0.fail_starts.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(ModuleError::new("toggle is switched to fail"));
            }
            Ok(())
        })
    }

    fn stop(&self, _deadline: Instant) -> BoxFuture<'_, Result<(), ModuleError>> {
        Box::pin(async { Ok(()) })
    }
}

struct Gated(Controls);

impl Module for Gated {
    // Gates every build that has it, so it is never carried over from a running engine.
    fn carry_over(&self) -> bool {
        false
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), ModuleError>> {
        Box::pin(async move {
            self.0.build_waiting.notify_waiters();
            let permit = self
                .0
                .build_gate
                .acquire()
                .await
                .map_err(ModuleError::new)?;
            permit.forget();
            Ok(())
        })
    }

    fn start<'a>(&'a self, _context: &'a ModuleContext) -> BoxFuture<'a, Result<(), ModuleError>> {
        Box::pin(async { Ok(()) })
    }

    fn stop(&self, _deadline: Instant) -> BoxFuture<'_, Result<(), ModuleError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The recording registry plus `test.toggle` and `test.gated`, steered by the returned
/// controls.
pub(crate) fn controlled_registry() -> (Registry, Journal, Controls) {
    let (mut registry, journal) = recording_registry();
    let controls = Controls::default();
    let toggle = controls.clone();
    let gated = controls.clone();
    registry
        .contributing("tests", |r| {
            r.register_module("test.toggle", move |_: &ModuleBuild<'_>| {
                Ok::<Box<dyn Module>, ConfigErrors>(Box::new(Toggle(toggle.clone())))
            })?;
            r.register_module("test.gated", move |_: &ModuleBuild<'_>| {
                Ok::<Box<dyn Module>, ConfigErrors>(Box::new(Gated(gated.clone())))
            })
        })
        .unwrap();
    (registry, journal, controls)
}
