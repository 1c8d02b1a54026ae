//! The `schedule` trigger: runs its pipeline every interval while the engine runs.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use crate::config::{ConfigError, ConfigErrors, parse_duration, place};
use crate::extension::{PipelineRunner, StopSignal, TriggerBinding, TriggerBuild, TriggerTask};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    every: String,
}

/// Shortest accepted interval; anything faster is a busy loop, not a schedule.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

pub(super) fn build(build: &TriggerBuild<'_>) -> Result<TriggerBinding, ConfigErrors> {
    let settings: Settings = build.settings()?;
    let at = place::field(build.place, "every");
    let every = parse_duration(&settings.every).map_err(|m| ConfigError::new(&at, m))?;
    if every < MIN_INTERVAL {
        return Err(ConfigError::new(
            at,
            format!(
                "interval {:?} is shorter than the minimum of 10ms",
                settings.every
            ),
        )
        .into());
    }
    Ok(TriggerBinding::Task(Box::new(Schedule { every })))
}

struct Schedule {
    every: Duration,
}

impl TriggerTask for Schedule {
    fn run(&self, runner: PipelineRunner, mut stop: StopSignal) -> BoxFuture<'static, ()> {
        let every = self.every;
        Box::pin(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut tick: u64 = 0;
            loop {
                tokio::select! {
                    _ = stop.stopped() => return,
                    _ = ticker.tick() => {}
                }
                tick += 1;
                let input = json!({ "trigger": "schedule", "tick": tick });
                if let Err(error) = runner.run(input).await {
                    tracing::warn!(pipeline = runner.pipeline(), %error, "scheduled run failed");
                }
            }
        })
    }
}
