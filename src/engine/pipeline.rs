//! A pipeline: named steps run in order, each seeing the request and the earlier outputs, all
//! rendering within one budget per run.

use std::time::Duration;

use serde_json::Value;
use swapvisor_actors::guard;

use crate::extension::ExecuteError;
use crate::extension::Services;
use crate::extension::template::RenderBudget;
use crate::extension::{HttpExchange, Step, StepContext, StepError};

/// A built pipeline.
pub(super) struct Pipeline {
    name: String,
    steps: Vec<PipelineStep>,
    /// How long one run may take.
    timeout: Duration,
    /// How many bytes one run's templates may render.
    max_render_bytes: usize,
    /// Whether a step streams the request body ([`Step::takes_body`]).
    takes_body: bool,
}

pub(crate) struct PipelineStep {
    pub(crate) name: String,
    pub(crate) step: Box<dyn Step>,
}

/// The outputs of one run, by step position.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    outputs: Vec<Value>,
    response: Option<usize>,
}

impl Execution {
    /// The last step's output (null for a pipeline without steps).
    pub fn output(mut self) -> Value {
        self.outputs.pop().unwrap_or(Value::Null)
    }

    /// The output of the last response step that ran (`step.json_response`), or the response
    /// of the step that ended the run early ([`StepError::respond`]), if any.
    pub fn response(&self) -> Option<&Value> {
        self.response.and_then(|i| self.outputs.get(i))
    }

    /// Every step's output, in order.
    pub fn outputs(&self) -> &[Value] {
        &self.outputs
    }
}

impl Pipeline {
    pub(crate) fn new(
        name: String,
        steps: Vec<PipelineStep>,
        timeout: Duration,
        max_render_bytes: usize,
    ) -> Self {
        Self {
            takes_body: steps.iter().any(|s| s.step.takes_body()),
            name,
            steps,
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
    /// the run with an error naming it; a run past the pipeline's time limit is abandoned
    /// (the step running then is dropped) with [`ExecuteError::TimedOut`].
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
        let mut outputs = Vec::with_capacity(self.steps.len());
        let mut response = None;
        let budget = RenderBudget::new(self.max_render_bytes);
        for (position, step) in self.steps.iter().enumerate() {
            let result = {
                let context = StepContext {
                    pipeline: &self.name,
                    step: &step.name,
                    request: input,
                    outputs: &outputs,
                    services,
                    budget: &budget,
                    http,
                };
                guard::run(None, || step.step.run(&context)).await
            };
            let failed = |message: String| ExecuteError::StepFailed {
                pipeline: self.name.clone(),
                step: step.name.clone(),
                message,
            };
            match result {
                // A step that rendered past the budget got nulls where values were cut: its
                // output is not trusted, whatever it did with them.
                Ok(Ok(output)) => match budget.check() {
                    Ok(()) => outputs.push(output),
                    Err(exceeded) => return Err(failed(exceeded.to_string())),
                },
                // A step that answers for the pipeline (a guard refusing the request) ends
                // the run: its response is the result, and later steps do not run.
                Ok(Err(StepError(_, Some(answer)))) => {
                    outputs.push(*answer);
                    let response = Some(position);
                    return Ok(Execution { outputs, response });
                }
                Ok(Err(error)) => return Err(failed(error.0)),
                Err(interrupted) => return Err(failed(format!("step {interrupted}"))),
            }
            if step.step.is_response() {
                response = Some(position);
            }
        }
        Ok(Execution { outputs, response })
    }
}
