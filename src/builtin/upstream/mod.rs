//! `http.upstream`: a named pool of backends that `step.proxy` and `step.http_call` send to.
//!
//! The module holds an [`UpstreamPool`]: the targets with their health, and the connections
//! kept open to each. It lends the pool to the steps that name it ([`Module::lend`]). An
//! unchanged upstream is carried across reloads like any unchanged module, so the new engine's
//! steps get the very same pool: its open connections, its health state and its tunnels carry
//! on, and the reload opens no new backend connection.
//!
//! Health has two sources. The active check (`healthCheck`) asks each target's `path` every
//! `interval` and marks it unhealthy after `unhealthyAfter` failed checks in a row, healthy
//! again after `healthyAfter` good ones. The traffic ejects a target for `ejectFor` after
//! `failures` connect failures or 5xx answers in a row ([`target`]). A request goes only to a
//! target that is both healthy and not ejected; with none, it is answered 503 at once.

mod metrics;
mod pool;
mod settings;
mod target;
mod tunnel;

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub(crate) use pool::{OutBody, OutRequest, SendError, UpstreamPool};
pub(crate) use target::InFlight;
pub(crate) use tunnel::RouteClaim;

use crate::config::ConfigErrors;
use crate::extension::{Module, ModuleBuild, ModuleContext, ModuleError};
use crate::net::lock;
use settings::{HealthCheck, Settings};

/// The module type's name.
pub(crate) const TYPE: &str = "http.upstream";

/// One `http.upstream` instance.
struct Upstream {
    pool: Arc<UpstreamPool>,
    checks: Mutex<Option<JoinHandle<()>>>,
}

pub(super) fn build(build: &ModuleBuild<'_>) -> Result<Box<dyn Module>, ConfigErrors> {
    let raw: settings::Raw = build.settings()?;
    let settings = Settings::check(raw, build.place)?;
    Ok(Box::new(Upstream {
        pool: Arc::new(UpstreamPool::new(build.name, settings)),
        checks: Mutex::new(None),
    }))
}

/// Checks every target every `check.interval`, forever.
async fn check_health(pool: Arc<UpstreamPool>, check: HealthCheck) {
    let mut failures = vec![0u32; pool.targets.len()];
    let mut successes = vec![0u32; pool.targets.len()];
    let mut ticks = tokio::time::interval(check.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let results = futures::future::join_all(
            (0..pool.targets.len()).map(|i| pool.check(i, &check.path, check.timeout)),
        )
        .await;
        for (i, passed) in results.into_iter().enumerate() {
            let target = &pool.targets[i];
            let healthy = target.healthy.load(Ordering::Relaxed);
            if passed {
                failures[i] = 0;
                successes[i] = successes[i].saturating_add(1);
                if !healthy && successes[i] >= check.healthy_after {
                    target.healthy.store(true, Ordering::Relaxed);
                    tracing::info!(upstream = %pool.name, target_address = %target.address, "upstream target healthy again");
                }
            } else {
                successes[i] = 0;
                failures[i] = failures[i].saturating_add(1);
                if healthy && failures[i] >= check.unhealthy_after {
                    target.healthy.store(false, Ordering::Relaxed);
                    tracing::warn!(upstream = %pool.name, target_address = %target.address, "upstream target failed its health check");
                }
            }
        }
    }
}

impl Module for Upstream {
    fn start<'a>(&'a self, context: &'a ModuleContext) -> BoxFuture<'a, Result<(), ModuleError>> {
        context.metrics.scrape(metrics::scrape(&self.pool));
        if let Some(check) = self.pool.settings.health_check.clone() {
            let task = tokio::spawn(check_health(self.pool.clone(), check));
            let mut checks = lock(&self.checks);
            if let Some(old) = checks.replace(task) {
                old.abort();
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn stop(&self, deadline: Instant) -> BoxFuture<'_, Result<(), ModuleError>> {
        if let Some(task) = lock(&self.checks).take() {
            task.abort();
        }
        Box::pin(async move {
            // Tunnels may finish on their own until the deadline; then they are closed.
            let tunnels = &self.pool.tunnels;
            loop {
                // Registered before looking, so that a tunnel ending in between is not missed.
                let ended = tunnels.ended.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                if tunnels.open.load(Ordering::Relaxed) == 0
                    || tokio::time::timeout_at(deadline, ended).await.is_err()
                {
                    break;
                }
            }
            tunnels.close_all();
            Ok(())
        })
    }

    fn status(&self) -> Map<String, Value> {
        let pool = &self.pool;
        let now = pool.now_ms();
        let targets: Vec<Value> = pool.targets.iter().map(|t| t.status(now)).collect();
        let tunnels = &pool.tunnels;
        let mut status = Map::new();
        status.insert("balance".into(), json!(pool.settings.balance));
        status.insert("targets".into(), Value::Array(targets));
        status.insert(
            "retries".into(),
            json!({
                "sent": pool.retries.load(Ordering::Relaxed),
                "refusedByBudget": pool.retries_refused.load(Ordering::Relaxed),
            }),
        );
        status.insert(
            "tunnels".into(),
            json!({
                "open": tunnels.open.load(Ordering::Relaxed),
                "opened": tunnels.opened.load(Ordering::Relaxed),
                "closedByReload": tunnels.closed_by_reload.load(Ordering::Relaxed),
            }),
        );
        status
    }

    fn lend(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(self.pool.clone())
    }
}
