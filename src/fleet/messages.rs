//! What a coordinator and the nodes' agents say to each other, typed.
//!
//! Every message is an RPC from a coordinator (a node running [`Fleet::reload`],
//! [`Fleet::status`] or [`Fleet::catch_up`]) to one node's agent, answered on its reply port.
//! Each argument and answer is one named value in a [`Wire`] envelope (see [`super::wire`]),
//! so a node that cannot read a message says so in its log and in its answer. The answers are
//! public: they are what [`FleetReloadAnswer`](super::FleetReloadAnswer) and
//! [`FleetStatus`](super::FleetStatus) report.
//!
//! [`Fleet::reload`]: super::Fleet::reload
//! [`Fleet::status`]: super::Fleet::status
//! [`Fleet::catch_up`]: super::Fleet::catch_up

use ractor::RpcReplyPort;
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use swapvisor_actors::ReloadOutcome;

use super::wire::Wire;

/// A message to a node's agent. ractor_cluster sends each variant by name, each field as the
/// bytes of its [`Wire`] envelope.
#[derive(Debug, RactorClusterMessage)]
pub(super) enum AgentMsg {
    /// From a coordinator's fleet reload, first phase: build the config and hold it for a
    /// commit. Reply: a [`PrepareAnswer`].
    #[rpc]
    Prepare {
        request: Wire<PrepareRequest>,
        reply: RpcReplyPort<Wire<PrepareAnswer>>,
    },
    /// From a coordinator whose every node prepared: activate the held config. Reply: a
    /// [`CommitAnswer`].
    #[rpc]
    Commit {
        request: Wire<CommitOrder>,
        reply: RpcReplyPort<Wire<CommitAnswer>>,
    },
    /// From a coordinator whose reload some node did not prepare: drop the held config.
    /// Reply: an [`AbortAnswer`].
    #[rpc]
    Abort {
        request: Wire<AbortOrder>,
        reply: RpcReplyPort<Wire<AbortAnswer>>,
    },
    /// From a coordinator returning this node to its previous config after another node's
    /// commit failed, or from this node's own catch-up: reload to the config as an ordinary
    /// reload. Reply: a [`CommitAnswer`].
    #[rpc]
    Reload {
        request: Wire<ReloadOrder>,
        reply: RpcReplyPort<Wire<CommitAnswer>>,
    },
    /// From any node's fleet status. Reply: this node's [`NodeStatus`].
    #[rpc]
    Status {
        reply: RpcReplyPort<Wire<NodeStatus>>,
    },
    /// From a node catching up. Reply: the [`CurrentConfig`] this node runs.
    #[rpc]
    Current {
        reply: RpcReplyPort<Wire<CurrentConfig>>,
    },
}

/// [`AgentMsg::Prepare`]'s argument.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct PrepareRequest {
    /// The config's source text (YAML or JSON).
    pub(super) config: String,
    /// How long to hold the built config for its commit, in milliseconds.
    pub(super) hold_ms: u64,
    /// The coordinating node's name: while it holds this node, other coordinators are busy.
    pub(super) coordinator: String,
}

/// [`AgentMsg::Commit`]'s argument.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct CommitOrder {
    /// The ticket of the prepare.
    pub(super) ticket: u64,
    /// The fleet generation the commit makes.
    pub(super) fleet_generation: u64,
}

/// [`AgentMsg::Abort`]'s argument.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct AbortOrder {
    /// The ticket of the prepare.
    pub(super) ticket: u64,
}

/// [`AgentMsg::Reload`]'s argument.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReloadOrder {
    /// The config's source text (a JSON document, as [`CurrentConfig`] and a prepare's
    /// `previous` give it).
    pub(super) config: String,
    /// The fleet generation the node is on once the reload took effect.
    pub(super) fleet_generation: u64,
}

/// The answer to [`AgentMsg::Abort`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct AbortAnswer {
    /// True when the ticket was still held (and is dropped now).
    pub(super) held: bool,
}

/// The config a node runs, for a node catching up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CurrentConfig {
    /// The fleet generation it runs.
    pub fleet_generation: u64,
    /// The config, as a document (`${VAR}` unexpanded).
    pub config: Option<Value>,
}

/// A node's answer to a prepare.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrepareAnswer {
    /// The node's name.
    pub node: String,
    /// The fleet generation this node is on.
    pub fleet_generation: u64,
    /// Whether it prepared.
    pub outcome: PrepareOutcome,
}

