//! The link between plugin actors and the restarter: the restarter's messages, and the index
//! through which it finds the instance of an actor that failed.
//!
//! It sits between the instance's core and the actor: a plugin actor reports its exit here
//! ([`RestartMsg::Exited`]), the restarter ([`super::restart`]) answers, and neither has to
//! name the other.
//!
//! | message | sent by | reply |
//! |---|---|---|
//! | [`RestartMsg::Exited`] | a plugin actor exiting on its own (a crash, or a normal exit) | none |
//! | [`RestartMsg::Restart`] | the restarter's own backoff timer | none |

use std::sync::{Arc, Weak};

use dashmap::DashMap;
use ractor::ActorRef;

use super::core::InstanceCore;

/// Messages to the restarter.
#[derive(Debug)]
pub(crate) enum RestartMsg {
    /// From a plugin actor that is exiting on its own (a crash, or a normal exit).
    Exited {
        instance: Weak<InstanceCore>,
        abnormal: bool,
        reason: String,
    },
    /// From a timer: restart these instances now, in this order. They are the exact instances
    /// the decision was about: one swapped out or stopped meanwhile is left alone.
    Restart { instances: Vec<Weak<InstanceCore>> },
}

// Local only: ractor's `cluster` feature (on with `fleet`) drops the blanket `Message` impl.
#[cfg(feature = "fleet")]
impl ractor::Message for RestartMsg {}

/// Every running plugin actor of a runtime, so that the restarter can find the instance of an
/// actor that failed outside a call.
#[derive(Debug, Default)]
pub(crate) struct ActorIndex(DashMap<ractor::ActorId, Weak<InstanceCore>>);

impl ActorIndex {
    /// Records that `id` runs the plugin of `instance`.
    pub(crate) fn insert(&self, id: ractor::ActorId, instance: Weak<InstanceCore>) {
        self.0.insert(id, instance);
    }

    /// The instance of the actor `id`, forgetting the actor.
    pub(crate) fn take(&self, id: &ractor::ActorId) -> Option<Weak<InstanceCore>> {
        self.0.remove(id).map(|(_, instance)| instance)
    }
}

/// The restarter every actor of a runtime's plugins is linked to, and the index it uses.
#[derive(Debug, Clone)]
pub(crate) struct RestartLink {
    pub(crate) restarter: ActorRef<RestartMsg>,
    pub(crate) actors: Arc<ActorIndex>,
}
