//! An engine's life: start in dependency order with rollback, stop in reverse.
//!
//! Plugins are attached first (modules and steps may call them from the moment they start),
//! then modules start in dependency order, then the trigger tasks. If module *k* fails, the
//! *k − 1* already started are stopped again, in reverse order, and the plugins this engine
//! changed are put back. Stopping runs the other way: triggers, modules in reverse, plugins.

use std::sync::Arc;

use swapvisor_actors::guard;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Engine;
use super::error::{StartError, StopError};
use super::pipeline::{Execution, Pipeline};
use super::status::EngineState;
use crate::extension::{ModuleContext, PipelineRunner, StopSignal};
use crate::plugin::Attachment;

/// What an engine has started, so that a stop (or a failed start) undoes exactly that.
#[derive(Default)]
pub(super) struct Lifecycle {
    /// The plugin instances this engine attached to (before any module started).
    plugins: Option<Attachment>,
    /// How many modules (a prefix of the start order) are started.
    pub(super) started: usize,
    triggers: Option<(watch::Sender<bool>, JoinSet<()>)>,
}

impl Engine {
    /// Starts the modules in dependency order, then the trigger tasks, giving each module
    /// until the configured `startTimeout`.
    pub async fn start(&self) -> Result<(), StartError> {
        let deadline = Instant::now() + self.resolved().settings.reload.start_timeout;
        self.start_by(deadline).await
    }

    /// Starts the modules in dependency order, each given until `deadline`. If one fails,
    /// panics or runs past the deadline, the modules already started are stopped in reverse
    /// order and the error names the one that failed.
    pub async fn start_by(&self, deadline: Instant) -> Result<(), StartError> {
        let mut lifecycle = self.inner.lifecycle.lock().await;
        // A stopped engine may start again: a stop-first swap restores the previous engine so.
        if !matches!(self.state(), EngineState::Built | EngineState::Stopped) {
            return Err(StartError {
                kind: "engine",
                module: String::new(),
                message: format!("the engine cannot start from state {:?}", self.state()),
            });
        }
        self.set_state(EngineState::Starting);
        // Plugins first: modules and steps may call them from the moment they start.
        if !self.inner.plan.plugins.instances.is_empty() {
            let plan = &self.inner.plan;
            let plugins = self.inner.context.plugins();
            // Filled step by step, so that a start cut short by the deadline still knows what
            // to give back.
            let mut attachment = Attachment::default();
            let attach = plugins.attach(&plan.plugins, &plan.registry, &mut attachment);
            let (failure, timed_out) = match tokio::time::timeout_at(deadline, attach).await {
                Ok(Ok(())) => (None, false),
                Ok(Err(failure)) => (Some(failure), false),
                Err(_) => {
                    let why = "did not start before the start timeout".to_owned();
                    (Some((attachment.last_name(), why)), true)
                }
            };
            match failure {
                None => lifecycle.plugins = Some(attachment),
                Some((plugin, message)) => {
                    let rollback_deadline =
                        guard::deadline_in(self.resolved().settings.reload.stop_timeout);
                    if timed_out {
                        // What timed out is still finishing in the background; undoing it
                        // waits for that, so it runs there too. It holds the attach lock,
                        // so the next engine to attach waits for it.
                        let plugins = plugins.clone();
                        tokio::spawn(async move {
                            plugins.detach(attachment, true, rollback_deadline).await;
                        });
                    } else {
                        plugins.detach(attachment, true, rollback_deadline).await;
                    }
                    self.set_state(EngineState::Stopped);
                    return Err(StartError {
                        kind: "plugin",
                        module: plugin,
                        message,
                    });
                }
            }
        }
        let pool = self.inner.context.modules();
        for (k, module) in self.inner.plan.modules.iter().enumerate() {
            let module = &module.shared;
            let context = |metrics| ModuleContext {
                name: module.spec.name.clone(),
                services: self.inner.context.services().clone(),
                metrics,
            };
            let metrics = self.inner.context.metrics().extensions();
            // A module carried over from the live engine runs already: this takes a lease.
            let message = match module.acquire(pool, metrics, context, deadline).await {
                Ok(started) => {
                    lifecycle.started = k + 1;
                    if started {
                        tracing::debug!(module = %module.spec.name, "module started");
                    }
                    continue;
                }
                Err(message) => message,
            };
            tracing::warn!(module = %module.spec.name, error = %message, "module failed to start; stopping the modules started before it");
            let rollback_deadline = Instant::now() + self.resolved().settings.reload.stop_timeout;
            if let Err(stop_error) = self
                .tear_down(&mut lifecycle, rollback_deadline, true)
                .await
            {
                tracing::warn!(error = %stop_error, "stopping after a failed start was not clean");
            }
            self.set_state(EngineState::Stopped);
            return Err(StartError {
                kind: "module",
                module: module.spec.name.clone(),
                message,
            });
        }
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for (pipeline, task) in &self.inner.plan.tasks {
            let runner = self.runner(pipeline);
            tasks.spawn(task.run(runner, StopSignal::new(stopped.clone())));
        }
        lifecycle.triggers = Some((stop, tasks));
        // Started whole: what its modules registered shows from now on.
        for module in &self.inner.plan.modules {
            module.shared.expose_metrics();
        }
        self.set_state(EngineState::Running);
        self.inner.context.started(&self.inner);
        Ok(())
    }

