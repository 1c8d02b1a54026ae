//! Why an engine could not be built, started or stopped.

use crate::config::{ConfigErrors, DocumentError, LoadError};

use swapvisor_actors::Stage;

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
