//! A pipeline: named steps run in order, each seeing the request and the earlier outputs, all
//! rendering within one budget per run; `if:`, switches and `onError:` steps run through
//! [`Run`] (`flow.rs`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::flow::{Failure, Node, Run};
use crate::extension::ExecuteError;
use crate::extension::HttpExchange;
use crate::extension::Services;
use crate::extension::template::RenderBudget;
use crate::extension::{RunTransaction, Transactions};

/// The step name a failure to begin or commit a run's transaction is reported under.
const TRANSACTION: &str = "transaction";

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
    /// The store every run's steps work in (`transaction:`), by name.
    transaction: Option<(String, Arc<dyn Transactions>)>,
}

/// What bounds one run.
pub(crate) struct Limits {
    /// How long it may take.
    pub(crate) timeout: Duration,
    /// How many bytes its templates may render.
    pub(crate) max_render_bytes: usize,
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
        limits: Limits,
        transaction: Option<(String, Arc<dyn Transactions>)>,
    ) -> Self {
        Self {
            takes_body: steps.iter().chain(&on_error).any(Node::takes_body),
            name,
            steps,
            on_error,
            slots,
            timeout: limits.timeout,
            max_render_bytes: limits.max_render_bytes,
            transaction,
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
    /// [`ExecuteError::TimedOut`], `onError:` steps or not. With a `transaction:`, the steps
    /// run in one transaction: see [`crate::extension::Transactions`].
    pub(super) async fn run(
        &self,
        input: &Value,
        services: &Services,
        http: Option<&HttpExchange>,
    ) -> Result<Execution, ExecuteError> {
        // Outside the timed run, so that a run cut short leaves its transaction here.
        let transaction = self
            .transaction
            .as_ref()
            .map(|(store, _)| RunTransaction::new(store));
        let run = self.run_steps(input, services, http, transaction.as_ref());
        let finished = tokio::time::timeout(self.timeout, run).await;
        if let Some(open) = transaction.as_ref().and_then(RunTransaction::take) {
            // Only a run past its time limit leaves one open.
            self.roll_back(open).await;
        }
        finished.unwrap_or_else(|_| {
            Err(ExecuteError::TimedOut {
                pipeline: self.name.clone(),
                limit: self.timeout,
            })
        })
    }

    async fn roll_back(&self, open: Box<dyn crate::extension::Transaction>) {
        if let Err(error) = open.rollback().await {
            tracing::warn!(pipeline = %self.name, %error, "a transaction failed to roll back (its connection is closed, which undoes it)");
        }
    }

    async fn run_steps(
        &self,
        input: &Value,
        services: &Services,
        http: Option<&HttpExchange>,
        transaction: Option<&RunTransaction>,
    ) -> Result<Execution, ExecuteError> {
        let failed = |failure: Failure| ExecuteError::StepFailed {
            pipeline: self.name.clone(),
            step: failure.step,
            message: failure.message,
        };
        if let (Some(run), Some((store, transactions))) = (transaction, &self.transaction) {
            run.begin(&**transactions).await.map_err(|e| {
                failed(Failure {
                    step: TRANSACTION.to_owned(),
                    message: format!("could not begin a transaction on {store:?}: {e}"),
                })
            })?;
        }
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
            transaction,
        };
        let failure = match run.nodes(&self.steps).await {
            Ok(_) => {
                // A step that answered for the pipeline (a guard) made its answer the output.
                let last = if run.answered {
                    run.response
                } else {
                    self.slots.last
                };
                if let Some(open) = transaction.and_then(RunTransaction::take) {
                    open.commit().await.map_err(|e| {
                        failed(Failure {
                            step: TRANSACTION.to_owned(),
                            message: format!("the transaction's commit failed: {e}"),
                        })
                    })?;
                }
                return Ok(finish(run, last));
            }
            Err(failure) => failure,
        };
        if let Some(open) = transaction.and_then(RunTransaction::take) {
            self.roll_back(open).await;
        }
        // onError steps run outside the transaction, which is over.
        run.transaction = None;
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