    /// Stops the trigger tasks, then every started module in reverse order, each given until
    /// `deadline`. Every module is asked to stop even when an earlier one fails. Stopping an
    /// engine that is not running does nothing.
    pub async fn stop(&self, deadline: Instant) -> Result<(), StopError> {
        let mut lifecycle = self.inner.lifecycle.lock().await;
        if lifecycle.started == 0 && lifecycle.triggers.is_none() && lifecycle.plugins.is_none() {
            if self.state() != EngineState::Built {
                self.set_state(EngineState::Stopped);
            }
            return Ok(());
        }
        self.set_state(EngineState::Stopping);
        if let Some((stop, mut tasks)) = lifecycle.triggers.take() {
            let _ = stop.send(true);
            let finished = tokio::time::timeout_at(deadline, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if finished.is_err() {
                tasks.shutdown().await;
            }
        }
        let result = self.tear_down(&mut lifecycle, deadline, false).await;
        self.set_state(EngineState::Stopped);
        result
    }

    /// Stops the started modules in reverse order, then detaches the plugins (last: modules
    /// may call them while they stop). With `rollback` (a failed start), plugins this engine
    /// reloaded go back to their previous spec.
    async fn tear_down(
        &self,
        lifecycle: &mut Lifecycle,
        deadline: Instant,
        rollback: bool,
    ) -> Result<(), StopError> {
        let result = self.stop_modules(lifecycle, deadline).await;
        if let Some(attachment) = lifecycle.plugins.take() {
            self.inner
                .context
                .plugins()
                .detach(attachment, rollback, deadline)
                .await;
        }
        result
    }

    /// Stops with the configured `stopTimeout` as the deadline.
    pub async fn stop_now(&self) -> Result<(), StopError> {
        let deadline = Instant::now() + self.resolved().settings.reload.stop_timeout;
        self.stop(deadline).await
    }

    async fn stop_modules(
        &self,
        lifecycle: &mut Lifecycle,
        deadline: Instant,
    ) -> Result<(), StopError> {
        let mut failures = Vec::new();
        let pool = self.inner.context.modules();
        while lifecycle.started > 0 {
            lifecycle.started -= 1;
            let module = &self.inner.plan.modules[lifecycle.started].shared;
            // Another engine may still hold it (the next one carried it over): then it runs on.
            let message = match module.release(pool, deadline).await {
                Ok(true) => {
                    tracing::debug!(module = %module.spec.name, "module stopped");
                    continue;
                }
                Ok(false) => continue,
                Err(message) => message,
            };
            tracing::warn!(module = %module.spec.name, error = %message, "module failed to stop");
            failures.push((module.spec.name.clone(), message));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(StopError { failures })
        }
    }

    /// Runs `pipeline` from a trigger task, with this engine's services.
    fn runner(&self, pipeline: &Arc<Pipeline>) -> PipelineRunner {
        let running = pipeline.clone();
        let services = self.inner.context.services().clone();
        PipelineRunner::new(pipeline.name(), move |input| {
            let (pipeline, services) = (running.clone(), services.clone());
            Box::pin(async move {
                pipeline
                    .run(&input, &services, None)
                    .await
                    .map(Execution::output)
            })
        })
    }
}
