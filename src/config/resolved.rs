//! The resolved config: environment expanded, defaults filled in.
//!
//! Resolving derives a [`Resolved`] from a [`Config`] without touching it. Everything the
//! engine and the runtime read comes from here, so a default is written down exactly once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use swapvisor_actors::{Backoff, SwapSettings};

use super::env::{EnvLookup, Expander, expand_value, mentions_env};
use super::error::{ConfigErrors, place};
use super::model::*;

/// A config with `${VAR}` references expanded and every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The config with its `config:` values expanded. Names and types are as written. The
    /// same allocation as the config as written when nothing needed expanding.
    pub config: Arc<Config>,
    /// Runtime settings with defaults applied.
    pub settings: RuntimeSettings,
    /// Restart settings for each plugin in `config.plugins`, in the same order.
    pub plugin_restarts: Vec<RestartSettings>,
}

/// `runtime:` with defaults applied.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuntimeSettings {
    /// How reloads are carried out (`runtime.reload`): the swap mode and timeouts, with the
    /// defaults of [`SwapSettings::default`].
    pub reload: SwapSettings,
    /// How plugin failures spread to siblings. Default `one_for_one`.
    pub plugin_strategy: RestartStrategy,
}

/// A plugin's restart settings with defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartSettings {
    /// Default `permanent`.
    pub policy: RestartPolicy,
    /// Default 3.
    pub max_restarts: u32,
    /// Default 5s.
    pub within: Duration,
    /// Default 100ms.
    pub backoff_initial: Duration,
    /// Default 5s.
    pub backoff_max: Duration,
}

impl RestartSettings {
    /// The backoff between restarts: doubling from `backoff_initial` to `backoff_max`, with
    /// ±20% jitter so that instances that crashed together do not restart in lockstep.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.backoff_initial, self.backoff_max).with_jitter(0.2)
    }

    fn from_spec(spec: &RestartSpec) -> Self {
        Self {
            policy: spec.policy.unwrap_or(RestartPolicy::Permanent),
            max_restarts: spec.max_restarts.unwrap_or(3),
            within: spec.within.unwrap_or(Duration::from_secs(5)),
            backoff_initial: spec.backoff.initial.unwrap_or(Duration::from_millis(100)),
            backoff_max: spec.backoff.max.unwrap_or(Duration::from_secs(5)),
        }
    }
}

impl RuntimeSettings {
    fn from_spec(spec: &RuntimeSpec) -> Self {
        let defaults = SwapSettings::default();
        let reload = &spec.reload;
        Self {
            reload: SwapSettings {
                mode: reload.mode.unwrap_or(defaults.mode),
                drain_timeout: reload.drain_timeout.unwrap_or(defaults.drain_timeout),
                build_timeout: reload.build_timeout.unwrap_or(defaults.build_timeout),
                start_timeout: reload.start_timeout.unwrap_or(defaults.start_timeout),
                stop_timeout: reload.stop_timeout.unwrap_or(defaults.stop_timeout),
                probation: reload.probation,
            },
            plugin_strategy: spec.plugins.strategy.unwrap_or_default(),
        }
    }
}

/// Items whose `config:` could not be expanded (an unset variable, say). Their problems are
/// already reported, so nothing else is checked in them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Unexpanded {
    pub(crate) modules: HashSet<usize>,
    /// `(pipeline, step)` positions.
    pub(crate) steps: HashSet<(usize, usize)>,
    /// `(pipeline, step)` positions in `onError:`.
    pub(crate) on_error: HashSet<(usize, usize)>,
    /// Pipeline positions.
    pub(crate) triggers: HashSet<usize>,
    pub(crate) plugins: HashSet<usize>,
}

/// Resolves one plugin entry in place (found at `at`): expands its config and applies restart
/// defaults. Returns its restart settings and whether its config could not be expanded.
fn resolve_plugin_at(
    plugin: &mut PluginSpec,
    at: &str,
    env: &mut Expander<'_>,
    errors: &mut ConfigErrors,
) -> (RestartSettings, bool) {
    let mut failed = false;
    plugin.config = expand_tracked(
        &plugin.config,
        &place::field(at, "config"),
        env,
        errors,
        &mut failed,
    );
    let restart = RestartSettings::from_spec(&plugin.restart);
    let restart_at = place::field(at, "restart");
    if restart.backoff_initial > restart.backoff_max {
        errors.push(
            place::field(&restart_at, "backoff"),
            format!(
                "initial ({}) is longer than max ({})",
                humantime::format_duration(restart.backoff_initial),
                humantime::format_duration(restart.backoff_max)
            ),
        );
    }
    if restart.within.is_zero() {
        errors.push(
            place::field(&restart_at, "within"),
            "must be longer than zero",
        );
    }
    (restart, failed)
}

