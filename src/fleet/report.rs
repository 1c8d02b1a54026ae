//! What a fleet reload, a fleet status and a catch-up answer: the reports the admin API
//! serves as JSON.

use serde::Serialize;

use super::messages::{CommitAnswer, NodeStatus, PrepareAnswer, PrepareOutcome};

/// What one node did in a fleet reload.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    /// The node's name.
    pub node: String,
    /// Its answer to the prepare.
    pub prepare: PrepareVerdict,
    /// Its commit, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitAnswer>,
    /// Its return to the previous config, after another node's commit failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<CommitAnswer>,
}

/// How a node's prepare went, as the coordinator saw it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PrepareStatus {
    /// It built the config and holds it.
    Prepared,
    /// The config did not build there.
    BuildFailed,
    /// Another coordinator's reload holds it.
    Busy,
    /// It did not answer in time, left, or answered what could not be read.
    Unreachable,
}

/// A node's prepare, as the answer shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrepareVerdict {
    /// Whether it prepared.
    pub status: PrepareStatus,
    /// The fingerprint it built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Why it did not prepare.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PrepareVerdict {
    /// The verdict for a node's answer.
    pub(super) fn of(answer: &PrepareAnswer) -> Self {
        match &answer.outcome {
            PrepareOutcome::Prepared { fingerprint, .. } => PrepareVerdict {
                status: PrepareStatus::Prepared,
                fingerprint: Some(fingerprint.clone()),
                error: None,
            },
            PrepareOutcome::BuildFailed { error } => PrepareVerdict {
                status: PrepareStatus::BuildFailed,
                fingerprint: None,
                error: Some(error.clone()),
            },
            PrepareOutcome::Busy { coordinator } => PrepareVerdict {
                status: PrepareStatus::Busy,
                fingerprint: None,
                error: Some(format!(
                    "another fleet reload (coordinated by {coordinator}) holds this node"
                )),
            },
        }
    }

    /// The verdict for a node that gave no answer that could be read.
    pub(super) fn unreachable(error: String) -> Self {
        PrepareVerdict {
            status: PrepareStatus::Unreachable,
            fingerprint: None,
            error: Some(error),
        }
    }
}

/// How a fleet reload ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FleetOutcome {
    /// Every node committed.
    Activated,
    /// A node did not prepare: nothing changed anywhere.
    Aborted,
    /// A node failed to start: every node is back on the previous config.
    RolledBack,
    /// A node could not be returned to the previous config, or left during the commit.
    Diverged,
}

/// The answer to a fleet reload.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FleetReloadAnswer {
    /// How it ended.
    pub status: FleetOutcome,
    /// The fleet generation now.
    pub fleet_generation: u64,
    /// Every node, in name order.
    pub nodes: Vec<NodeReport>,
}

/// Every node of the fleet, and whether they agree.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FleetStatus {
    /// True when every node runs the same fingerprint at the same fleet generation.
    pub agreed: bool,
    /// Every node that answered, in name order.
    pub nodes: Vec<NodeStatus>,
}

/// What a node did when it looked at the fleet on joining.
#[derive(Debug, Clone, PartialEq)]
pub enum CatchUp {
    /// No other node was visible.
    Alone,
    /// It was on the fleet's generation already.
    Current,
    /// It reloaded to the config of a node ahead of it.
    Reloaded {
        /// The node it took the config from.
        from: String,
        /// The fleet generation it is on now.
        fleet_generation: u64,
        /// Its reload.
        answer: CommitAnswer,
    },
    /// It is behind, and could not catch up: reported as diverged in fleet status.
    Failed(String),
}
