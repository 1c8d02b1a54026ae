//! [`Checkpoint`]: a plugin instance's state as it was at one moment, with the code that took
//! it; what status shows of an instance's checkpoints; and their file in the state folder.
//!
//! The runtime keeps, per instance, the latest checkpoint of each code that took one (kind,
//! version and code hash), at most [`KEPT`] of them, newest first: the latest is what the next
//! instance is offered; an older one taken by the importer's own code is the fallback when its
//! `migrate` refuses the latest (a revert to code that cannot read what the bad code wrote).
//! [`super::checkpoints`] keeps them; this file is the data.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How many checkpoints an instance keeps: the latest, and the latest of up to three other
/// codes.
pub(crate) const KEPT: usize = 4;

/// The format of `checkpoints/<name>.json`.
const FORMAT: u32 = 1;

/// A plugin instance's state at one moment, as the runtime keeps it: taken by the plugin
/// ([`PluginContext::checkpoint`](crate::plugin::PluginContext::checkpoint), or a process
/// plugin's `state/checkpoint`), or exported by it in a reload or an upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// The plugin kind (the entry's `type`) that took it; only an instance of the same kind
    /// is offered it.
    pub kind: String,
    /// The version of the code that took it.
    pub version: String,
    /// The identity of the code that took it (a process plugin's executable SHA-256), when the
    /// plugin has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The state, as the plugin gave it: what `migrate` gets.
    pub state: Value,
    /// When it was taken, RFC 3339 in UTC.
    pub taken_at: String,
    /// Its place among the instance's checkpoints: each one taken gets the next number, across
    /// restarts of the process too (with a state folder).
    pub sequence: u64,
    /// True when a running instance exported it for a reload: refusing it rolls the reload
    /// back, as a refused handover always has. A checkpoint the instance took is offered,
    /// not insisted on.
    #[serde(skip)]
    pub(crate) exported: bool,
}

/// Who took a checkpoint: the same plugin kind, version and code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) kind: String,
    pub(crate) version: String,
    pub(crate) code: Option<String>,
}

impl Checkpoint {
    /// A checkpoint of `state` taken by `by` now, numbered `sequence`.
    pub(crate) fn new(by: &Identity, state: Value, sequence: u64) -> Self {
        Self {
            kind: by.kind.clone(),
            version: by.version.clone(),
            code: by.code.clone(),
            state,
            taken_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            sequence,
            exported: false,
        }
    }

    /// True when `by` took it: the same kind, version and code.
    pub(crate) fn taken_by(&self, by: &Identity) -> bool {
        self.kind == by.kind && self.version == by.version && self.code == by.code
    }

    /// What status shows of it.
    pub(crate) fn summary(&self) -> CheckpointSummary {
        CheckpointSummary {
            sequence: self.sequence,
            taken_at: self.taken_at.clone(),
            kind: self.kind.clone(),
            version: self.version.clone(),
            code: self.code.clone(),
        }
    }
}

/// A checkpoint as status shows it: everything but the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct CheckpointSummary {
    /// Its sequence number.
    pub sequence: u64,
    /// When it was taken, RFC 3339 in UTC.
    pub taken_at: String,
    /// The plugin kind that took it.
    pub kind: String,
    /// The version of the code that took it.
    pub version: String,
    /// The identity of the code that took it, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Why an instance was offered a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub enum ImportCause {
    /// It was restarted after a crash (its own, or a sibling's under its strategy).
    Restart,
    /// It replaced an instance that could hand over no state of its own: one that had crashed
    /// or failed (a probation revert), or that exports none.
    Reload,
    /// It is the first instance of its name in this process, and the state folder held a
    /// checkpoint.
    Start,
    /// A new process took over from an old one (a binary upgrade).
    Upgrade,
}

/// The checkpoint an instance imported, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct ImportedCheckpoint {
    /// Which checkpoint.
    #[serde(flatten)]
    pub checkpoint: CheckpointSummary,
    /// Why it was offered.
    pub cause: ImportCause,
    /// When it was imported, RFC 3339 in UTC.
    pub imported_at: String,
}

