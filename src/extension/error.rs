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

/// A step failed while a pipeline ran. The message is the step's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StepError(pub String);

impl StepError {
    /// A step error with `message`.
    pub fn new(message: impl fmt::Display) -> Self {
        Self(message.to_string())
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
