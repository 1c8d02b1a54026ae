//! Coordinating a fleet reload: prepare everywhere, then commit everywhere or abort
//! everywhere, and return the fleet to one version if a commit fails.

use std::time::Duration;

use futures::future::join_all;
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};

use super::Fleet;
use super::agent::GROUP;
use super::messages::{
    AbortOrder, AgentMsg, CommitAnswer, CommitOrder, CurrentConfig, NodeOutcome, NodeStatus,
    PrepareAnswer, PrepareOutcome, PrepareRequest, ReloadOrder,
};
use super::report::{
    CatchUp, FleetOutcome, FleetReloadAnswer, FleetStatus, NodeReport, PrepareVerdict,
};
use super::wire::Wire;

/// How long nodes hold a prepared config for the commit.
const HOLD: Duration = Duration::from_secs(60);

/// What a coordinator reports for a node that gave no answer.
const NO_ANSWER: &str = "the node did not answer in time, or left the fleet";

type Agent = ActorRef<AgentMsg>;

/// One node's part in a fleet reload: its agent, its prepare (when it answered) and its report.
struct Part {
    agent: Agent,
    prepared: Option<PrepareAnswer>,
    report: NodeReport,
}

impl Part {
    fn new(agent: Agent, answer: Result<PrepareAnswer, String>) -> Self {
        let (node, verdict, prepared) = match answer {
            Ok(answer) => (
                answer.node.clone(),
                PrepareVerdict::of(&answer),
                Some(answer),
            ),
            Err(error) => (name_of(&agent), PrepareVerdict::unreachable(error), None),
        };
        let report = NodeReport {
            node,
            prepare: verdict,
            commit: None,
            rollback: None,
        };
        Part {
            agent,
            prepared,
            report,
        }
    }

    /// The ticket, fingerprint and previous config of a node that prepared.
    fn held(&self) -> Option<(u64, &str, Option<&serde_json::Value>)> {
        match &self.prepared.as_ref()?.outcome {
            PrepareOutcome::Prepared {
                ticket,
                fingerprint,
                previous,
            } => Some((*ticket, fingerprint, previous.as_ref())),
            _ => None,
        }
    }

    fn committed(&self) -> bool {
        self.report
            .commit
            .as_ref()
            .is_some_and(CommitAnswer::took_effect)
    }

    /// The commit was sent and no answer came: the node may have activated.
    fn lost(&self) -> bool {
        self.report
            .commit
            .as_ref()
            .is_some_and(|c| c.outcome == NodeOutcome::Unreachable)
    }
}

fn name_of(agent: &Agent) -> String {
    agent
        .get_name()
        .unwrap_or_else(|| format!("{}", agent.get_id()))
}

/// Sends `message` to `agent` and waits up to `timeout` for its typed answer. No answer, and an
/// answer that cannot be read (logged here, by name), are both the reason returned.
async fn ask<T: Send + 'static>(
    agent: &Agent,
    timeout: Duration,
    message: impl FnOnce(RpcReplyPort<Wire<T>>) -> AgentMsg,
) -> Result<T, String> {
    match agent.call(message, Some(timeout)).await {
        Ok(CallResult::Success(answer)) => answer.open().map_err(|error| {
            tracing::warn!(node = %name_of(agent), %error, "cannot read a fleet node's answer");
            error.to_string()
        }),
        _ => Err(NO_ANSWER.to_owned()),
    }
}

impl Fleet {
    /// The agents of every node now joined, this one included.
    pub(super) fn agents(&self) -> Vec<Agent> {
        ractor::pg::get_members(&GROUP.to_owned())
            .into_iter()
            .map(Agent::from)
            .collect()
    }

    /// Brings this node to the config of the node furthest ahead, if that is ahead of it.
    pub(super) async fn catch_up_now(&self) -> CatchUp {
        let status = self.status().await;
        let own = status
            .nodes
            .iter()
            .find(|n| n.node == self.name)
            .map_or(0, |n| n.fleet_generation);
        let Some(ahead) = status
            .nodes
            .iter()
            .filter(|n| n.node != self.name)
            .max_by_key(|n| n.fleet_generation)
            .filter(|n| n.fleet_generation > own)
        else {
            return CatchUp::Current;
        };
        let agents = self.agents();
        let named = |name: &str| {
            agents
                .iter()
                .find(|a| a.get_name().as_deref() == Some(name))
                .cloned()
        };
        let (Some(source), Some(local)) = (named(&ahead.node), named(&self.name)) else {
            return CatchUp::Failed(format!("node {} left before it could be asked", ahead.node));
        };
        let current = ask(&source, self.call_timeout, |reply| AgentMsg::Current {
            reply,
        })
        .await;
        let Ok(CurrentConfig {
            fleet_generation,
            config: Some(config),
        }) = current
        else {
            return CatchUp::Failed(format!("node {} did not give its config", ahead.node));
        };
        let order = ReloadOrder {
            config: config.to_string(),
            fleet_generation,
        };
        let answer = ask(&local, self.call_timeout, |reply| AgentMsg::Reload {
            request: Wire::new(order),
            reply,
        })
        .await
        .unwrap_or_else(|error| CommitAnswer::unreachable(&self.name, error));
        if answer.took_effect() {
            CatchUp::Reloaded {
                from: ahead.node.clone(),
                fleet_generation,
                answer,
            }
        } else {
            CatchUp::Failed(format!(
                "reloading to the config of node {} ended {}: {}",
                ahead.node,
                answer.outcome,
                answer.error.unwrap_or_default()
            ))
        }
    }

