//! Plugin changes as data: what an engine's start does to the runtime's plugin instances.
//!
//! Plugins outlive the engines that use them, the way listeners do. When an engine starts, the
//! host compares what it runs (each instance with the spec the config gave it) with the new
//! engine's [`PluginPlan`](super::spec::PluginPlan), entry by entry, into a list of changes:
//!
//! | change | when | applied as |
//! |---|---|---|
//! | `Add` | the name is new | build and start the instance |
//! | `Change` | the spec differs, or the instance has failed | reload it to the new spec, its state handed over |
//! | `Keep` | the spec is the same | nothing: the old and new engine share it, state and all |
//! | `Remove` | the new plan does not name it | nothing yet: it stops once no engine uses it |
//!
//! The host makes the changes in one place (`PluginHost::attach`), recording each before it
//! makes it, and a start that fails is undone by making the [inverted](PluginChanges::inverted)
//! record of what was made: added instances become removed (and stop, since nothing uses
//! them), changed ones are reloaded back to their previous spec.

use std::sync::Arc;

use super::spec::PluginUnitSpec;

/// One change to one plugin instance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PluginChange {
    /// A new instance: build and start it.
    Add(Arc<PluginUnitSpec>),
    /// An instance to reload from one spec to another, its state handed over.
    Change {
        from: Arc<PluginUnitSpec>,
        to: Arc<PluginUnitSpec>,
    },
    /// An instance that stays as it is. The specs are equal, but `to` may swap differently
    /// (the new config's timeouts), and is what later per-plugin reloads use.
    Keep {
        from: Arc<PluginUnitSpec>,
        to: Arc<PluginUnitSpec>,
    },
    /// An instance the new plan does not name.
    Remove(Arc<PluginUnitSpec>),
}

impl PluginChange {
    /// The instance it is about.
    pub(crate) fn name(&self) -> &str {
        match self {
            PluginChange::Add(spec) | PluginChange::Remove(spec) => spec.name(),
            PluginChange::Change { to, .. } | PluginChange::Keep { to, .. } => to.name(),
        }
    }

    /// The change that undoes this one.
    fn inverted(&self) -> Self {
        match self {
            PluginChange::Add(spec) => PluginChange::Remove(spec.clone()),
            PluginChange::Remove(spec) => PluginChange::Add(spec.clone()),
            PluginChange::Change { from, to } => PluginChange::Change {
                from: to.clone(),
                to: from.clone(),
            },
            PluginChange::Keep { from, to } => PluginChange::Keep {
                from: to.clone(),
                to: from.clone(),
            },
        }
    }
}

/// A running instance as the diff sees it.
pub(crate) struct Running {
    /// The spec the config last gave it.
    pub(crate) configured: Arc<PluginUnitSpec>,
    /// False when it has failed or stopped: it is reloaded even if its spec is the same.
    pub(crate) serving: bool,
}

/// Changes in the order they are applied: the new plan's order, removals last.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PluginChanges(Vec<PluginChange>);

impl PluginChanges {
    /// The changes from `running` (in start order) to `next` (in config order).
    pub(crate) fn between(running: &[Running], next: &[Arc<PluginUnitSpec>]) -> Self {
        let find = |name: &str| running.iter().find(|r| r.configured.name() == name);
        let mut changes: Vec<PluginChange> = next
            .iter()
            .map(|to| match find(to.name()) {
                None => PluginChange::Add(to.clone()),
                Some(r) if r.serving && *r.configured == **to => PluginChange::Keep {
                    from: r.configured.clone(),
                    to: to.clone(),
                },
                Some(r) => PluginChange::Change {
                    from: r.configured.clone(),
                    to: to.clone(),
                },
            })
            .collect();
        changes.extend(
            running
                .iter()
                .filter(|r| !next.iter().any(|to| to.name() == r.configured.name()))
                .map(|r| PluginChange::Remove(r.configured.clone())),
        );
        Self(changes)
    }

