//! The fleet agent: one actor per node, joined to the process group every node's agent is in,
//! through which a coordinator asks this node's runtime to prepare, commit or abort (the
//! messages are in [`super::messages`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;

use super::TwoPhase;
use super::messages::{
    AbortAnswer, AgentMsg, CommitAnswer, CurrentConfig, NodeOutcome, NodeStatus, PrepareAnswer,
    PrepareOutcome, PrepareRequest,
};
use super::wire::{Wire, WireError};
use crate::CommitRequest;
use crate::engine::EngineSpec;
use crate::runtime::Runtime;

/// The process group every node's agent joins.
pub(super) const GROUP: &str = "swapvisor.fleet";

/// The agent's arguments.
pub(super) struct AgentArgs {
    pub(super) name: String,
    pub(super) runtime: Arc<Runtime>,
    /// The fleet generation this node is on, shared with [`super::Fleet`] for status.
    pub(super) fleet_generation: Arc<AtomicU64>,
}

/// The agent's state: the runtime it speaks for, and the prepare it holds for a coordinator.
pub(super) struct AgentState {
    name: String,
    runtime: Arc<Runtime>,
    two_phase: TwoPhase,
    /// The ticket held for a coordinator, and until when: while it is held, another
    /// coordinator's prepare is refused, so one fleet reload runs at a time.
    held: Option<(u64, String, Instant)>,
    fleet_generation: Arc<AtomicU64>,
}

/// The fleet agent actor.
#[derive(Debug)]
pub(super) struct Agent;

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
            two_phase: TwoPhase::new(&args.runtime),
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
            AgentMsg::Prepare { request, reply } => {
                let answer = match request.open() {
                    Ok(request) => Wire::new(state.prepare(request).await),
                    Err(error) => state.refuse("prepare", &error),
                };
                let _ = reply.send(answer);
            }
            AgentMsg::Commit { request, reply } => {
                let answer = match request.open() {
                    Ok(order) => {
                        state.release(order.ticket);
                        let commit = CommitRequest::new(order.ticket);
                        let record = state.two_phase.commit(commit).await;
                        Wire::new(state.answer(record, order.fleet_generation))
                    }
                    Err(error) => state.refuse("commit", &error),
                };
                let _ = reply.send(answer);
            }
            AgentMsg::Abort { request, reply } => {
                let answer = match request.open() {
                    Ok(order) => {
                        state.release(order.ticket);
                        let held = state.two_phase.abort(order.ticket).await;
                        Wire::new(AbortAnswer {
                            held: held.unwrap_or(false),
                        })
                    }
                    Err(error) => state.refuse("abort", &error),
                };
                let _ = reply.send(answer);
            }
            AgentMsg::Reload { request, reply } => {
                let answer = match request.open() {
                    Ok(order) => {
                        let spec = EngineSpec::Source(order.config.into_bytes().into());
                        let request = crate::Reload::new(spec).from(crate::Origin::Fleet);
                        let record = state.runtime.reload(request).await;
                        Wire::new(state.answer(record, order.fleet_generation))
                    }
                    Err(error) => state.refuse("reload", &error),
                };
                let _ = reply.send(answer);
            }
            AgentMsg::Status { reply } => {
                let _ = reply.send(Wire::new(state.status().await));
            }
            AgentMsg::Current { reply } => {
                let current = CurrentConfig {
                    fleet_generation: state.fleet_generation.load(Ordering::SeqCst),
                    config: state.live_document(),
                };
                let _ = reply.send(Wire::new(current));
            }
        }
        Ok(())
    }
}

impl AgentState {
    /// A request that did not decode: said in this node's log, and answered with the reason.
    fn refuse<T>(&self, what: &str, error: &WireError) -> Wire<T> {
        tracing::warn!(node = %self.name, message = what, %error, "cannot read a fleet message; refusing it");
        Wire::refused(error)
    }

    /// Frees this node for other coordinators once `ticket` is committed or aborted.
    fn release(&mut self, ticket: u64) {
        if self.held.as_ref().is_some_and(|(held, ..)| *held == ticket) {
            self.held = None;
        }
    }

    /// The live config as a document (`${VAR}` unexpanded), `None` while nothing serves.
    fn live_document(&self) -> Option<serde_json::Value> {
        self.runtime
            .observe()
            .live_config()
            .map(|(_, config)| config.to_document())
    }

    async fn prepare(&mut self, request: PrepareRequest) -> PrepareAnswer {
        let fleet_generation = self.fleet_generation.load(Ordering::SeqCst);
        let answer = |outcome| PrepareAnswer {
            node: self.name.clone(),
            fleet_generation,
            outcome,
        };
        if let Some((_, holder, until)) = &self.held
            && *until > Instant::now()
            && *holder != request.coordinator
        {
            return answer(PrepareOutcome::Busy {
                coordinator: holder.clone(),
            });
        }
        let hold_for = Duration::from_millis(request.hold_ms);
        let spec = EngineSpec::Source(request.config.into_bytes().into());
        let outcome = match self.two_phase.prepare(spec, hold_for).await {
            Ok(Ok(prepared)) => {
                let until = Instant::now() + hold_for;
                self.held = Some((prepared.ticket, request.coordinator, until));
                PrepareOutcome::Prepared {
                    ticket: prepared.ticket,
                    fingerprint: prepared.fingerprint,
                    previous: self.live_document(),
                }
            }
            Ok(Err(failure)) => PrepareOutcome::BuildFailed {
                error: failure.message,
            },
            Err(error) => PrepareOutcome::BuildFailed {
                error: error.to_string(),
            },
        };
        answer(outcome)
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
                    outcome: NodeOutcome::from(&record.outcome),
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
                outcome: NodeOutcome::Unavailable,
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
                .map(|r| NodeOutcome::from(&r.outcome)),
        }
    }
}
