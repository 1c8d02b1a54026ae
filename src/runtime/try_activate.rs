//! The verdict of a try-activate (and of `swapvisor validate`): would this config build?

use serde::Serialize;
use swapvisor_actors::{BuildFailure, Stage};

use crate::engine::{BuildError, Engine, EngineTypes};

/// Whether a config builds, and if so which types the candidate registers and which it uses.
///
/// Serializes as `{"status":"build_ok","moduleTypes":[...],"stepTypes":[...],"triggerTypes":[...],
/// "usedTypes":{"moduleTypes":[...],...},"changes":{"modules":{"added":[...],"changed":[...],
/// "removed":[...],"kept":[...]},"pipelines":{...}}}` (the top-level lists are the types the candidate
/// engine registers, the seed contract's answer; lists sorted, empty lists omitted; `changes`
/// compares the candidate with the live engine, and is absent for `validate`) or
/// `{"status":"build_failed","error":"..."}`. The answer of the admin API, `validate` and the
/// Rust API alike.
///
/// ```
/// use swapvisor::TryActivateResult;
///
/// use swapvisor::Stage;
///
/// let failed = TryActivateResult::BuildFailed { error: "boom".into(), stage: Stage::Build };
/// assert_eq!(failed.to_json(), r#"{"status":"build_failed","error":"boom"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub enum TryActivateResult {
    /// The config built; the candidate was torn down without starting.
    BuildOk {
        /// The types the candidate registers, and the types its config uses.
        #[serde(flatten)]
        types: EngineTypes,
    },
    /// The config did not build.
    BuildFailed {
        /// Every problem found, each with its place.
        error: String,
        /// Where it failed: `parse` when the input is not a document at all.
        #[serde(skip)]
        stage: Stage,
    },
}

impl From<Result<EngineTypes, BuildFailure>> for TryActivateResult {
    fn from(verdict: Result<EngineTypes, BuildFailure>) -> Self {
        match verdict {
            Ok(types) => TryActivateResult::BuildOk { types },
            Err(failure) => TryActivateResult::BuildFailed {
                error: failure.message,
                stage: failure.stage,
            },
        }
    }
}

impl TryActivateResult {
    /// The verdict for a built engine.
    pub fn ok(engine: &Engine) -> Self {
        TryActivateResult::BuildOk {
            types: engine.types(),
        }
    }

    /// The verdict for a failed build.
    pub fn failed(error: &BuildError) -> Self {
        TryActivateResult::BuildFailed {
            error: error.to_string(),
            stage: error.stage(),
        }
    }

    /// True for `build_ok`.
    pub fn is_ok(&self) -> bool {
        matches!(self, TryActivateResult::BuildOk { .. })
    }

    /// The JSON text of this verdict.
    pub fn to_json(&self) -> String {
        // A derived Serialize of strings and string lists cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
