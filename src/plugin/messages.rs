//! What a plugin actor is told: its messages, in a file of their own so that the instance's
//! core (which sends them) and the actor (which answers them) both build on it.
//!
//! | message | sent by | reply |
//! |---|---|---|
//! | [`PluginMsg::Call`] | callers, through the instance | the plugin's answer |
//! | [`PluginMsg::Export`] | the swap, after the instance drained | the state to hand over |
//! | [`PluginMsg::Migrate`] | the swap, before the new instance is published | whether it took the state |
//! | [`PluginMsg::Offer`] | the swap (a predecessor with no state of its own), an upgrade | which checkpoint it took, or why none |
//! | [`PluginMsg::Stop`] | the instance, at stop | once the plugin's `stop` returned; then it exits |
//! | [`PluginMsg::Closed`] | its own watch on [`DirectCalls`](crate::plugin::DirectCalls) | none: the instance has failed |

use ractor::RpcReplyPort;
use serde_json::Value;

use super::checkpoint::{Checkpoint, ImportCause};
use crate::extension::plugin::{PluginCall, PluginError};

/// Messages to a plugin actor. Sent by its instance (and `Closed` by the actor's own watch).
#[derive(Debug)]
pub(crate) enum PluginMsg {
    /// A call; answered with the plugin's result.
    Call(PluginCall, RpcReplyPort<Result<Value, PluginError>>),
    /// Hand over state by the deadline; answered with it, or why not. An export cut short
    /// at the deadline is dropped and the actor serves on, its state where it was.
    Export(
        tokio::time::Instant,
        RpcReplyPort<Result<Option<Value>, PluginError>>,
    ),
    /// Take over a predecessor's state.
    Migrate(Value, RpcReplyPort<Result<(), PluginError>>),
    /// Offer these checkpoints to `migrate`, best first, until one is taken by the deadline;
    /// answered with its sequence number, or every refusal. A refusal is not a failure: the
    /// plugin serves on as it was.
    Offer {
        candidates: Vec<Checkpoint>,
        cause: ImportCause,
        deadline: tokio::time::Instant,
        reply: RpcReplyPort<Result<u64, String>>,
    },
    /// Stop gracefully; answered once the plugin's `stop` returned.
    Stop(RpcReplyPort<Result<(), PluginError>>),
    /// The plugin's direct calls closed (its process exited): it has failed.
    Closed(String),
}

// Local only: ractor's `cluster` feature (on with `fleet`) drops the blanket `Message` impl.
#[cfg(feature = "fleet")]
impl ractor::Message for PluginMsg {}
