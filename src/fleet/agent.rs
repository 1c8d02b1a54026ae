//! The fleet agent: one actor per node, joined to the process group every node's agent is in,
//! through which a coordinator asks this node's runtime to prepare, commit or abort.
//!
//! Its messages cross the network, so their arguments and answers are strings and numbers
//! (JSON where there is structure): ractor_cluster serializes each variant by name.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::CommitRequest;
use crate::engine::EngineSpec;
use crate::runtime::Runtime;

/// The process group every node's agent joins.
pub(super) const GROUP: &str = "swapvisor.fleet";

/// What a coordinator asks of a node's agent. Each is an RPC; answers are JSON.
#[derive(RactorClusterMessage)]
pub enum AgentMsg {
    /// Build the config (source text) and hold it for a commit for the given milliseconds,
    /// on behalf of the coordinator named; answered with a [`PrepareAnswer`].
    #[rpc]
    Prepare(String, u64, String, RpcReplyPort<String>),
    /// Commit the ticket as the given fleet generation; answered with a [`CommitAnswer`].
    #[rpc]
    Commit(u64, u64, RpcReplyPort<String>),
    /// Drop the ticket; answered true when it was held.
    #[rpc]
    Abort(u64, RpcReplyPort<bool>),
    /// Reload to the config (source text) as the given fleet generation: a fleet rollback,
    /// or a node catching up; answered with a [`CommitAnswer`].
    #[rpc]
    Reload(String, u64, RpcReplyPort<String>),
    /// This node's [`NodeStatus`].
    #[rpc]
    Status(RpcReplyPort<String>),
    /// The config this node runs and its fleet generation, as a [`CurrentConfig`]: what a
    /// node that missed a commit catches up to.
    #[rpc]
    Current(RpcReplyPort<String>),
}

/// The config a node runs, for a node catching up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CurrentConfig {
    /// The fleet generation it runs.
    pub fleet_generation: u64,
    /// The config, as a document (`${VAR}` unexpanded).
    pub config: Option<serde_json::Value>,
}

/// A node's answer to a prepare.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrepareAnswer {
    /// The node's name.
    pub node: String,
    /// `prepared`, `build_failed` or `busy` (another coordinator's reload holds this node).
    pub status: String,
    /// The ticket to commit or abort, when prepared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<u64>,
    /// The built config's fingerprint, when prepared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Why not, otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The config this node runs now, as a document (`${VAR}` unexpanded): what a fleet
    /// rollback returns it to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<serde_json::Value>,
    /// The fleet generation this node is on.
    pub fleet_generation: u64,
}

/// A node's answer to a commit or a reload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommitAnswer {
    /// The node's name.
    pub node: String,
    /// The reload's outcome: `activated`, `unchanged`, `rolled_back`, `rejected`, ...
    pub outcome: String,
    /// The node's generation after it.
    pub generation: u64,
    /// The error, for outcomes that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CommitAnswer {
    /// True when the node runs the config afterwards: it activated, or already ran it.
    pub fn took_effect(&self) -> bool {
        matches!(self.outcome.as_str(), "activated" | "unchanged")
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
    pub last_outcome: Option<String>,
}

/// The agent's arguments.
pub struct AgentArgs {
    pub(super) name: String,
    pub(super) runtime: Arc<Runtime>,
    /// The fleet generation this node is on, shared with [`super::Fleet`] for status.
    pub(super) fleet_generation: Arc<AtomicU64>,
}

/// The agent's state: the runtime it speaks for, and the prepare it holds for a coordinator.
pub struct AgentState {
    name: String,
    runtime: Arc<Runtime>,
    /// The ticket held for a coordinator, and until when: while it is held, another
    /// coordinator's prepare is refused, so one fleet reload runs at a time.
    held: Option<(u64, String, Instant)>,
    fleet_generation: Arc<AtomicU64>,
}

/// The fleet agent actor.
pub struct Agent;

