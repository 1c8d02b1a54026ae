//! The lineage of a slot: which generation is live, and what to fall back to.
//!
//! Every activation moves it on: the generation counts up, the activated spec becomes the
//! last-known-good one (what a restore rebuilds), the one it replaced becomes the revert target
//! while the new unit's probation window is open. A restore keeps the generation; a revert
//! counts one up but leaves nothing to revert to and opens no window of its own. This is what
//! a hibernating Supervisor hands on in its [`Resume`](super::Resume).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::outcome::Origin;
use crate::unit::{SwapSettings, Unit};

/// The live generation, the specs to fall back to, and the probation window.
pub(super) struct Lineage<U: Unit> {
    /// How many reloads have activated (0 before the first).
    generation: u64,
    /// The live spec: what a restore rebuilds.
    known_good: Option<Arc<U::Spec>>,
    /// The spec that was live before the current one (the revert target).
    previous_good: Option<Arc<U::Spec>>,
    /// Until when the current generation may be reverted by an escalation.
    probation_until: Option<Instant>,
    fingerprint: Option<String>,
    /// The live unit's [`Unit::identity`]: a reload to a unit with the same one is `Unchanged`.
    live_identity: Option<String>,
    /// The live unit's build timeout, which the next build runs under.
    build_timeout: Duration,
}

/// What a request activated, for [`Lineage::activated`].
pub(super) struct Activation<U: Unit> {
    pub(super) origin: Origin,
    pub(super) spec: Arc<U::Spec>,
    pub(super) settings: SwapSettings,
    pub(super) fingerprint: Option<String>,
    pub(super) identity: Option<String>,
}

impl<U: Unit> Lineage<U> {
    /// A slot that has activated nothing; builds run under `build_timeout`.
    pub(super) fn fresh(build_timeout: Duration) -> Self {
        Self {
            generation: 0,
            known_good: None,
            previous_good: None,
            probation_until: None,
            fingerprint: None,
            live_identity: None,
            build_timeout,
        }
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// The generation a swap for `origin` publishes under: a restore keeps the current one.
    pub(super) fn next_generation(&self, origin: Origin) -> u64 {
        if origin == Origin::Restore {
            self.generation
        } else {
            self.generation + 1
        }
    }

    pub(super) fn fingerprint(&self) -> Option<String> {
        self.fingerprint.clone()
    }

    pub(super) fn build_timeout(&self) -> Duration {
        self.build_timeout
    }

    /// The last-known-good spec, if anything has activated.
    pub(super) fn known_good(&self) -> Option<Arc<U::Spec>> {
        self.known_good.clone()
    }

    /// True when a unit with `identity` serves exactly what the live one does.
    pub(super) fn is_live(&self, identity: Option<&str>) -> bool {
        identity.is_some() && identity == self.live_identity.as_deref()
    }

    /// True within the probation window of the latest activation.
    pub(super) fn on_probation(&self) -> bool {
        self.probation_until
            .is_some_and(|until| Instant::now() <= until)
    }

    /// The spec to revert to if the window is open, closing it: one escalation reverts once.
    pub(super) fn revert_target(&mut self) -> Option<Arc<U::Spec>> {
        let spec = self.previous_good.clone().filter(|_| self.on_probation())?;
        self.probation_until = None;
        Some(spec)
    }

    /// Moves on past an activation, and answers the generation now live.
    pub(super) fn activated(&mut self, activation: Activation<U>) -> u64 {
        match activation.origin {
            // The reverted-from spec is not a revert target, and a revert starts no
            // probation of its own.
            Origin::Revert => {
                self.previous_good = None;
                self.probation_until = None;
            }
            Origin::Restore => {}
            _ => {
                self.previous_good = self.known_good.take();
                self.probation_until = activation.settings.probation.map(crate::guard::deadline_in);
            }
        }
        self.known_good = Some(activation.spec);
        self.fingerprint = activation.fingerprint;
        self.live_identity = activation.identity;
        self.build_timeout = activation.settings.build_timeout;
        if activation.origin != Origin::Restore {
            self.generation += 1;
        }
        self.generation
    }

    /// Hands the lineage on to a later Supervisor. The live identity is not handed on: the
    /// next Supervisor swaps even an identical unit in once.
    pub(super) fn hand_on(&mut self) -> Self {
        Self {
            generation: self.generation,
            known_good: self.known_good.take(),
            previous_good: self.previous_good.take(),
            probation_until: self.probation_until.take(),
            fingerprint: self.fingerprint.take(),
            live_identity: None,
            build_timeout: self.build_timeout,
        }
    }
}

impl<U: Unit> fmt::Debug for Lineage<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Specs need not be `Debug`: only whether there is one is shown.
        f.debug_struct("Lineage")
            .field("generation", &self.generation)
            .field("known_good", &self.known_good.is_some())
            .field("previous_good", &self.previous_good.is_some())
            .field("probation_until", &self.probation_until)
            .field("fingerprint", &self.fingerprint)
            .field("live_identity", &self.live_identity)
            .field("build_timeout", &self.build_timeout)
            .finish()
    }
}

impl<U: Unit> fmt::Debug for Activation<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Activation")
            .field("origin", &self.origin)
            .field("settings", &self.settings)
            .field("fingerprint", &self.fingerprint)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}