/// Whether a node prepared.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PrepareOutcome {
    /// The config built; the node holds it for the commit.
    Prepared {
        /// The ticket to commit or abort.
        ticket: u64,
        /// The built config's fingerprint.
        fingerprint: String,
        /// The config this node runs now, as a document (`${VAR}` unexpanded): what a fleet
        /// rollback returns it to. `None` when nothing serves.
        previous: Option<Value>,
    },
    /// The config did not build (or the node's runtime is not there to build it).
    BuildFailed {
        /// Why.
        error: String,
    },
    /// Another coordinator's fleet reload holds this node.
    Busy {
        /// The node coordinating it.
        coordinator: String,
    },
}

/// The outcome of a reload on a node, as the fleet reports it: the reload's own outcome
/// ([`ReloadOutcome::name`]), or why there was none. Serialized by that name.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NodeOutcome {
    /// [`ReloadOutcome::Activated`].
    Activated,
    /// [`ReloadOutcome::Rejected`] (also: a commit whose ticket is no longer held).
    Rejected,
    /// [`ReloadOutcome::RolledBack`].
    RolledBack,
    /// [`ReloadOutcome::Degraded`].
    Degraded,
    /// [`ReloadOutcome::Superseded`].
    Superseded,
    /// [`ReloadOutcome::Reverted`].
    Reverted,
    /// [`ReloadOutcome::Restored`].
    Restored,
    /// [`ReloadOutcome::Conflict`].
    Conflict,
    /// [`ReloadOutcome::Unchanged`].
    Unchanged,
    /// The node's runtime has shut down.
    Unavailable,
    /// The node did not answer in time, left the fleet, or answered what could not be read.
    Unreachable,
}

impl NodeOutcome {
    /// The name it is reported under: `activated`, `rolled_back`, `unreachable`, ...
    pub fn name(self) -> &'static str {
        match self {
            NodeOutcome::Activated => "activated",
            NodeOutcome::Rejected => "rejected",
            NodeOutcome::RolledBack => "rolled_back",
            NodeOutcome::Degraded => "degraded",
            NodeOutcome::Superseded => "superseded",
            NodeOutcome::Reverted => "reverted",
            NodeOutcome::Restored => "restored",
            NodeOutcome::Conflict => "conflict",
            NodeOutcome::Unchanged => "unchanged",
            NodeOutcome::Unavailable => "unavailable",
            NodeOutcome::Unreachable => "unreachable",
        }
    }
}

impl std::fmt::Display for NodeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<&ReloadOutcome> for NodeOutcome {
    fn from(outcome: &ReloadOutcome) -> Self {
        match outcome {
            ReloadOutcome::Activated { .. } => NodeOutcome::Activated,
            ReloadOutcome::Rejected { .. } => NodeOutcome::Rejected,
            ReloadOutcome::RolledBack { .. } => NodeOutcome::RolledBack,
            ReloadOutcome::Degraded { .. } => NodeOutcome::Degraded,
            ReloadOutcome::Superseded => NodeOutcome::Superseded,
            ReloadOutcome::Reverted { .. } => NodeOutcome::Reverted,
            ReloadOutcome::Restored { .. } => NodeOutcome::Restored,
            ReloadOutcome::Conflict { .. } => NodeOutcome::Conflict,
            ReloadOutcome::Unchanged { .. } => NodeOutcome::Unchanged,
        }
    }
}

/// A node's answer to a commit or a reload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommitAnswer {
    /// The node's name.
    pub node: String,
    /// The reload's outcome.
    pub outcome: NodeOutcome,
    /// The node's generation after it.
    pub generation: u64,
    /// The error, for outcomes that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CommitAnswer {
    /// True when the node runs the config afterwards: it activated, or already ran it.
    pub fn took_effect(&self) -> bool {
        matches!(
            self.outcome,
            NodeOutcome::Activated | NodeOutcome::Unchanged
        )
    }

    /// The answer for a node that gave none: `unreachable`, with why.
    pub(super) fn unreachable(node: &str, error: String) -> Self {
        CommitAnswer {
            node: node.to_owned(),
            outcome: NodeOutcome::Unreachable,
            generation: 0,
            error: Some(error),
        }
    }
}

/// One node as the fleet sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// The node's name.
    pub node: String,
    /// Its runtime's generation.
    pub generation: u64,
    /// The fleet generation it last committed.
    pub fleet_generation: u64,
    /// Its live config's fingerprint.
    pub fingerprint: Option<String>,
    /// Its last reload's outcome.
    pub last_outcome: Option<NodeOutcome>,
}
