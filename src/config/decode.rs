//! From a value tree to a typed [`Config`], collecting every structural problem.
//!
//! Decoding is lenient on purpose: a bad field is reported and skipped, and decoding goes on, so
//! that one pass finds every problem in the file. The strict answer (an error when anything was
//! reported) is made by the caller.

use serde_json::Value;

use super::error::{ConfigErrors, place};
use super::fields::Fields;
use super::model::*;

const TOP_FIELDS: &[&str] = &["modules", "pipelines", "plugins", "runtime"];
const MODULE_FIELDS: &[&str] = &["name", "type", "config", "dependsOn"];
const PIPELINE_FIELDS: &[&str] = &[
    "trigger",
    "steps",
    "onError",
    "timeout",
    "maxRenderBytes",
    "transaction",
];
const TRIGGER_FIELDS: &[&str] = &["type", "config"];
const STEP_FIELDS: &[&str] = &["name", "type", "config", "if"];
const PLUGIN_FIELDS: &[&str] = &["name", "type", "config", "restart"];
const RESTART_FIELDS: &[&str] = &["policy", "maxRestarts", "within", "backoff"];
const BACKOFF_FIELDS: &[&str] = &["initial", "max"];
const RUNTIME_FIELDS: &[&str] = &["reload", "plugins"];
const RELOAD_FIELDS: &[&str] = &[
    "mode",
    "drainTimeout",
    "buildTimeout",
    "startTimeout",
    "stopTimeout",
    "probation",
];
const RUNTIME_PLUGINS_FIELDS: &[&str] = &["strategy"];

/// Decodes `document`, recording every problem in `errors`. Items too broken to decode are
/// left out of the returned config.
pub(crate) fn decode(document: &Value, errors: &mut ConfigErrors) -> Config {
    let mut config = Config::default();
    let Some(root) = Fields::of(document, "", TOP_FIELDS, errors) else {
        return config;
    };
    if let Some(modules) = root.list("modules", errors) {
        config.modules = modules
            .iter()
            .enumerate()
            .filter_map(|(i, item)| decode_module(item, i, errors))
            .collect();
    }
    if let Some(pipelines) = root.mapping("pipelines", errors) {
        let parent = root.at("pipelines");
        config.pipelines = pipelines
            .iter()
            .filter_map(|(name, item)| decode_pipeline(name, item, &parent, errors))
            .collect();
    }
    if let Some(plugins) = root.list("plugins", errors) {
        config.plugins = plugins
            .iter()
            .enumerate()
            .filter_map(|(i, item)| decode_plugin(item, i, errors))
            .collect();
    }
    if let Some(runtime) = root.child("runtime", RUNTIME_FIELDS, errors) {
        config.runtime = decode_runtime(&runtime, errors);
    }
    config
}

fn decode_module(item: &Value, index: usize, errors: &mut ConfigErrors) -> Option<ModuleSpec> {
    let here = place::named_item("modules", index, name_of(item));
    let fields = Fields::of(item, &here, MODULE_FIELDS, errors)?;
    let name = fields.name(errors);
    let type_name = fields.required_string("type", "a module type, such as http.server", errors);
    let config = fields.config(errors);
    let depends_on = fields.string_list("dependsOn", errors);
    Some(ModuleSpec {
        name: name?,
        type_name: type_name?,
        config,
        depends_on,
    })
}

fn decode_pipeline(
    name: &str,
    item: &Value,
    parent: &str,
    errors: &mut ConfigErrors,
) -> Option<PipelineSpec> {
    let here = place::key(parent, name);
    let fields = Fields::of(item, &here, PIPELINE_FIELDS, errors)?;
    let trigger = fields
        .child("trigger", TRIGGER_FIELDS, errors)
        .and_then(|trigger| {
            let type_name = trigger.required_string("type", "a trigger type, such as http", errors);
            let config = trigger.config(errors);
            Some(TriggerSpec {
                type_name: type_name?,
                config,
            })
        });
    let steps = match fields.list("steps", errors) {
        Some(steps) => decode_steps(steps, &fields.at("steps"), errors),
        None => {
            if fields.get("steps").is_none() {
                errors.push(
                    fields.at("steps"),
                    "missing (required: the list of steps the pipeline runs)",
                );
            }
            Vec::new()
        }
    };
    let on_error = fields
        .list("onError", errors)
        .map(|steps| decode_steps(steps, &fields.at("onError"), errors))
        .unwrap_or_default();
    let timeout = fields.duration("timeout", errors);
    if timeout.is_some_and(|t| t.is_zero()) {
        errors.push(
            fields.at("timeout"),
            "must be longer than 0 (a duration such as 500ms or 30s)",
        );
    }
    let max_render_bytes = fields.count("maxRenderBytes", errors);
    if max_render_bytes.is_some_and(|n| n < PipelineSpec::MIN_MAX_RENDER_BYTES) {
        errors.push(
            fields.at("maxRenderBytes"),
            format!(
                "must be at least {} (bytes one run's templates may render; the default is {})",
                PipelineSpec::MIN_MAX_RENDER_BYTES,
                PipelineSpec::DEFAULT_MAX_RENDER_BYTES
            ),
        );
    }
    let transaction = match fields.get("transaction") {
        None => None,
        Some(_) => fields.required_string("transaction", "the name of a store module", errors),
    };
    Some(PipelineSpec {
        name: name.to_owned(),
        trigger,
        steps,
        on_error,
        timeout,
        max_render_bytes,
        transaction,
    })
}

