//! The verdict of a try-activate (and of `swapvisor validate`): would this config build?

use serde::Serialize;

use crate::engine::{BuildError, Engine, TypesUsed};

/// Whether a config builds, and if so which types it uses.
///
/// Serializes as `{"status":"build_ok","moduleTypes":[...],"stepTypes":[...],"triggerTypes":[...]}`
/// (lists sorted, empty lists omitted) or `{"status":"build_failed","error":"..."}`.
///
/// ```
/// use swapvisor::TryActivateResult;
///
/// let failed = TryActivateResult::BuildFailed { error: "boom".into() };
/// assert_eq!(failed.to_json(), r#"{"status":"build_failed","error":"boom"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TryActivateResult {
    /// The config built; the candidate was torn down without starting.
    BuildOk {
        /// The types the config uses.
        #[serde(flatten)]
        types: TypesUsed,
    },
    /// The config did not build.
    BuildFailed {
        /// Every problem found, each with its place.
        error: String,
    },
}

impl TryActivateResult {
    /// The verdict for a built engine.
    pub fn ok(engine: &Engine) -> Self {
        TryActivateResult::BuildOk {
            types: engine.types_used().clone(),
        }
    }

    /// The verdict for a failed build.
    pub fn failed(error: &BuildError) -> Self {
        TryActivateResult::BuildFailed {
            error: error.to_string(),
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
