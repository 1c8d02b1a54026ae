//! The fake unit: it does what its [`Script`] says, step by step, and notes each step in the
//! journal of its [`Controls`].

use std::sync::{Arc, Mutex};

use swapvisor_actors::{BuildFailure, Stage, SwapSettings, Unit, UnitError};
use tokio::time::Instant;

use super::{Act, Controls, Gate, Script};

/// The fake unit.
pub(crate) struct Fake {
    script: Arc<Script>,
    controls: Arc<Controls>,
    /// What this unit has been handed and has served, for handover tests.
    pub served: Mutex<Vec<String>>,
}

impl Fake {
    pub(crate) fn version(&self) -> &str {
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
