//! Planning a build: every registry-dependent check, and the construction of every module,
//! step and trigger, with all problems collected into one list.
//!
//! Planning has no outside effects. Its result, a [`Plan`], is everything the engine needs to
//! start; what it cannot construct is reported with its place, alongside the problems found
//! earlier while decoding, so an operator sees every error in one pass.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use swapvisor_actors::guard;

use super::branching::{StepsContext, plan_steps};
use super::carry::{ModulePool, SharedModule, carried};
use super::http::{HttpRouter, RouteError};
use super::pipeline::{Limits, Pipeline};
use super::plugins::{PLUGIN_CONTRIBUTOR, PluginTypeUse, plan_plugins};
use super::requests::RequestMetrics;
use super::types::TypeLists;
use crate::config::{
    Config, ConfigErrors, EnvLookup, PipelineSpec, Resolved, module_place, place,
    resolve_collecting, start_order, unknown_name,
};
use crate::extension::{
    ListenerKey, ModuleBuild, ModuleDirectory, TriggerBinding, TriggerBuild, TriggerTask,
};
use crate::plugin::PluginPlan;
use crate::registry::Registry;

pub(crate) struct PlannedModule {
    /// The instance: built for this engine, or carried over from a running one.
    pub(crate) shared: Arc<SharedModule>,
    /// True when the instance was running in another engine when this one was built.
    pub(crate) carried: bool,
}

/// Everything an engine is made of, constructed but not started.
pub(crate) struct Plan {
    pub(crate) resolved: Resolved,
    /// The registry the config was checked against: the base one plus plugin contributions.
    pub(crate) registry: Arc<Registry>,
    /// The plugin instances to attach, in config order, and their restart strategy.
    pub(crate) plugins: PluginPlan,
    /// The kind of each plugin instance, by name.
    pub(crate) plugin_kinds: HashMap<String, String>,
    pub(crate) plugin_type_uses: Vec<PluginTypeUse>,
    /// In start order.
    pub(crate) modules: Vec<PlannedModule>,
    pub(crate) pipelines: Vec<Arc<Pipeline>>,
    pub(crate) router: HttpRouter,
    pub(crate) tasks: Vec<(Arc<Pipeline>, Box<dyn TriggerTask>)>,
    pub(crate) types: TypeLists,
}

/// Runs a factory's `construct`, turning a panic into an error at `what`.
pub(super) fn guarded<T>(
    what: &str,
    construct: impl FnOnce() -> Result<T, ConfigErrors>,
) -> Result<T, ConfigErrors> {
    guard::run_sync(construct).unwrap_or_else(|interrupted| {
        Err(ConfigErrors::from(crate::config::ConfigError::new(
            what,
            format!("the type's factory {interrupted}"),
        )))
    })
}

