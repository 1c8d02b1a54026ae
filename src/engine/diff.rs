//! What a reload changes: the new engine's modules and pipelines against the engine that last
//! started in the same context (the live one, in a runtime).
//!
//! A module counts as kept exactly when its running instance is carried over (its spec and its
//! dependencies unchanged, see [`carried`](super::carry::carried)), so a module whose dependency
//! changed counts as changed. Pipelines have no life of their own (they are rebuilt with every engine, which costs a
//! few allocations per step); they are compared by their spec.

use std::collections::{BTreeMap, HashMap, HashSet};

use swapvisor_actors::{Changes, PartChanges};

use super::EngineInner;
use super::plan::Plan;

/// The changes `new` makes against `live` (`None`: nothing was running, so all is added).
pub(super) fn changes(new: &Plan, live: Option<&EngineInner>) -> Changes {
    let live_plan = live.map(|engine| &engine.plan);
    let mut modules = PartChanges::default();
    let live_modules: HashSet<&str> = live_plan
        .map(|plan| {
            plan.modules
                .iter()
                .map(|m| m.shared.spec.name.as_str())
                .collect()
        })
        .unwrap_or_default();
    let mut seen = HashSet::with_capacity(new.modules.len());
    for module in &new.modules {
        let name = module.shared.spec.name.clone();
        seen.insert(module.shared.spec.name.as_str());
        if module.carried {
            modules.kept.push(name);
        } else if live_modules.contains(module.shared.spec.name.as_str()) {
            modules.changed.push(name);
        } else {
            modules.added.push(name);
        }
    }
    modules.removed = live_modules
        .iter()
        .filter(|name| !seen.contains(*name))
        .map(|name| (*name).to_owned())
        .collect();

    let mut pipelines = PartChanges::default();
    let live_pipelines: HashMap<&str, &crate::config::PipelineSpec> = live_plan
        .map(|plan| {
            let specs = &plan.resolved.config.pipelines;
            specs.iter().map(|p| (p.name.as_str(), p)).collect()
        })
        .unwrap_or_default();
    for spec in &new.resolved.config.pipelines {
        let name = spec.name.clone();
        match live_pipelines.get(spec.name.as_str()) {
            Some(live) if *live == spec => pipelines.kept.push(name),
            Some(_) => pipelines.changed.push(name),
            None => pipelines.added.push(name),
        }
    }
    let new_names: HashSet<&str> = new
        .resolved
        .config
        .pipelines
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    pipelines.removed = live_pipelines
        .keys()
        .filter(|name| !new_names.contains(*name))
        .map(|name| (*name).to_owned())
        .collect();

    Changes::new(BTreeMap::from([
        ("modules".to_owned(), modules.sorted()),
        ("pipelines".to_owned(), pipelines.sorted()),
    ]))
}
