//! Running a pipeline's step tree: `if:` conditions, `step.switch` branches, and the outputs
//! each step may read.
//!
//! Every step, nested or not, writes its output into one *slot* of the run. Slots are given
//! in post-order (a switch after the steps nested in it), so whatever a step may read sits
//! in a slot before its own, and a step reads `outputs[..slot]` exactly as a top-level step
//! always has. A skipped step leaves its slot null. When a switch ends, the output of the
//! last step it ran moves into the switch's slot: later steps read it by the switch's name,
//! never by the nested step's.

use futures::future::BoxFuture;
use serde_json::Value;
use swapvisor_actors::guard;

use crate::extension::jq::JqProgram;
use crate::extension::template::RenderBudget;
use crate::extension::{HttpExchange, RunTransaction, Services, Step, StepContext, StepError};

/// One entry of a step list: a step or a switch, with its slot and optional `if:`.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) slot: usize,
    pub(crate) condition: Option<JqProgram>,
    pub(crate) kind: NodeKind,
}

/// What a [`Node`] does.
pub(crate) enum NodeKind {
    /// A step built by its type's factory.
    Step(Box<dyn Step>),
    /// `step.switch`: the first case whose `when` is truthy, else the default.
    Switch {
        cases: Vec<(JqProgram, Vec<Node>)>,
        default: Vec<Node>,
    },
}

/// A step (or a condition) that failed, by the name of the step.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) step: String,
    pub(crate) message: String,
}

/// The state of one run: its slots and the response step that ran last.
pub(crate) struct Run<'a> {
    pub(crate) pipeline: &'a str,
    pub(crate) request: &'a Value,
    pub(crate) services: &'a Services,
    pub(crate) budget: &'a RenderBudget,
    pub(crate) outputs: Vec<Value>,
    pub(crate) response: Option<usize>,
    /// Set when a step answered for the pipeline ([`StepError::respond`]): the run stops.
    pub(crate) answered: bool,
    /// The HTTP exchange the run serves, if an HTTP request started it.
    pub(crate) http: Option<&'a HttpExchange>,
    /// The run's transaction (`transaction:`) while its main steps run.
    pub(crate) transaction: Option<&'a RunTransaction>,
}

impl Node {
    /// Whether this node, or a step nested in it, streams the request body.
    pub(crate) fn takes_body(&self) -> bool {
        match &self.kind {
            NodeKind::Step(step) => step.takes_body(),
            NodeKind::Switch { cases, default } => cases
                .iter()
                .flat_map(|(_, nodes)| nodes)
                .chain(default)
                .any(Node::takes_body),
        }
    }
}

impl Run<'_> {
    /// Runs `nodes` in order; the slot of the last one that ran, if any.
    pub(crate) fn nodes<'s>(
        &'s mut self,
        nodes: &'s [Node],
    ) -> BoxFuture<'s, Result<Option<usize>, Failure>> {
        Box::pin(async move {
            let mut last = None;
            for node in nodes {
                if self.node(node).await? {
                    last = Some(node.slot);
                }
                if self.answered {
                    break;
                }
            }
            Ok(last)
        })
    }

    /// Runs one node; false when its `if:` skipped it.
    async fn node(&mut self, node: &Node) -> Result<bool, Failure> {
        let failed = |message: String| Failure {
            step: node.name.clone(),
            message,
        };
        // Planning gives every node a slot below the run's slot count.
        let readable = self.outputs.get(..node.slot).unwrap_or_default();
        if let Some(condition) = &node.condition {
            let run = condition.test(self.request, readable).await;
            if !run.map_err(|e| failed(format!("its if: {e}")))? {
                return Ok(false);
            }
        }
        match &node.kind {
            NodeKind::Step(step) => {
                let result = {
                    let context = StepContext {
                        pipeline: self.pipeline,
                        step: &node.name,
                        request: self.request,
                        outputs: readable,
                        services: self.services,
                        budget: self.budget,
                        http: self.http,
                        transaction: self.transaction,
                    };
                    guard::run(None, || step.run(&context)).await
                };
                // A step that rendered past the budget got nulls where values were cut: its
                // output is not trusted, whatever it did with them.
                let output = match result {
                    Ok(Ok(output)) => self
                        .budget
                        .check()
                        .map(|()| output)
                        .map_err(|e| failed(e.to_string()))?,
                    // A step that answers for the pipeline (a guard refusing the request) ends
                    // the run: its response is the result, and later steps do not run.
                    Ok(Err(StepError(_, Some(answer)))) => {
                        if let Some(slot) = self.outputs.get_mut(node.slot) {
                            *slot = *answer;
                        }
                        self.response = Some(node.slot);
                        self.answered = true;
                        return Ok(true);
                    }
                    Ok(Err(error)) => return Err(failed(error.0)),
                    Err(interrupted) => return Err(failed(format!("step {interrupted}"))),
                };
                if let Some(slot) = self.outputs.get_mut(node.slot) {
                    *slot = output;
                }
                if step.is_response() {
                    self.response = Some(node.slot);
                }
            }
            NodeKind::Switch { cases, default } => {
                let mut branch = default;
                for (i, (when, steps)) in cases.iter().enumerate() {
                    let chosen = when.test(self.request, readable).await;
                    if chosen.map_err(|e| failed(format!("cases[{i}].when: {e}")))? {
                        branch = steps;
                        break;
                    }
                }
                if let Some(last) = self.nodes(branch).await? {
                    let output = self.outputs.get_mut(last).map(std::mem::take);
                    if let (Some(slot), Some(output)) = (self.outputs.get_mut(node.slot), output) {
                        *slot = output;
                    }
                    if self.response == Some(last) {
                        self.response = Some(node.slot);
                    }
                }
            }
        }
        Ok(true)
    }
}
