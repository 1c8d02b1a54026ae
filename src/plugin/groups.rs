//! Restart groups: the plugin instances of each attached engine, with that engine's strategy.
//!
//! An OTP supervisor's strategy is about its own children. Here the "supervisor" of a set of
//! plugin instances is the engine config that declared them: each engine that attaches
//! registers its instances, in config order, with its `runtime.plugins.strategy`, and
//! unregisters them when it detaches. An instance is governed by the *oldest* group that holds
//! it: the live engine's, even while a newer config is being started (and perhaps rolled
//! back) beside it. An instance no group holds is stopped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::slot::PluginSlot;
use super::status::RestartGroupStatus;
use crate::config::RestartStrategy;

/// Which group, for unregistering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupId(u64);

struct Group {
    id: GroupId,
    strategy: RestartStrategy,
    /// In config order.
    members: Vec<Arc<PluginSlot>>,
}

/// The groups of the engines attached now, oldest first.
#[derive(Default)]
pub(crate) struct RestartGroups {
    groups: Mutex<Vec<Group>>,
    next: AtomicU64,
}

impl RestartGroups {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Group>> {
        // Plain data changed in short critical sections: a poisoned lock is still consistent.
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an attaching engine's group, governed by `strategy`; its instances
    /// [join](RestartGroups::join) it in config order.
    pub(crate) fn register(&self, strategy: RestartStrategy) -> GroupId {
        let id = GroupId(self.next.fetch_add(1, Ordering::Relaxed));
        self.lock().push(Group {
            id,
            strategy,
            members: Vec::new(),
        });
        id
    }

    /// Adds `member` to the group `id`, after the members that joined before it.
    pub(crate) fn join(&self, id: GroupId, member: Arc<PluginSlot>) {
        let mut groups = self.lock();
        if let Some(group) = groups.iter_mut().find(|group| group.id == id) {
            group.members.push(member);
        }
        tell_members(&groups);
    }

    /// Forgets a detached engine's group.
    pub(crate) fn unregister(&self, id: GroupId) {
        let mut groups = self.lock();
        if let Some(at) = groups.iter().position(|group| group.id == id) {
            // Its members are told again below when another group still holds them.
            for member in &groups.remove(at).members {
                member.set_restart_group(None);
            }
        }
        tell_members(&groups);
    }

    /// Forgets every group (shutdown).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// True when some attached engine uses the instance `name`.
    pub(crate) fn uses(&self, name: &str) -> bool {
        self.lock()
            .iter()
            .any(|group| group.members.iter().any(|m| m.name() == name))
    }

    /// The instances to restart with `name` (itself included), in config order, under the
    /// strategy of the oldest group that holds it. Only `name` when no group holds it.
    pub(crate) fn restart_set(&self, name: &str) -> RestartSet {
        let groups = self.lock();
        let governing = groups
            .iter()
            .find(|group| group.members.iter().any(|m| m.name() == name));
        let Some(group) = governing else {
            return RestartSet::Alone;
        };
        let members = &group.members;
        match group.strategy {
            RestartStrategy::OneForOne => RestartSet::Alone,
            RestartStrategy::OneForAll => RestartSet::These(members.clone()),
            RestartStrategy::RestForOne => {
                let from = members.iter().position(|m| m.name() == name).unwrap_or(0);
                RestartSet::These(members[from..].to_vec())
            }
        }
    }
}

/// Tells each member of `groups` which group governs it (the oldest holding it), for status.
fn tell_members(groups: &[Group]) {
    let mut told = std::collections::HashSet::new();
    for group in groups {
        let status = RestartGroupStatus {
            strategy: group.strategy,
            members: group.members.iter().map(|m| m.name().to_owned()).collect(),
        };
        for member in &group.members {
            if told.insert(member.name().to_owned()) {
                member.set_restart_group(Some(status.clone()));
            }
        }
    }
}

/// Which instances restart together.
pub(crate) enum RestartSet {
    /// The crashed instance alone.
    Alone,
    /// These, in config order (the crashed one among them).
    These(Vec<Arc<PluginSlot>>),
}
