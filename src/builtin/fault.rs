//! `fault.inject`: a module that fails on purpose, to test and demonstrate reload safety.
//!
//! `{failOn: build|start|stop, mode: error|panic|hang|slow, delay}`. `build` fails while the
//! engine is built (so a reload is rejected at the build stage), `start` while it starts (so a
//! reload rolls back), `stop` while it stops. `hang` never finishes, to exercise the timeouts;
//! `slow` waits `delay` (default 1s) and then succeeds.

use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::time::Instant;

use crate::config::ConfigErrors;
use crate::extension::{Module, ModuleBuild, ModuleContext, ModuleError};

/// When a `fault.inject` module fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum FaultStage {
    /// While the engine is built.
    Build,
    /// While the engine starts.
    Start,
    /// While the engine stops.
    Stop,
}

/// How a `fault.inject` module fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(super) enum FaultMode {
    /// Returns an error.
    #[default]
    Error,
    /// Panics.
    Panic,
    /// Never finishes.
    Hang,
    /// Waits `delay`, then succeeds: a slow build, start or stop.
    Slow,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Settings {
    fail_on: FaultStage,
    #[serde(default)]
    mode: FaultMode,
    message: Option<String>,
    delay: Option<String>,
}

struct FaultInject {
    name: String,
    fail_on: FaultStage,
    mode: FaultMode,
    message: Option<String>,
    delay: std::time::Duration,
}

pub(super) fn build(build: &ModuleBuild<'_>) -> Result<Box<dyn Module>, ConfigErrors> {
    let settings: Settings = build.settings()?;
    let delay = match &settings.delay {
        Some(text) => crate::config::parse_duration(text).map_err(|message| {
            crate::config::ConfigError::new(
                crate::config::place::field(build.place, "delay"),
                message,
            )
        })?,
        None => std::time::Duration::from_secs(1),
    };
    Ok(Box::new(FaultInject {
        delay,
        name: build.name.to_owned(),
        fail_on: settings.fail_on,
        mode: settings.mode,
        message: settings.message,
    }))
}

impl FaultInject {
    async fn act(&self, stage: FaultStage) -> Result<(), ModuleError> {
        if stage != self.fail_on {
            return Ok(());
        }
        let message = self.message.clone().unwrap_or_else(|| {
            format!(
                "injected fault at {} in module {:?}",
                stage_name(stage),
                self.name
            )
        });
        match self.mode {
            FaultMode::Error => Err(ModuleError(message)),
            FaultMode::Panic => panic!("{message}"),
            FaultMode::Hang => std::future::pending().await,
            FaultMode::Slow => {
                tokio::time::sleep(self.delay).await;
                Ok(())
            }
        }
    }
}

fn stage_name(stage: FaultStage) -> &'static str {
    match stage {
        FaultStage::Build => "build",
        FaultStage::Start => "start",
        FaultStage::Stop => "stop",
    }
}

impl Module for FaultInject {
    // A fault module exists to be exercised by every reload it is part of: carried over, its
    // build, start and stop faults would silently not happen.
    fn carry_over(&self) -> bool {
        false
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), ModuleError>> {
        Box::pin(self.act(FaultStage::Build))
    }

    fn start<'a>(&'a self, _context: &'a ModuleContext) -> BoxFuture<'a, Result<(), ModuleError>> {
        Box::pin(self.act(FaultStage::Start))
    }

    fn stop(&self, _deadline: Instant) -> BoxFuture<'_, Result<(), ModuleError>> {
        Box::pin(self.act(FaultStage::Stop))
    }
}