/// Decodes the step entries of the list at `list_place`, leaving out those too broken to use.
pub(crate) fn decode_steps(
    items: &[Value],
    list_place: &str,
    errors: &mut ConfigErrors,
) -> Vec<StepSpec> {
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            decode_step_at(
                item,
                &place::named_item(list_place, i, name_of(item)),
                errors,
            )
        })
        .collect()
}

/// Decodes one step entry found at `here`: `name`, `type`, `config` and `if`.
fn decode_step_at(item: &Value, here: &str, errors: &mut ConfigErrors) -> Option<StepSpec> {
    let step = Fields::of(item, here, STEP_FIELDS, errors)?;
    let name = step.name(errors);
    let type_name = step.required_string("type", "a step type, such as step.set", errors);
    let config = step.config(errors);
    let condition = match step.get("if") {
        None => None,
        Some(Value::String(code)) => Some(code.clone()),
        Some(other) => {
            step.wrong_type(
                "if",
                "a jq expression as a string, such as \".request.query.debug\"",
                other,
                errors,
            );
            None
        }
    };
    Some(StepSpec {
        name: name?,
        type_name: type_name?,
        config,
        condition,
    })
}

fn decode_plugin(item: &Value, index: usize, errors: &mut ConfigErrors) -> Option<PluginSpec> {
    let here = place::named_item("plugins", index, name_of(item));
    decode_plugin_at(item, &here, errors)
}

/// Decodes one `plugins:` entry found at `here`.
pub(crate) fn decode_plugin_at(
    item: &Value,
    here: &str,
    errors: &mut ConfigErrors,
) -> Option<PluginSpec> {
    let fields = Fields::of(item, here, PLUGIN_FIELDS, errors)?;
    let name = fields.name(errors);
    let kind = fields.required_string("type", "a plugin kind, such as counter", errors);
    let config = fields.config(errors);
    let restart = fields
        .child("restart", RESTART_FIELDS, errors)
        .map(|restart| RestartSpec {
            policy: restart.choice(
                "policy",
                &[
                    ("permanent", RestartPolicy::Permanent),
                    ("transient", RestartPolicy::Transient),
                    ("temporary", RestartPolicy::Temporary),
                ],
                errors,
            ),
            max_restarts: restart.count("maxRestarts", errors),
            within: restart.duration("within", errors),
            backoff: restart
                .child("backoff", BACKOFF_FIELDS, errors)
                .map(|backoff| BackoffSpec {
                    initial: backoff.duration("initial", errors),
                    max: backoff.duration("max", errors),
                })
                .unwrap_or_default(),
        })
        .unwrap_or_default();
    Some(PluginSpec {
        name: name?,
        kind: kind?,
        config,
        restart,
    })
}

fn decode_runtime(runtime: &Fields<'_>, errors: &mut ConfigErrors) -> RuntimeSpec {
    let reload = runtime
        .child("reload", RELOAD_FIELDS, errors)
        .map(|reload| ReloadSpec {
            mode: reload.choice(
                "mode",
                &[
                    ("start-first", SwapMode::StartFirst),
                    ("stop-first", SwapMode::StopFirst),
                ],
                errors,
            ),
            drain_timeout: reload.duration("drainTimeout", errors),
            build_timeout: reload.duration("buildTimeout", errors),
            start_timeout: reload.duration("startTimeout", errors),
            stop_timeout: reload.duration("stopTimeout", errors),
            probation: reload.duration("probation", errors),
        })
        .unwrap_or_default();
    let plugins = runtime
        .child("plugins", RUNTIME_PLUGINS_FIELDS, errors)
        .map(|plugins| PluginsRuntimeSpec {
            strategy: plugins.choice(
                "strategy",
                &[
                    ("one_for_one", RestartStrategy::OneForOne),
                    ("one_for_all", RestartStrategy::OneForAll),
                    ("rest_for_one", RestartStrategy::RestForOne),
                ],
                errors,
            ),
        })
        .unwrap_or_default();
    RuntimeSpec { reload, plugins }
}

/// The `name` of a list item, if it has a usable one, so that its place can show it.
fn name_of(item: &Value) -> Option<&str> {
    item.get("name").and_then(Value::as_str)
}
