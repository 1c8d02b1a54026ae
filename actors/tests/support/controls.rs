//! The controls a test holds over the fake units of a slot: a journal of what they did,
//! starts it refuses, and [`Gate`]s that hold builds or starts until the test opens them.

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::{Semaphore, watch};

use super::PATIENCE;

/// A gate steps wait at, and a count of how many have arrived.
pub(crate) struct Gate {
    permits: Semaphore,
    arrived: watch::Sender<usize>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            permits: Semaphore::new(0),
            arrived: watch::channel(0).0,
        }
    }
}

impl Gate {
    pub(super) async fn pass(&self) {
        self.arrived.send_modify(|n| *n += 1);
        // The semaphore is never closed.
        self.permits.acquire().await.expect("open gate").forget();
    }

    /// Waits until `count` steps have arrived at the gate in all.
    pub(crate) async fn arrived(&self, count: usize) {
        let mut arrived = self.arrived.subscribe();
        tokio::time::timeout(PATIENCE, arrived.wait_for(|n| *n >= count))
            .await
            .expect("a step arrives at the gate")
            .expect("the gate is alive");
    }

    /// Lets one waiting (or the next) step through.
    pub(crate) fn open_one(&self) {
        self.permits.add_permits(1);
    }
}

/// The shared context of every fake unit of a slot.
pub(crate) struct Controls {
    journal: watch::Sender<Vec<String>>,
    refused: Mutex<HashSet<String>>,
    pub build_gate: Gate,
    pub start_gate: Gate,
}

impl Default for Controls {
    fn default() -> Self {
        Self {
            journal: watch::channel(Vec::new()).0,
            refused: Mutex::default(),
            build_gate: Gate::default(),
            start_gate: Gate::default(),
        }
    }
}

impl Controls {
    /// Everything the units did, in order: `build v1`, `start v1`, `stop v1`, `start v2
    /// failed`, ...
    pub(crate) fn journal(&self) -> Vec<String> {
        self.journal.borrow().clone()
    }

    /// Waits until the journal holds `entry`.
    pub(crate) async fn wait_for(&self, entry: &str) {
        let mut journal = self.journal.subscribe();
        let found = tokio::time::timeout(
            PATIENCE,
            journal.wait_for(|entries| entries.iter().any(|e| e == entry)),
        )
        .await;
        assert!(
            matches!(found, Ok(Ok(_))),
            "waited {PATIENCE:?} for {entry:?}; journal: {:?}",
            self.journal()
        );
    }

    /// The journal entries that start with `prefix` (`"stop "`, say).
    pub(crate) fn entries(&self, prefix: &str) -> Vec<String> {
        self.journal()
            .into_iter()
            .filter(|e| e.starts_with(prefix))
            .collect()
    }

    pub(super) fn note(&self, entry: String) {
        self.journal.send_modify(|journal| journal.push(entry));
    }

    /// From now on, every start of `version` fails (`false`: works again).
    pub(crate) fn refuse_starts(&self, version: &str, refuse: bool) {
        let mut refused = self.refused.lock().unwrap();
        if refuse {
            refused.insert(version.to_owned());
        } else {
            refused.remove(version);
        }
    }

    pub(super) fn refuses(&self, version: &str) -> bool {
        self.refused.lock().unwrap().contains(version)
    }
}
