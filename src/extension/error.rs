//! The errors extension code reports: a module's, a step's, and a pipeline run's.

use std::fmt;

/// A module failed to prepare, start or stop. The message is the module's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ModuleError(pub String);

impl ModuleError {
    /// A module error with `message`.
    pub fn new(message: impl fmt::Display) -> Self {
        Self(message.to_string())
    }
}

impl From<String> for ModuleError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl From<&str> for ModuleError {
    fn from(message: &str) -> Self {
        Self(message.to_owned())
    }
}

impl From<std::io::Error> for ModuleError {
    fn from(error: std::io::Error) -> Self {
        Self(error.to_string())
    }
}

/// A step failed while a pipeline ran (the message is the step's own), or it answered for the
/// pipeline: see [`StepError::respond`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StepError(
    pub String,
    /// The response that ends the pipeline, for an error made by [`StepError::respond`].
    pub(crate) Option<Box<serde_json::Value>>,
);

impl StepError {
    /// A step error with `message`.
    pub fn new(message: impl fmt::Display) -> Self {
        Self(message.to_string(), None)
    }

    /// Ends the pipeline early with an HTTP response: the run stops at this step, later steps
    /// do not run, and the response is the run's result as a `step.json_response` output would
    /// be (`{"status", "headers", "body"}`; for `execute`, the run's output). This is not a
    /// failure: a guard refusing a request (`step.validate`, `step.jwt`, `step.rate_limit`)
    /// answers 400, 401 or 429 this way, and no error is logged.
    pub fn respond(
        status: u16,
        headers: impl IntoIterator<Item = (String, String)>,
        body: serde_json::Value,
    ) -> Self {
        let headers: serde_json::Map<String, serde_json::Value> = headers
            .into_iter()
            .map(|(name, value)| (name, serde_json::Value::String(value)))
            .collect();
        let response: serde_json::Map<String, serde_json::Value> = [
            ("status", serde_json::Value::from(status)),
            ("headers", serde_json::Value::Object(headers)),
            ("body", body),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        Self(
            format!("the step answered {status}"),
            Some(Box::new(serde_json::Value::Object(response))),
        )
    }

    /// The response the step ended the pipeline with, for an error made by
    /// [`StepError::respond`].
    pub fn response(&self) -> Option<&serde_json::Value> {
        self.1.as_deref()
    }
}

impl From<super::template::RenderBudgetExceeded> for StepError {
    fn from(exceeded: super::template::RenderBudgetExceeded) -> Self {
        Self::new(exceeded)
    }
}

/// A pipeline could not run to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecuteError {
    /// No pipeline has that name.
    #[error("unknown pipeline {name:?} (pipelines: {available})")]
    UnknownPipeline {
        /// The name asked for.
        name: String,
        /// The pipelines that exist, comma-separated.
        available: String,
    },
    /// A step failed.
    #[error("pipeline {pipeline:?} failed at step {step:?}: {message}")]
    StepFailed {
        /// The pipeline that ran.
        pipeline: String,
        /// The step that failed.
        step: String,
        /// The step's error.
        message: String,
    },
    /// The run took longer than the pipeline's `timeout` and was abandoned.
    #[error("pipeline {pipeline:?} ran past its time limit of {limit:?}")]
    TimedOut {
        /// The pipeline that ran.
        pipeline: String,
        /// Its time limit.
        limit: std::time::Duration,
    },
    /// No engine is serving (the runtime is stopped, or degraded past the wait limit).
    #[error("no engine is serving: {0}")]
    Unavailable(String),
}
