//! Errors raised by modules and steps, and by the engine around them.

use std::fmt;

use crate::config::{ConfigErrors, DocumentError, LoadError};

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

pub use swapvisor_actors::Stage;

/// Why an engine could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BuildError {
    /// The source could not be read or parsed.
    #[error("{0}")]
    Parse(String),
    /// The config is invalid; every problem is listed, each with its place.
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
    /// A module could not be constructed.
    #[error("module {module:?} failed to build: {message}")]
    Module {
        /// The module's name.
        module: String,
        /// What went wrong.
        message: String,
    },
}

impl BuildError {
    /// The stage this error belongs to.
    pub fn stage(&self) -> Stage {
        match self {
            BuildError::Parse(_) => Stage::Parse,
            BuildError::Invalid(_) => Stage::Validate,
            BuildError::Module { .. } => Stage::Build,
        }
    }
}

impl From<DocumentError> for BuildError {
    fn from(error: DocumentError) -> Self {
        BuildError::Parse(error.to_string())
    }
}

impl From<LoadError> for BuildError {
    fn from(error: LoadError) -> Self {
        match error {
            LoadError::Invalid(errors) => BuildError::Invalid(errors),
            other => BuildError::Parse(other.to_string()),
        }
    }
}

/// A module or plugin could not start; what started before it has been stopped again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {module:?} failed to start: {message}")]
pub struct StartError {
    /// `module` or `plugin`.
    pub kind: &'static str,
    /// The module (or plugin) that failed.
    pub module: String,
    /// What went wrong.
    pub message: String,
}

/// One or more modules failed to stop cleanly. Every module was still asked to stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .failures.iter().map(|(m, e)| format!("module {m:?} failed to stop: {e}")).collect::<Vec<_>>().join("; "))]
pub struct StopError {
    /// `(module, message)` for each module that failed to stop, in stop order.
    pub failures: Vec<(String, String)>,
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
        /// The pipeline.
        pipeline: String,
        /// The step that failed.
        step: String,
        /// The step's error.
        message: String,
    },
    /// No engine is serving (the runtime is stopped, or degraded past the wait limit).
    #[error("no engine is serving: {0}")]
    Unavailable(String),
}
