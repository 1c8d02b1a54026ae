//! Coordinating a fleet reload: prepare everywhere, then commit everywhere or abort
//! everywhere, and return the fleet to one version if a commit fails.

use std::time::Duration;

use futures::future::join_all;
use ractor::ActorRef;
use serde::Serialize;
use serde_json::Value;

use super::Fleet;
use super::agent::{AgentMsg, CommitAnswer, GROUP, NodeStatus, PrepareAnswer};

/// How long nodes hold a prepared config for the commit.
const HOLD: Duration = Duration::from_secs(60);

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

/// A node's prepare, as the answer shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrepareVerdict {
    /// `prepared`, `build_failed`, `busy` or `unreachable`.
    pub status: String,
    /// The fingerprint it built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Why it did not prepare.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer to a fleet reload.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FleetReloadAnswer {
    /// `activated` (every node committed), `aborted` (a node did not prepare: nothing changed
    /// anywhere), `rolled_back` (a node failed to start: every node is back on the previous
    /// config) or `diverged` (a node could not be returned to it).
    pub status: String,
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

type Agent = ActorRef<AgentMsg>;

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
        let timeout_ms = self.call_timeout.as_millis() as u64;
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
        let current = ractor::call_t!(source, AgentMsg::Current, timeout_ms)
            .ok()
            .and_then(|json| serde_json::from_str::<super::CurrentConfig>(&json).ok());
        let Some(super::CurrentConfig {
            fleet_generation,
            config: Some(config),
        }) = current
        else {
            return CatchUp::Failed(format!("node {} did not give its config", ahead.node));
        };
        let answer = ractor::call_t!(
            local,
            AgentMsg::Reload,
            timeout_ms,
            config.to_string(),
            fleet_generation
        );
        let answer = parse_commit(answer.ok(), &self.name);
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
            let answer = ractor::call_t!(agent, AgentMsg::Status, timeout.as_millis() as u64);
            answer
                .ok()
                .and_then(|json| serde_json::from_str::<NodeStatus>(&json).ok())
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
        let timeout_ms = self.call_timeout.as_millis() as u64;
        let hold_ms = HOLD.as_millis() as u64;
        let prepares = join_all(agents.iter().map(|agent| {
            let (source, coordinator) = (source.to_owned(), self.name.clone());
            async move {
                let answer = ractor::call_t!(
                    agent,
                    AgentMsg::Prepare,
                    timeout_ms,
                    source,
                    hold_ms,
                    coordinator
                );
                match answer
                    .ok()
                    .and_then(|json| serde_json::from_str(&json).ok())
                {
                    Some(answer) => answer,
                    None => unreachable_node(agent),
                }
            }
        }))
        .await;
        let mut reports: Vec<(Agent, PrepareAnswer, NodeReport)> = agents
            .into_iter()
            .zip(prepares)
            .map(|(agent, prepare)| {
                let report = NodeReport {
                    node: prepare.node.clone(),
                    prepare: PrepareVerdict {
                        status: prepare.status.clone(),
                        fingerprint: prepare.fingerprint.clone(),
                        error: prepare.error.clone(),
                    },
                    commit: None,
                    rollback: None,
                };
                (agent, prepare, report)
            })
            .collect();
        reports.sort_by(|a, b| a.2.node.cmp(&b.2.node));
        let fleet_generation = reports
            .iter()
            .map(|(_, prepare, _)| prepare.fleet_generation)
            .max()
            .unwrap_or(0);
        let all_prepared = reports.iter().all(|(_, p, _)| p.status == "prepared");
        let one_fingerprint = reports
            .windows(2)
            .all(|pair| pair[0].1.fingerprint == pair[1].1.fingerprint);
        if !all_prepared || !one_fingerprint || reports.is_empty() {
            self.abort_all(&reports).await;
            tracing::warn!(
                nodes = reports.len(),
                "fleet reload aborted: not every node prepared"
            );
            return FleetReloadAnswer {
                status: "aborted".into(),
                fleet_generation,
                nodes: reports.into_iter().map(|(_, _, report)| report).collect(),
            };
        }
        let next = fleet_generation + 1;
        let commits = join_all(reports.iter().map(|(agent, prepare, _)| {
            let ticket = prepare.ticket.unwrap_or(0);
            let node = prepare.node.clone();
            async move {
                let answer = ractor::call_t!(agent, AgentMsg::Commit, timeout_ms, ticket, next);
                parse_commit(answer.ok(), &node)
            }
        }))
        .await;
        for ((_, _, report), commit) in reports.iter_mut().zip(commits) {
            report.commit = Some(commit);
        }
        let committed = |report: &NodeReport| {
            report
                .commit
                .as_ref()
                .is_some_and(CommitAnswer::took_effect)
        };
        let lost = |report: &NodeReport| {
            report
                .commit
                .as_ref()
                .is_some_and(|c| c.outcome == "unreachable")
        };
        let failed = reports
            .iter()
            .any(|(_, _, report)| !committed(report) && !lost(report));
        if !failed && reports.iter().any(|(_, _, report)| lost(report)) {
            // The commit was sent; a node that left before answering catches up when it
            // returns. Until then the fleet is diverged, and fleet status shows it.
            tracing::warn!(
                fleet_generation = next,
                "fleet reload committed, but a node left before answering"
            );
            return FleetReloadAnswer {
                status: "diverged".into(),
                fleet_generation: next,
                nodes: reports.into_iter().map(|(_, _, report)| report).collect(),
            };
        }
        if reports.iter().all(|(_, _, report)| committed(report)) {
            tracing::info!(
                fleet_generation = next,
                nodes = reports.len(),
                "fleet reload activated"
            );
            return FleetReloadAnswer {
                status: "activated".into(),
                fleet_generation: next,
                nodes: reports.into_iter().map(|(_, _, report)| report).collect(),
            };
        }
        // A node failed to start (its own reload rolled back): return the others to what they
        // ran before, so the fleet ends on one version.
        let mut diverged = false;
        for (agent, prepare, report) in reports.iter_mut() {
            if lost(report) {
                diverged = true; // it may have activated; it catches up when it returns
                continue;
            }
            if !committed(report) {
                continue;
            }
            let Some(previous) = prepare.previous.as_ref().map(Value::to_string) else {
                diverged = true;
                continue;
            };
            let answer = ractor::call_t!(
                agent,
                AgentMsg::Reload,
                timeout_ms,
                previous,
                fleet_generation
            );
            let rollback = parse_commit(answer.ok(), &report.node);
            diverged |= !rollback.took_effect();
            report.rollback = Some(rollback);
        }
        tracing::warn!(diverged, "fleet reload rolled back: a node failed to start");
        FleetReloadAnswer {
            status: if diverged { "diverged" } else { "rolled_back" }.into(),
            fleet_generation,
            nodes: reports.into_iter().map(|(_, _, report)| report).collect(),
        }
    }

    async fn abort_all(&self, reports: &[(Agent, PrepareAnswer, NodeReport)]) {
        let timeout_ms = self.call_timeout.as_millis() as u64;
        join_all(reports.iter().filter_map(|(agent, prepare, _)| {
            let ticket = prepare.ticket?;
            Some(async move { ractor::call_t!(agent, AgentMsg::Abort, timeout_ms, ticket) })
        }))
        .await;
    }
}

fn unreachable_node(agent: &Agent) -> PrepareAnswer {
    PrepareAnswer {
        node: agent
            .get_name()
            .unwrap_or_else(|| format!("{}", agent.get_id())),
        status: "unreachable".into(),
        ticket: None,
        fingerprint: None,
        error: Some("the node did not answer in time, or left the fleet".into()),
        previous: None,
        fleet_generation: 0,
    }
}

fn parse_commit(answer: Option<String>, node: &str) -> CommitAnswer {
    answer
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_else(|| CommitAnswer {
            node: node.to_owned(),
            outcome: "unreachable".into(),
            generation: 0,
            error: Some("the node did not answer in time, or left the fleet".into()),
        })
}