    /// The changes that undo these, last first.
    pub(crate) fn inverted(&self) -> Self {
        Self(self.0.iter().rev().map(PluginChange::inverted).collect())
    }

    /// Records `change` as made (or under way).
    pub(crate) fn push(&mut self, change: PluginChange) {
        self.0.push(change);
    }

    /// Forgets the last change: it failed without changing anything.
    pub(crate) fn pop(&mut self) {
        self.0.pop();
    }

    /// The last change recorded.
    pub(crate) fn last(&self) -> Option<&PluginChange> {
        self.0.last()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &PluginChange> {
        self.0.iter()
    }

    /// `added [a], changed [b], removed [], kept [c]`, for logs.
    pub(crate) fn summary(&self) -> String {
        let named = |pick: fn(&PluginChange) -> bool| {
            let names: Vec<&str> = self
                .0
                .iter()
                .filter(|c| pick(c))
                .map(|c| c.name())
                .collect();
            format!("[{}]", names.join(", "))
        };
        format!(
            "added {}, changed {}, removed {}, kept {}",
            named(|c| matches!(c, PluginChange::Add(_))),
            named(|c| matches!(c, PluginChange::Change { .. })),
            named(|c| matches!(c, PluginChange::Remove(_))),
            named(|c| matches!(c, PluginChange::Keep { .. })),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PluginSpec, RestartSettings, resolve_plugin};

    fn spec(name: &str, start: i64) -> Arc<PluginUnitSpec> {
        let yaml = format!("{{ name: {name}, type: counter, config: {{ start: {start} }} }}");
        let parsed = PluginSpec::parse(yaml.as_bytes()).unwrap();
        let (resolved, restart): (PluginSpec, RestartSettings) =
            resolve_plugin(&parsed, &|_: &str| None).unwrap();
        Arc::new(PluginUnitSpec::new(resolved, restart))
    }

    fn running(spec: &Arc<PluginUnitSpec>, serving: bool) -> Running {
        Running {
            configured: spec.clone(),
            serving,
        }
    }

    #[test]
    fn a_diff_lists_each_instance_once_in_plan_order_with_removals_last() {
        let (a, b, b2, c, d) = (
            spec("a", 0),
            spec("b", 0),
            spec("b", 1),
            spec("c", 0),
            spec("d", 0),
        );
        let now = [running(&a, true), running(&b, true), running(&c, true)];
        let changes = PluginChanges::between(&now, &[d.clone(), b2.clone(), a.clone()]);
        assert_eq!(
            changes.summary(),
            "added [d], changed [b], removed [c], kept [a]"
        );
        assert_eq!(
            changes.iter().map(PluginChange::name).collect::<Vec<_>>(),
            ["d", "b", "a", "c"]
        );
    }

    #[test]
    fn a_failed_instance_with_the_same_spec_is_changed_so_that_it_restarts() {
        let a = spec("a", 0);
        let changes = PluginChanges::between(&[running(&a, false)], std::slice::from_ref(&a));
        assert_eq!(
            changes.summary(),
            "added [], changed [a], removed [], kept []"
        );
    }

    #[test]
    fn inverting_undoes_last_first() {
        let (a, b, b2) = (spec("a", 0), spec("b", 0), spec("b", 1));
        let changes = PluginChanges::between(&[running(&b, true)], &[a.clone(), b2.clone()]);
        let undo = changes.inverted();
        assert_eq!(
            undo.summary(),
            "added [], changed [b], removed [a], kept []"
        );
        assert_eq!(
            undo.iter().map(PluginChange::name).collect::<Vec<_>>(),
            ["b", "a"]
        );
        let PluginChange::Change { from, to } = undo.iter().next().unwrap() else {
            panic!("{undo:?}")
        };
        assert_eq!((from, to), (&b2, &b));
        assert_eq!(undo.inverted(), changes);
    }
}
