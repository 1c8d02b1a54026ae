//! [`LastGood`]: the last config that activated, as `swapvisor run --resume` starts from it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{StateDir, StateError};

/// The last config that activated, with where it stands: written to `last-good.json` in the
/// state folder after every reload that changes the live config, read by `run --resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastGood {
    /// The generation it activated as.
    pub generation: u64,
    /// Its config hash, as status shows it.
    pub hash: String,
    /// Who asked for the reload that activated it (`initial`, `file watch`, `signal`, ...).
    pub origin: String,
    /// When it was saved, RFC 3339 in UTC.
    pub saved_at: String,
    /// The config as written (`${VAR}` references unexpanded): a document `run` accepts.
    pub config: Value,
}

impl LastGood {
    /// The file's name in the state folder.
    pub const FILE: &'static str = "last-good.json";

    /// The largest file read back (a config document is limited far below it).
    const LIMIT: u64 = 64 * 1024 * 1024;

    /// Saves it, atomically.
    pub fn save(&self, dir: &StateDir) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| StateError::Refused {
            path: dir.path().join(Self::FILE),
            message: format!("cannot encode the config: {e}"),
        })?;
        dir.write(Self::FILE, &bytes)
    }

    /// The saved one, or `None` when nothing activated with this folder yet.
    pub fn load(dir: &StateDir) -> Result<Option<LastGood>, StateError> {
        let Some(bytes) = dir.read(Self::FILE, Self::LIMIT)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Refused {
                path: dir.path().join(Self::FILE),
                message: format!("is not a saved config ({e}); move it away to start afresh"),
            })
    }

    /// The config as the text a runtime starts from (JSON, which is YAML).
    pub fn source(&self) -> Vec<u8> {
        // Serializing a `Value` cannot fail: its keys are strings.
        serde_json::to_vec(&self.config).unwrap_or_default()
    }
}
