//! A pipeline: named steps run in order, each seeing the request and the earlier outputs, all
//! rendering within one budget per run; `if:`, switches and `onError:` steps run through
//! [`Run`] (`flow.rs`).

use std::time::Duration;

use serde_json::{Value, json};

use super::flow::{Failure, Node, Run};
use crate::extension::ExecuteError;
use crate::extension::HttpExchange;
use crate::extension::Services;
use crate::extension::template::RenderBudget;

/// A built pipeline.
pub(super) struct Pipeline {
    name: String,
    steps: Vec<Node>,
    on_error: Vec<Node>,
    slots: Slots,
    /// How long one run may take.
    timeout: Duration,
    /// How many bytes one run's templates may render.
    max_render_bytes: usize,
    /// Whether a step streams the request body ([`Step::takes_body`]).
    takes_body: bool,
}

/// Where a run's outputs go: how many slots, and which ones the answer reads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Slots {
    /// Every step's, nested and `onError:` ones included, plus `error`'s.
    pub(crate) count: usize,
    /// The last top-level step's: the run's output.
    pub(crate) last: Option<usize>,
    /// The last `onError:` step's: the output of a run whose failure they answered.
    pub(crate) last_on_error: Option<usize>,
    /// Where `onError:` steps read `error` (when there are any).
    pub(crate) error: Option<usize>,
}

/// The outputs of one run, by slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    outputs: Vec<Value>,
    response: Option<usize>,
    last: Option<usize>,
}

impl Execution {
    /// The last top-level step's output (null for a pipeline without steps, or when an `if:`
    /// skipped that step); after a failure `onError:` steps answered, the last of theirs.
    pub fn output(mut self) -> Value {
        self.last
            .and_then(|i| self.outputs.get_mut(i))
            .map(std::mem::take)
            .unwrap_or(Value::Null)
    }

    /// The output of the last response step that ran (`step.json_response`), or the response
    /// of the step that ended the run early ([`StepError::respond`](crate::extension::StepError::respond)), if any.
    pub fn response(&self) -> Option<&Value> {
        self.response.and_then(|i| self.outputs.get(i))
    }

    /// Every step's output, by slot: steps in order, a `step.switch` after the steps nested
    /// in it (which hold null once it ends: its slot holds the output it passed on), skipped
    /// steps null.
    pub fn outputs(&self) -> &[Value] {
        &self.outputs
    }
}

impl Pipeline {
    pub(crate) fn new(
        name: String,
        (steps, on_error): (Vec<Node>, Vec<Node>),
        slots: Slots,
        timeout: Duration,
        max_render_bytes: usize,
    ) -> Self {
        Self {
            takes_body: steps.iter().chain(&on_error).any(Node::takes_body),
            name,
            steps,
            on_error,
            slots,
            timeout,
            max_render_bytes,
        }
    }

    /// The pipeline's name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Whether a step streams the request body, so that it must not be read first.
    pub(super) fn takes_body(&self) -> bool {
        self.takes_body
    }

    /// Runs every step in order with `input` as `request`. A step that fails or panics ends
    /// the run with an error naming it (unless `onError:` steps answer it); a run past the
    /// pipeline's time limit is abandoned (the step running then is dropped) with
    /// [`ExecuteError::TimedOut`], `onError:` steps or not.
    pub(super) async fn run(
        &self,
        input: &Value,
        services: &Services,
        http: Option<&HttpExchange>,
    ) -> Result<Execution, ExecuteError> {
        match tokio::time::timeout(self.timeout, self.run_steps(input, services, http)).await {
            Ok(finished) => finished,
            Err(_) => Err(ExecuteError::TimedOut {
                pipeline: self.name.clone(),
                limit: self.timeout,
            }),
        }
    }

    async fn run_steps(
        &self,
        input: &Value,
        services: &Services,
        http: Option<&HttpExchange>,
    ) -> Result<Execution, ExecuteError> {
        let budget = RenderBudget::new(self.max_render_bytes);
        let mut run = Run {
            pipeline: &self.name,
            request: input,
            services,
            budget: &budget,
            outputs: vec![Value::Null; self.slots.count],
            response: None,
            answered: false,
            http,
        };
        let failed = |failure: Failure| ExecuteError::StepFailed {
            pipeline: self.name.clone(),
            step: failure.step,
            message: failure.message,
        };
        let failure = match run.nodes(&self.steps).await {
            // A step that answered for the pipeline (a guard) made its answer the output.
            Ok(_) if run.answered => {
                let last = run.response;
                return Ok(finish(run, last));
            }
            Ok(_) => return Ok(finish(run, self.slots.last)),
            Err(failure) => failure,
        };
        let Some(error_slot) = self.slots.error.filter(|_| !self.on_error.is_empty()) else {
            return Err(failed(failure));
        };
        if let Some(slot) = run.outputs.get_mut(error_slot) {
            *slot = json!({"step": failure.step, "message": failure.message});
        }
        // Only a response of the onError steps answers the failure.
        run.response = None;
        match run.nodes(&self.on_error).await {
            Ok(_) if run.response.is_some() => Ok(finish(run, self.slots.last_on_error)),
            Ok(_) => Err(failed(failure)),
            Err(second) => Err(failed(Failure {
                message: format!(
                    "{}; then onError step {:?} failed too: {}",
                    failure.message, second.step, second.message
                ),
                step: failure.step,
            })),
        }
    }
}

fn finish(run: Run<'_>, last: Option<usize>) -> Execution {
    Execution {
        outputs: run.outputs,
        response: run.response,
        last,
    }
}