/// An instance's checkpoints as status shows them; absent for an instance that has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct CheckpointStatus {
    /// The latest checkpoint kept, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest: Option<CheckpointSummary>,
    /// The sequence number of the latest checkpoint written to the state folder (`None`
    /// without a state folder, or before the first write).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved: Option<u64>,
    /// Checkpoints kept since the process started.
    pub taken: u64,
    /// Checkpoints refused since the process started (too large, or from an instance that was
    /// replaced), and imports a `migrate` refused.
    pub refused: u64,
    /// Why the latest refusal happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_refused: Option<String>,
    /// The checkpoint the running instance imported, if it imported one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imported: Option<ImportedCheckpoint>,
}

/// The name of `instance`'s checkpoint file in the state folder. Instance names come from a
/// config and reach a file path, so every byte but ASCII letters, digits, `-` and `_` is
/// percent-encoded: no name can hold a `/`, be `..` or start with a dot, and two names never
/// share a file.
pub(crate) fn file_name(instance: &str) -> String {
    let mut encoded = String::with_capacity(instance.len() + 17);
    encoded.push_str("checkpoints/");
    for byte in instance.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => encoded.push(byte as char),
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    if instance.is_empty() {
        // No name encodes to a lone `%`, and `.json` alone would be hidden.
        encoded.push('%');
    }
    encoded.push_str(".json");
    encoded
}

/// `checkpoints/<name>.json` as written: the instance's kept checkpoints, newest first.
#[derive(Serialize)]
struct FileOut<'a> {
    format: u32,
    instance: &'a str,
    checkpoints: &'a [Arc<Checkpoint>],
}

/// The same file as read back.
#[derive(Deserialize)]
struct FileIn {
    format: u32,
    instance: String,
    checkpoints: Vec<Checkpoint>,
}

/// The file's content for `instance`'s `checkpoints`.
pub(crate) fn encode(instance: &str, checkpoints: &[Arc<Checkpoint>]) -> Result<Vec<u8>, String> {
    let file = FileOut {
        format: FORMAT,
        instance,
        checkpoints,
    };
    serde_json::to_vec(&file).map_err(|e| format!("cannot encode the checkpoints: {e}"))
}

/// The checkpoints the file `bytes` holds for `instance`, newest first, or why it holds none
/// that can be trusted.
pub(crate) fn decode(instance: &str, bytes: &[u8]) -> Result<Vec<Checkpoint>, String> {
    let file: FileIn =
        serde_json::from_slice(bytes).map_err(|e| format!("is not a checkpoint file ({e})"))?;
    if file.format != FORMAT {
        return Err(format!(
            "has format {}; this swapvisor reads format {FORMAT}",
            file.format
        ));
    }
    if file.instance != instance {
        return Err(format!(
            "holds the checkpoints of {:?}, not {instance:?}",
            file.instance
        ));
    }
    let mut checkpoints = file.checkpoints;
    checkpoints.sort_by_key(|c| std::cmp::Reverse(c.sequence));
    checkpoints.truncate(KEPT);
    Ok(checkpoints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn instance_names_become_plain_file_names() {
        assert_eq!(file_name("hits"), "checkpoints/hits.json");
        assert_eq!(file_name("a-b_C9"), "checkpoints/a-b_C9.json");
        assert_eq!(file_name("../x"), "checkpoints/%2E%2E%2Fx.json");
        assert_eq!(file_name(".hidden"), "checkpoints/%2Ehidden.json");
        assert_eq!(file_name("é"), "checkpoints/%C3%A9.json");
        // Each one is a name the state folder accepts.
        let root = tempfile::tempdir().unwrap();
        let dir = crate::state::StateDir::open(root.path().join("state")).unwrap();
        for name in ["../x", "/etc/passwd", ".", "..", "a/b", ".hidden", ""] {
            dir.write(&file_name(name), b"{}").unwrap();
        }
    }

    #[test]
    fn a_file_reads_back_newest_first_and_only_for_its_instance() {
        let by = Identity {
            kind: "counter".into(),
            version: "1.0.0".into(),
            code: None,
        };
        let older = Checkpoint::new(&by, json!({"count": 1}), 1);
        let newer = Checkpoint::new(&by, json!({"count": 2}), 2);
        let kept = [Arc::new(older.clone()), Arc::new(newer.clone())];
        let bytes = encode("hits", &kept).unwrap();
        assert_eq!(decode("hits", &bytes).unwrap(), vec![newer, older]);
        let other = decode("other", &bytes).unwrap_err();
        assert!(other.contains("not \"other\""), "{other}");
        assert!(decode("hits", b"[1, 2]").is_err());
    }
}
