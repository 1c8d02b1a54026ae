//! The live config and the one the generation before it ran, so that the admin page can show
//! what the last activation changed.
//!
//! The live engine holds only its own config, and a replaced engine is gone once it retires;
//! so an observer of the engine's Supervisor (like `last_good`'s) keeps the two: whenever the
//! live generation changes, the config it had becomes the previous one. Both are `Arc`s of
//! configs the engines already hold: nothing is copied.

use std::sync::{Arc, Mutex, Weak};

use swapvisor_actors::{ReloadObserver, ReloadRecord, Slot};

use crate::config::Config;
use crate::engine::Engine;

/// A config with the generation that ran it.
pub(super) type Generation = (u64, Arc<Config>);

/// The live config and the previous one, kept as the generation changes; then tells the
/// observer it wraps.
pub(super) struct ConfigHistory {
    slot: Weak<Slot<Engine>>,
    kept: Mutex<Kept>,
    then: Option<Arc<dyn ReloadObserver>>,
}

#[derive(Default)]
struct Kept {
    live: Option<Generation>,
    previous: Option<Generation>,
}

impl ConfigHistory {
    pub(super) fn new(slot: &Arc<Slot<Engine>>, then: Option<Arc<dyn ReloadObserver>>) -> Self {
        Self {
            slot: Arc::downgrade(slot),
            kept: Mutex::default(),
            then,
        }
    }

    /// The config the generation before the live one ran, if there was one.
    pub(super) fn previous(&self) -> Option<Generation> {
        self.lock().previous.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Two slots replaced whole: a poisoned lock still holds them.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn follow(&self) {
        let Some((generation, engine)) = live(&self.slot) else {
            return;
        };
        let mut kept = self.lock();
        if kept
            .live
            .as_ref()
            .is_some_and(|(live, _)| *live == generation)
        {
            return;
        }
        let live = kept.live.replace((generation, engine.config().clone()));
        if live.is_some() {
            kept.previous = live;
        }
    }
}

/// The live engine and its generation, while the runtime has one: what the observers of the
/// engine's Supervisor (this one, `last_good`'s) look at after each outcome.
pub(super) fn live(slot: &Weak<Slot<Engine>>) -> Option<(u64, Arc<Engine>)> {
    let slot = slot.upgrade()?;
    Some((slot.generation()?, slot.current()?))
}

impl ReloadObserver for ConfigHistory {
    fn reload_finished(&self, record: &ReloadRecord) {
        self.follow();
        if let Some(then) = &self.then {
            then.reload_finished(record);
        }
    }
}