/// Plans `config`. `errors` may already hold problems found while decoding; the plan is
/// returned only when, at the end, there are none.
pub(crate) fn plan(
    config: &Arc<Config>,
    registry: &Registry,
    requests: &RequestMetrics,
    pool: &ModulePool,
    env: EnvLookup<'_>,
    mut errors: ConfigErrors,
) -> Result<Plan, ConfigErrors> {
    let (resolved, broken) = resolve_collecting(config, env, &mut errors);
    let config = &resolved.config;
    let (with_plugins, plugins, plugin_kinds) =
        plan_plugins(&resolved, registry, &broken.plugins, &mut errors);
    let registry = &with_plugins;
    let plugin_names: Vec<String> = config.plugins.iter().map(|p| p.name.clone()).collect();
    let mut plugin_type_uses = Vec::new();
    let mut note_use = |kind: &'static str, type_name: &str, place: String| {
        if let Some(plugin_kind) = registry
            .contributor_of(kind, type_name)
            .and_then(|c| c.strip_prefix(PLUGIN_CONTRIBUTOR))
        {
            plugin_type_uses.push(PluginTypeUse {
                kind,
                type_name: type_name.to_owned(),
                plugin_kind: plugin_kind.to_owned(),
                place,
            });
        }
    };

    // Modules, in document order first; reordered for start below. A module whose running
    // instance has the same spec (and whose dependencies are carried too) is carried over
    // instead of built.
    let order = start_order(&config.modules);
    // A plugin's types are rebuilt always: its code may have changed under the same config.
    let contributed = |type_name: &str| {
        registry
            .contributor_of("module", type_name)
            .is_some_and(|c| c.starts_with(PLUGIN_CONTRIBUTOR))
    };
    let mut carried = carried(&config.modules, order.as_deref(), pool, |i| {
        broken.modules.contains(&i) || contributed(&config.modules[i].type_name)
    });
    let mut built: Vec<Option<PlannedModule>> = Vec::with_capacity(config.modules.len());
    for (i, module) in config.modules.iter().enumerate() {
        // Places are only written out where they are needed: a large config mostly carries.
        let at = || module_place(config, i);
        let Some(factory) = registry.module_factory(&module.type_name) else {
            errors.push(
                place::field(&at(), "type"),
                unknown_name(
                    "module type",
                    &module.type_name,
                    "registered",
                    registry.module_types(),
                ),
            );
            built.push(None);
            continue;
        };
        if broken.modules.contains(&i) {
            built.push(None);
            continue;
        }
        if contributed(&module.type_name) {
            note_use("module", &module.type_name, at());
        }
        if let Some(shared) = carried[i].take() {
            built.push(Some(PlannedModule {
                shared,
                carried: true,
            }));
            continue;
        }
        let config_at = place::field(&at(), "config");
        let build = ModuleBuild {
            name: &module.name,
            type_name: &module.type_name,
            config: &module.config,
            place: &config_at,
            env,
        };
        match guarded(&config_at, || factory.build(&build)) {
            Ok(m) => built.push(Some(PlannedModule {
                shared: Arc::new(SharedModule::new(module, m)),
                carried: false,
            })),
            Err(e) => {
                errors.0.extend(e.0);
                built.push(None);
            }
        }
    }

    // Servers: which modules are http.server, and on which listener.
    let mut servers: HashMap<&str, ListenerKey> = HashMap::new();
    let mut router = HttpRouter::default();
    let mut addresses: HashMap<ListenerKey, &str> = HashMap::new();
    for (i, module) in built.iter().enumerate() {
        let Some(key) = module
            .as_ref()
            .and_then(|m| m.shared.module.http_listener())
        else {
            continue;
        };
        let name = config.modules[i].name.as_str();
        if servers.contains_key(name) {
            continue; // a duplicate module name, already reported
        }
        let key = key.clone();
        if let Some(other) = addresses.insert(key.clone(), name) {
            errors.push(
                place::field(&place::field(&module_place(config, i), "config"), "address"),
                format!(
                    "address {} is already used by module {other:?}",
                    key.address
                ),
            );
        }
        router.add_server(key.clone());
        servers.insert(name, key);
    }
    let server_names = || {
        let mut names: Vec<&str> = servers.keys().copied().collect();
        names.sort_unstable();
        names
    };

    let directory = ModuleDirectory::new(
        built
            .iter()
            .zip(&config.modules)
            .filter_map(|(m, spec)| {
                let m = m.as_ref()?;
                Some((
                    spec.name.as_str(),
                    spec.type_name.as_str(),
                    &*m.shared.module,
                ))
            })
            .collect(),
    );
    let mut pipelines = Vec::with_capacity(config.pipelines.len());
    let mut tasks = Vec::new();
    let mut types = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for module in &config.modules {
        types.0.insert(module.type_name.clone());
    }
    for (p, spec) in config.pipelines.iter().enumerate() {
        let at = place::key("pipelines", &spec.name);
        let mut steps_cx = StepsContext {
            registry,
            plugin_names: &plugin_names,
            process_plugins: config.plugins.iter().any(|p| p.kind == "process"),
            modules: &directory,
            env,
            pipeline_fingerprint: fingerprint(spec),
            note_use: &mut note_use,
            used: &mut types.1,
            errors: &mut errors,
        };
        let planned = plan_steps(&mut steps_cx, spec, |on_error, i| match on_error {
            false => broken.steps.contains(&(p, i)),
            true => broken.on_error.contains(&(p, i)),
        });
        let timeout = spec.timeout.unwrap_or(PipelineSpec::DEFAULT_TIMEOUT);
        let max_render_bytes =
            spec.max_render_bytes
                .unwrap_or(PipelineSpec::DEFAULT_MAX_RENDER_BYTES) as usize;
        let transaction = spec.transaction.as_ref().and_then(|store| {
            let found = directory.transactions(store, &place::field(&at, "transaction"));
            found
                .map_err(|e| errors.0.extend(e.0))
                .ok()
                .map(|transactions| (store.clone(), transactions))
        });
        let pipeline = Arc::new(Pipeline::new(
            spec.name.clone(),
            planned.steps,
            planned.slots,
            Limits {
                timeout,
                max_render_bytes,
            },
            transaction,
        ));
        if let Some(trigger) = &spec.trigger {
            types.2.insert(trigger.type_name.clone());
            let trigger_at = place::field(&at, "trigger");
            let config_at = place::field(&trigger_at, "config");
            match registry.trigger_factory(&trigger.type_name) {
                None => errors.push(
                    place::field(&trigger_at, "type"),
                    unknown_name(
                        "trigger type",
                        &trigger.type_name,
                        "registered",
                        registry.trigger_types(),
                    ),
                ),
                Some(_) if broken.triggers.contains(&p) => {}
                Some(factory) => {
                    note_use("trigger", &trigger.type_name, trigger_at.clone());
                    let build = TriggerBuild {
                        pipeline: &spec.name,
                        type_name: &trigger.type_name,
                        config: &trigger.config,
                        place: &config_at,
                    };
                    match guarded(&config_at, || factory.build(&build)) {
                        Ok(TriggerBinding::Http(route)) => match servers.get(route.server.as_str())
                        {
                            Some(key) => {
                                let added = router.add_route(
                                    key,
                                    &route.method,
                                    &route.path,
                                    pipeline.clone(),
                                    requests.pipeline(&spec.name),
                                );
                                match added {
                                    Ok(()) => {}
                                    Err(RouteError::Clash {
                                        pipeline: other,
                                        route: existing,
                                    }) => errors.push(
                                        config_at.clone(),
                                        format!(
                                            "route {} {} of pipeline {:?} on server {:?} clashes with route {existing} of pipeline {other:?}: both would serve the same requests",
                                            route.method, route.path, spec.name, route.server
                                        ),
                                    ),
                                    Err(RouteError::Invalid(message)) => {
                                        errors.push(place::field(&config_at, "path"), message)
                                    }
                                }
                            }
                            None => {
                                let known_module =
                                    config.modules.iter().any(|m| m.name == route.server);
                                let message = if known_module {
                                    format!(
                                        "module {:?} is not an http.server (servers: {})",
                                        route.server,
                                        crate::config::list_or_none(&server_names())
                                    )
                                } else {
                                    unknown_name("server", &route.server, "servers", server_names())
                                };
                                errors.push(place::field(&config_at, "server"), message);
                            }
                        },
                        Ok(TriggerBinding::Task(task)) => tasks.push((pipeline.clone(), task)),
                        Err(e) => errors.0.extend(e.0),
                    }
                }
            }
        }
        pipelines.push(pipeline);
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    // With no errors every module was built, and without a cycle there is an order.
    drop(directory);
    let order = order.unwrap_or_default();
    let modules = order.into_iter().filter_map(|i| built[i].take()).collect();
    Ok(Plan {
        registry: Arc::new(with_plugins),
        plugins: PluginPlan {
            instances: plugins,
            strategy: resolved.settings.plugin_strategy,
        },
        plugin_kinds,
        plugin_type_uses,
        modules,
        pipelines,
        router,
        tasks,
        types: TypeLists {
            module_types: types.0.into_iter().collect(),
            step_types: types.1.into_iter().collect(),
            trigger_types: types.2.into_iter().collect(),
        },
        resolved,
    })
}

/// A digest of `spec`, as [`StepBuild::pipeline_fingerprint`] describes.
fn fingerprint(spec: &PipelineSpec) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same digest for the same spec in every build of a process.
    let mut hasher = std::hash::DefaultHasher::new();
    serde_json::to_vec(spec)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}