    /// Every node's status, and whether they agree.
    pub async fn status(&self) -> FleetStatus {
        let timeout = self.call_timeout;
        let answers = join_all(self.agents().into_iter().map(|agent| async move {
            ask::<NodeStatus>(&agent, timeout, |reply| AgentMsg::Status { reply })
                .await
                .ok()
        }))
        .await;
        let mut nodes: Vec<NodeStatus> = answers.into_iter().flatten().collect();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        let agreed = nodes.windows(2).all(|pair| {
            pair[0].fingerprint == pair[1].fingerprint
                && pair[0].fleet_generation == pair[1].fleet_generation
        });
        FleetStatus { agreed, nodes }
    }

    /// Reloads every node to `source`, all or nothing (see the module docs). Only one fleet
    /// reload runs at a time: a second one from this node waits, and one from another node
    /// finds the held nodes `busy` and aborts.
    pub async fn reload(&self, source: &str) -> FleetReloadAnswer {
        let _one_at_a_time = self.coordinating.lock().await;
        let agents = self.agents();
        let timeout = self.call_timeout;
        let prepares = join_all(agents.iter().map(|agent| {
            let request = PrepareRequest {
                config: source.to_owned(),
                hold_ms: HOLD.as_millis() as u64,
                coordinator: self.name.clone(),
            };
            ask(agent, timeout, |reply| AgentMsg::Prepare {
                request: Wire::new(request),
                reply,
            })
        }))
        .await;
        let mut parts: Vec<Part> = agents
            .into_iter()
            .zip(prepares)
            .map(|(agent, answer)| Part::new(agent, answer))
            .collect();
        parts.sort_by(|a, b| a.report.node.cmp(&b.report.node));
        let fleet_generation = parts
            .iter()
            .filter_map(|part| part.prepared.as_ref().map(|p| p.fleet_generation))
            .max()
            .unwrap_or(0);
        let all_prepared = parts.iter().all(|part| part.held().is_some());
        let one_fingerprint = parts
            .windows(2)
            .all(|pair| pair[0].held().map(|h| h.1) == pair[1].held().map(|h| h.1));
        let answer = |status, fleet_generation, parts: Vec<Part>| FleetReloadAnswer {
            status,
            fleet_generation,
            nodes: parts.into_iter().map(|part| part.report).collect(),
        };
        if !all_prepared || !one_fingerprint || parts.is_empty() {
            self.abort_all(&parts).await;
            tracing::warn!(
                nodes = parts.len(),
                "fleet reload aborted: not every node prepared"
            );
            return answer(FleetOutcome::Aborted, fleet_generation, parts);
        }
        let next = fleet_generation + 1;
        let commits = join_all(parts.iter().map(|part| {
            let order = CommitOrder {
                ticket: part.held().map_or(0, |h| h.0),
                fleet_generation: next,
            };
            let node = part.report.node.clone();
            async move {
                ask(&part.agent, timeout, |reply| AgentMsg::Commit {
                    request: Wire::new(order),
                    reply,
                })
                .await
                .unwrap_or_else(|error| CommitAnswer::unreachable(&node, error))
            }
        }))
        .await;
        for (part, commit) in parts.iter_mut().zip(commits) {
            part.report.commit = Some(commit);
        }
        let failed = parts.iter().any(|part| !part.committed() && !part.lost());
        if !failed && parts.iter().any(Part::lost) {
            // The commit was sent; a node that left before answering catches up when it
            // returns. Until then the fleet is diverged, and fleet status shows it.
            tracing::warn!(
                fleet_generation = next,
                "fleet reload committed, but a node left before answering"
            );
            return answer(FleetOutcome::Diverged, next, parts);
        }
        if parts.iter().all(Part::committed) {
            tracing::info!(
                fleet_generation = next,
                nodes = parts.len(),
                "fleet reload activated"
            );
            return answer(FleetOutcome::Activated, next, parts);
        }
        // A node failed to start (its own reload rolled back): return the others to what they
        // ran before, so the fleet ends on one version.
        let mut diverged = false;
        for part in parts.iter_mut() {
            if part.lost() {
                diverged = true; // it may have activated; it catches up when it returns
                continue;
            }
            if !part.committed() {
                continue;
            }
            let Some(previous) = part.held().and_then(|h| h.2).map(ToString::to_string) else {
                diverged = true;
                continue;
            };
            let order = ReloadOrder {
                config: previous,
                fleet_generation,
            };
            let rollback = ask(&part.agent, timeout, |reply| AgentMsg::Reload {
                request: Wire::new(order),
                reply,
            })
            .await
            .unwrap_or_else(|error| CommitAnswer::unreachable(&part.report.node, error));
            diverged |= !rollback.took_effect();
            part.report.rollback = Some(rollback);
        }
        tracing::warn!(diverged, "fleet reload rolled back: a node failed to start");
        let status = if diverged {
            FleetOutcome::Diverged
        } else {
            FleetOutcome::RolledBack
        };
        answer(status, fleet_generation, parts)
    }

    async fn abort_all(&self, parts: &[Part]) {
        let timeout = self.call_timeout;
        join_all(parts.iter().filter_map(|part| {
            let order = AbortOrder {
                ticket: part.held()?.0,
            };
            Some(ask(&part.agent, timeout, |reply| AgentMsg::Abort {
                request: Wire::new(order),
                reply,
            }))
        }))
        .await;
    }
}
