//! Checks that need only the config itself: unique names, known dependencies, no cycles.
//!
//! Checks that need the registry (known types, each type's own settings) run when the engine
//! plans its build, and add to the same list of errors.

use std::collections::HashMap;

use super::error::{ConfigErrors, place, unknown_name};
use super::model::{Config, ModuleSpec};

/// Records every naming and dependency problem in `config`.
pub(crate) fn check_structure(config: &Config, errors: &mut ConfigErrors) {
    let module_names = first_places(
        config.modules.iter().map(|m| m.name.as_str()),
        "modules",
        "module",
        errors,
    );
    for pipeline in &config.pipelines {
        let steps_at = place::field(&place::key("pipelines", &pipeline.name), "steps");
        first_places(
            pipeline.steps.iter().map(|s| s.name.as_str()),
            &steps_at,
            "step",
            errors,
        );
    }
    first_places(
        config.plugins.iter().map(|p| p.name.as_str()),
        "plugins",
        "plugin",
        errors,
    );
    for (i, module) in config.modules.iter().enumerate() {
        let at = place::field(&module_place(config, i), "dependsOn");
        for (j, dependency) in module.depends_on.iter().enumerate() {
            if !module_names.contains_key(dependency.as_str()) {
                errors.push(
                    place::index(&at, j),
                    unknown_name(
                        "module",
                        dependency,
                        "modules",
                        config.modules.iter().map(|m| m.name.as_str()),
                    ),
                );
            }
        }
    }
    for cycle in dependency_cycles(&config.modules) {
        let names: Vec<&str> = cycle
            .iter()
            .chain(cycle.first())
            .map(|&i| config.modules[i].name.as_str())
            .collect();
        errors.push(
            place::field(&module_place(config, cycle[0]), "dependsOn"),
            format!("dependency cycle: {}", names.join(" -> ")),
        );
    }
}

/// `modules[i] (name "x")`.
pub(crate) fn module_place(config: &Config, index: usize) -> String {
    place::named_item("modules", index, Some(&config.modules[index].name))
}

/// Maps each name to the index of its first use, reporting every later use as a duplicate.
fn first_places<'a>(
    names: impl Iterator<Item = &'a str>,
    list_place: &str,
    what: &str,
    errors: &mut ConfigErrors,
) -> HashMap<&'a str, usize> {
    let mut first: HashMap<&'a str, usize> = HashMap::new();
    for (i, name) in names.enumerate() {
        if let Some(&earlier) = first.get(name) {
            errors.push(
                place::field(&place::named_item(list_place, i, Some(name)), "name"),
                format!(
                    "duplicate {what} name {name:?} (first used at {})",
                    place::index(list_place, earlier)
                ),
            );
        } else {
            first.insert(name, i);
        }
    }
    first
}

/// Every distinct dependency cycle, each as module indices starting from its lowest index.
/// Dependencies on unknown modules are ignored here (they are reported on their own).
fn dependency_cycles(modules: &[ModuleSpec]) -> Vec<Vec<usize>> {
    let edges = edges(modules);
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut marks = vec![Mark::New; modules.len()];
    let mut cycles: Vec<Vec<usize>> = Vec::new();
    for root in 0..modules.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // Iterative depth-first search, so a long dependency chain cannot exhaust the stack.
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        marks[root] = Mark::OnStack;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&target) = edges[node].get(*next) {
                *next += 1;
                match marks[target] {
                    Mark::New => {
                        marks[target] = Mark::OnStack;
                        stack.push((target, 0));
                    }
                    Mark::OnStack => {
                        let start = stack.iter().position(|&(n, _)| n == target).unwrap_or(0);
                        let mut cycle: Vec<usize> =
                            stack[start..].iter().map(|&(n, _)| n).collect();
                        let lowest = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|&(_, &n)| n)
                            .map_or(0, |(at, _)| at);
                        cycle.rotate_left(lowest);
                        if !cycles.contains(&cycle) {
                            cycles.push(cycle);
                        }
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    cycles
}

/// For each module, the indices of the modules it depends on (known ones only, in order).
fn edges(modules: &[ModuleSpec]) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = modules
        .iter()
        .enumerate()
        .rev() // so that a duplicated name maps to its first use
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    modules
        .iter()
        .map(|m| {
            m.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect()
}

/// The order to start modules in: every module after all its dependencies, and otherwise in
/// document order. `None` when there is a cycle.
pub(crate) fn start_order(modules: &[ModuleSpec]) -> Option<Vec<usize>> {
    let edges = edges(modules);
    let mut waiting_on: Vec<usize> = edges.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); modules.len()];
    for (module, deps) in edges.iter().enumerate() {
        for &dep in deps {
            dependents[dep].push(module);
        }
    }
    // A min-heap keyed by document position keeps the order stable and predictable.
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = waiting_on
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n == 0)
        .map(|(i, _)| std::cmp::Reverse(i))
        .collect();
    let mut order = Vec::with_capacity(modules.len());
    while let Some(std::cmp::Reverse(next)) = ready.pop() {
        order.push(next);
        for &dependent in &dependents[next] {
            waiting_on[dependent] -= 1;
            if waiting_on[dependent] == 0 {
                ready.push(std::cmp::Reverse(dependent));
            }
        }
    }
    (order.len() == modules.len()).then_some(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn module(name: &str, deps: &[&str]) -> ModuleSpec {
        ModuleSpec {
            name: name.into(),
            type_name: "t".into(),
            config: json!({}),
            depends_on: deps.iter().map(|d| (*d).into()).collect(),
        }
    }

    #[test]
    fn start_order_respects_dependencies_then_document_order() {
        let modules = [module("a", &["c"]), module("b", &[]), module("c", &["b"])];
        assert_eq!(start_order(&modules), Some(vec![1, 2, 0]));
    }

    #[test]
    fn each_cycle_is_reported_once_from_its_lowest_module() {
        let modules = [
            module("a", &["b"]),
            module("b", &["c"]),
            module("c", &["a"]),
            module("d", &["d"]),
        ];
        assert_eq!(dependency_cycles(&modules), vec![vec![0, 1, 2], vec![3]]);
        assert_eq!(start_order(&modules), None);
    }
}
