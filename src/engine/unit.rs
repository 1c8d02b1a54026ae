//! The engine as a swappable unit: how the generic swap protocol builds, starts and stops it.

use std::any::Any;
use std::sync::Arc;

use swapvisor_actors::{BuildFailure, Changes, SwapSettings, Unit, UnitError};
use tokio::time::Instant;

use super::{Engine, EngineContext, EngineTypes};
use crate::config::Config;

/// What an engine reload carries: a parsed config, or source text to parse in the Candidate
/// (so that parse errors are counted and recorded like every other outcome, and a large
/// document is parsed off the Supervisor's mailbox).
#[derive(Debug, Clone)]
pub enum EngineSpec {
    /// A config already parsed.
    Config(Arc<Config>),
    /// YAML or JSON text.
    Source(Arc<[u8]>),
}

impl From<Config> for EngineSpec {
    fn from(config: Config) -> Self {
        EngineSpec::Config(Arc::new(config))
    }
}

impl From<Arc<Config>> for EngineSpec {
    fn from(config: Arc<Config>) -> Self {
        EngineSpec::Config(config)
    }
}

impl From<Vec<u8>> for EngineSpec {
    fn from(source: Vec<u8>) -> Self {
        EngineSpec::Source(source.into())
    }
}

impl From<&str> for EngineSpec {
    fn from(source: &str) -> Self {
        EngineSpec::Source(source.as_bytes().into())
    }
}

impl Unit for Engine {
    type Spec = EngineSpec;
    type Context = EngineContext;
    type Summary = EngineTypes;
    type State = ();

    async fn build(
        spec: Arc<EngineSpec>,
        context: Arc<EngineContext>,
    ) -> Result<Self, BuildFailure> {
        let env = context.env().clone();
        Engine::build_in(&spec, &context, &*env)
            .await
            .map_err(|error| BuildFailure::new(error.stage(), error.to_string()))
    }

    async fn start(&self, deadline: Instant) -> Result<(), UnitError> {
        self.start_by(deadline).await.map_err(UnitError::new)
    }

    async fn stop(&self, deadline: Instant) -> Result<(), UnitError> {
        Engine::stop(self, deadline).await.map_err(UnitError::new)
    }

    fn spec(&self) -> Arc<EngineSpec> {
        Arc::new(EngineSpec::Config(self.config().clone()))
    }

    fn fingerprint(&self) -> String {
        self.config_hash().to_owned()
    }

    fn identity(&self) -> Option<String> {
        // A plugin that has failed or stopped is restarted by an engine reload even to the same
        // config, so that is no "unchanged" reload.
        if !self.inner.context.plugins().all_serving() {
            return None;
        }
        // The config as it would run: `${VAR}` expanded, so a changed variable is a change.
        // Without any `${VAR}` that is the config as written, whose hash is known.
        let resolved = &self.resolved().config;
        if Arc::ptr_eq(resolved, self.config()) {
            return Some(self.config_hash().to_owned());
        }
        Some(resolved.hash())
    }

    fn changes(&self) -> Option<Changes> {
        Some(Engine::changes(self).clone())
    }

    fn summary(&self) -> EngineTypes {
        EngineTypes {
            changes: Some(self.changes().clone()),
            ..self.types()
        }
    }

    fn swap_settings(&self) -> SwapSettings {
        self.resolved().settings.reload
    }

    fn hold_resources(&self) -> Option<Box<dyn Any + Send + Sync>> {
        let context = &self.inner.context;
        // The modules this engine carries over stay running while the old engine stops.
        let stop_timeout = self.resolved().settings.reload.stop_timeout;
        let modules: Vec<_> = self
            .inner
            .plan
            .modules
            .iter()
            .filter(|m| m.carried)
            .filter_map(|m| m.shared.hold(context.modules(), stop_timeout))
            .collect();
        Some(Box::new((
            context.listeners().hold(),
            context.plugins().hold(),
            modules,
        )))
    }
}
