//! Saving the last good config: after every reload that changes what the live engine runs,
//! its config goes to the state folder ([`LastGood`]), before the reload's caller is answered.
//!
//! It is an observer of the engine's Supervisor, which calls it once per outcome, in order,
//! after the swap it reports: so "activated" is never answered for a config a crash could
//! then forget. The write is small and synchronous; a failing one is logged, and never fails
//! the reload it follows (the engine serves either way).

use std::sync::{Arc, Mutex, Weak};

use swapvisor_actors::{ReloadObserver, ReloadRecord, Slot};

use crate::engine::Engine;
use crate::state::{LastGood, StateDir};

/// Writes the live config to the state folder whenever its generation changes, then tells the
/// observer it wraps.
pub(super) struct SaveLastGood {
    dir: StateDir,
    slot: Weak<Slot<Engine>>,
    saved: Mutex<Option<u64>>,
    then: Option<Arc<dyn ReloadObserver>>,
}

impl SaveLastGood {
    pub(super) fn new(
        dir: StateDir,
        slot: &Arc<Slot<Engine>>,
        then: Option<Arc<dyn ReloadObserver>>,
    ) -> Self {
        Self {
            dir,
            slot: Arc::downgrade(slot),
            saved: Mutex::new(None),
            then,
        }
    }

    fn save(&self, record: &ReloadRecord) {
        let Some((generation, engine)) = super::configs::live(&self.slot) else {
            return;
        };
        // Only this observer writes `saved`; a poisoned lock still holds a generation.
        let mut saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        if *saved == Some(generation) {
            return;
        }
        let config = engine.config().to_document();
        let last_good = LastGood {
            generation,
            hash: engine.config_hash().to_owned(),
            origin: serde_json::to_value(record.origin)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            saved_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            config,
        };
        match last_good.save(&self.dir) {
            Ok(()) => {
                *saved = Some(generation);
                tracing::debug!(generation, path = %self.dir.path().join(LastGood::FILE).display(), "saved the last good config");
            }
            Err(error) => {
                tracing::error!(%error, generation, "cannot save the last good config; a restart with --resume would start from an older one")
            }
        }
    }
}

impl ReloadObserver for SaveLastGood {
    fn reload_finished(&self, record: &ReloadRecord) {
        self.save(record);
        if let Some(then) = &self.then {
            then.reload_finished(record);
        }
    }
}