/// Resolves a single plugin entry (for a per-plugin reload): the entry with its config expanded,
/// and its restart settings with defaults applied.
pub(crate) fn resolve_plugin(
    plugin: &PluginSpec,
    env: EnvLookup<'_>,
) -> Result<(PluginSpec, RestartSettings), ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut resolved = plugin.clone();
    let (restart, _) = resolve_plugin_at(
        &mut resolved,
        &format!("plugin {:?}", plugin.name),
        &mut Expander::new(env),
        &mut errors,
    );
    errors.into_result((resolved, restart))
}

/// Expands `value`, recording in `failed` whether any problem was reported.
fn expand_tracked(
    value: &Value,
    at: &str,
    env: &mut Expander<'_>,
    errors: &mut ConfigErrors,
    failed: &mut bool,
) -> Value {
    let before = errors.len();
    let expanded = expand_value(value, at, env, errors);
    *failed = errors.len() > before;
    expanded
}

/// Resolves `config`, adding problems to `errors`; always returns a best-effort result,
/// with the items that could not be expanded.
pub(crate) fn resolve_collecting(
    config: &Arc<Config>,
    env: EnvLookup<'_>,
    errors: &mut ConfigErrors,
) -> (Resolved, Unexpanded) {
    let mut unexpanded = Unexpanded::default();
    // One budget for every expansion in the config.
    let env = &mut Expander::new(env);
    // Shared with the config as written until a value actually expands: most configs have no
    // `${VAR}` at all, and a large one should not be copied for nothing on every reload.
    let mut resolved = config.clone();
    let mut failed = false;
    for (i, module) in config.modules.iter().enumerate() {
        if !mentions_env(&module.config) {
            continue;
        }
        let at = place::named_item("modules", i, Some(&module.name));
        let expanded = expand_tracked(
            &module.config,
            &place::field(&at, "config"),
            env,
            errors,
            &mut failed,
        );
        Arc::make_mut(&mut resolved).modules[i].config = expanded;
        if failed {
            unexpanded.modules.insert(i);
        }
    }
    for (p, pipeline) in config.pipelines.iter().enumerate() {
        let at = || place::key("pipelines", &pipeline.name);
        if let Some(trigger) = pipeline
            .trigger
            .as_ref()
            .filter(|t| mentions_env(&t.config))
        {
            let trigger_at = place::field(&place::field(&at(), "trigger"), "config");
            let expanded = expand_tracked(&trigger.config, &trigger_at, env, errors, &mut failed);
            if let Some(trigger) = &mut Arc::make_mut(&mut resolved).pipelines[p].trigger {
                trigger.config = expanded;
            }
            if failed {
                unexpanded.triggers.insert(p);
            }
        }
        for (list, on_error) in [("steps", false), ("onError", true)] {
            let steps = match on_error {
                false => &pipeline.steps,
                true => &pipeline.on_error,
            };
            for (i, step) in steps.iter().enumerate() {
                if !mentions_env(&step.config) {
                    continue;
                }
                let step_at = place::named_item(&place::field(&at(), list), i, Some(&step.name));
                let expanded = expand_tracked(
                    &step.config,
                    &place::field(&step_at, "config"),
                    env,
                    errors,
                    &mut failed,
                );
                let pipeline = &mut Arc::make_mut(&mut resolved).pipelines[p];
                match on_error {
                    false => pipeline.steps[i].config = expanded,
                    true => pipeline.on_error[i].config = expanded,
                }
                if failed {
                    match on_error {
                        false => unexpanded.steps.insert((p, i)),
                        true => unexpanded.on_error.insert((p, i)),
                    };
                }
            }
        }
    }
    let mut plugin_restarts = Vec::with_capacity(config.plugins.len());
    for (i, written) in config.plugins.iter().enumerate() {
        let at = place::named_item("plugins", i, Some(&written.name));
        let mut plugin = written.clone();
        let (restart, failed) = resolve_plugin_at(&mut plugin, &at, env, errors);
        if failed {
            unexpanded.plugins.insert(i);
        }
        if mentions_env(&written.config) {
            Arc::make_mut(&mut resolved).plugins[i] = plugin;
        }
        plugin_restarts.push(restart);
    }
    let settings = RuntimeSettings::from_spec(&config.runtime);
    for (field, value) in [
        ("buildTimeout", settings.reload.build_timeout),
        ("startTimeout", settings.reload.start_timeout),
        ("stopTimeout", settings.reload.stop_timeout),
    ] {
        if value.is_zero() {
            errors.push(
                format!("runtime.reload.{field}"),
                "must be longer than zero",
            );
        }
    }
    let resolved = Resolved {
        config: resolved,
        settings,
        plugin_restarts,
    };
    (resolved, unexpanded)
}