impl Actor for Agent {
    type Msg = AgentMsg;
    type State = AgentState;
    type Arguments = AgentArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AgentMsg>,
        args: AgentArgs,
    ) -> Result<AgentState, ActorProcessingErr> {
        ractor::pg::join(GROUP.to_owned(), vec![myself.get_cell()]);
        Ok(AgentState {
            name: args.name,
            runtime: args.runtime,
            held: None,
            fleet_generation: args.fleet_generation,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<AgentMsg>,
        message: AgentMsg,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            AgentMsg::Prepare(source, hold_ms, coordinator, reply) => {
                let answer = state.prepare(source, hold_ms, coordinator).await;
                let _ = reply.send(to_json(&answer));
            }
            AgentMsg::Commit(ticket, fleet_generation, reply) => {
                state.release(ticket);
                let record = state.runtime.commit(CommitRequest::new(ticket)).await;
                let answer = state.answer(record, fleet_generation);
                let _ = reply.send(to_json(&answer));
            }
            AgentMsg::Abort(ticket, reply) => {
                state.release(ticket);
                let _ = reply.send(state.runtime.abort(ticket).await.unwrap_or(false));
            }
            AgentMsg::Reload(source, fleet_generation, reply) => {
                let request = crate::Reload::new(EngineSpec::Source(source.into_bytes().into()))
                    .from(crate::Origin::Fleet);
                let record = state.runtime.reload(request).await;
                let answer = state.answer(record, fleet_generation);
                let _ = reply.send(to_json(&answer));
            }
            AgentMsg::Status(reply) => {
                let _ = reply.send(to_json(&state.status().await));
            }
            AgentMsg::Current(reply) => {
                let current = CurrentConfig {
                    fleet_generation: state.fleet_generation.load(Ordering::SeqCst),
                    config: state
                        .runtime
                        .live_config()
                        .map(|(_, config)| config.to_document()),
                };
                let _ = reply.send(to_json(&current));
            }
        }
        Ok(())
    }
}

impl AgentState {
    /// Frees this node for other coordinators once `ticket` is committed or aborted.
    fn release(&mut self, ticket: u64) {
        if self.held.as_ref().is_some_and(|(held, ..)| *held == ticket) {
            self.held = None;
        }
    }

    async fn prepare(
        &mut self,
        source: String,
        hold_ms: u64,
        coordinator: String,
    ) -> PrepareAnswer {
        let mut answer = PrepareAnswer {
            node: self.name.clone(),
            status: "build_failed".into(),
            ticket: None,
            fingerprint: None,
            error: None,
            previous: None,
            fleet_generation: self.fleet_generation.load(Ordering::SeqCst),
        };
        if let Some((_, holder, until)) = &self.held
            && *until > Instant::now()
            && *holder != coordinator
        {
            answer.status = "busy".into();
            answer.error = Some(format!(
                "another fleet reload (coordinated by {holder}) holds this node"
            ));
            return answer;
        }
        let hold_for = Duration::from_millis(hold_ms);
        let spec = EngineSpec::Source(source.into_bytes().into());
        match self.runtime.prepare(spec, hold_for).await {
            Ok(Ok(prepared)) => {
                answer.status = "prepared".into();
                answer.ticket = Some(prepared.ticket);
                answer.fingerprint = Some(prepared.fingerprint);
                answer.previous = self
                    .runtime
                    .live_config()
                    .map(|(_, config)| config.to_document());
                self.held = Some((prepared.ticket, coordinator, Instant::now() + hold_for));
            }
            Ok(Err(failure)) => answer.error = Some(failure.message),
            Err(error) => answer.error = Some(error.to_string()),
        }
        answer
    }

    fn answer(
        &mut self,
        record: Result<crate::ReloadRecord, crate::RuntimeError>,
        fleet_generation: u64,
    ) -> CommitAnswer {
        match record {
            Ok(record) => {
                let answer = CommitAnswer {
                    node: self.name.clone(),
                    outcome: record.outcome.name().to_owned(),
                    generation: record.generation,
                    error: record.outcome.error().map(str::to_owned),
                };
                if answer.took_effect() {
                    self.fleet_generation
                        .store(fleet_generation, Ordering::SeqCst);
                }
                answer
            }
            Err(error) => CommitAnswer {
                node: self.name.clone(),
                outcome: "unavailable".into(),
                generation: 0,
                error: Some(error.to_string()),
            },
        }
    }

    async fn status(&self) -> NodeStatus {
        let status = self.runtime.status().await.ok();
        NodeStatus {
            node: self.name.clone(),
            generation: status.as_ref().map_or(0, |s| s.generation),
            fleet_generation: self.fleet_generation.load(Ordering::SeqCst),
            fingerprint: status.as_ref().and_then(|s| s.config_hash.clone()),
            last_outcome: status
                .as_ref()
                .and_then(|s| s.last_reload.as_ref())
                .map(|r| r.outcome.name().to_owned()),
        }
    }
}

fn to_json(value: &impl Serialize) -> String {
    // Plain data with string keys serializes.
    serde_json::to_string(value).unwrap_or_default()
}
