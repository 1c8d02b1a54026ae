//! [`CheckpointStore`]: the checkpoints of one plugin slot, in memory and (with a state folder)
//! on disk.
//!
//! A checkpoint is taken on the plugin's own time, often on every call, so taking one is a
//! size check and a short lock: the latest is in memory before the call that took it is
//! answered, which is what a crash restart imports. The file in the state folder follows in
//! the background: one writer task per slot writes the latest kept checkpoints whenever they
//! changed since its last write, so a burst of checkpoints costs one write, not one each (the
//! latest wins). A plugin that never checkpoints leaves its store empty, and an empty store
//! changes nothing: no file, no import, no status.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::checkpoint::{
    self, Checkpoint, CheckpointStatus, Identity, ImportCause, ImportedCheckpoint, KEPT,
};
use crate::extension::plugin::{CheckpointError, json_size};
use crate::state::StateDir;

/// The checkpoints of one plugin slot (one instance name), shared by its instances.
pub(crate) struct CheckpointStore {
    name: Arc<str>,
    /// The largest state kept, as compact JSON.
    limit: usize,
    dir: Option<StateDir>,
    inner: Mutex<Inner>,
    /// The sequence number of the latest checkpoint kept: the writer follows it.
    wanted: watch::Sender<u64>,
    /// The latest sequence number the writer has dealt with (written, or failed to write).
    attempted: watch::Sender<u64>,
    /// The latest sequence number on disk.
    saved: AtomicU64,
    writer: OnceLock<()>,
    /// Set when the state folder held checkpoints: the slot's first start imports them.
    import_at_start: AtomicBool,
}

#[derive(Default)]
struct Inner {
    /// Newest first, one per identity, at most [`KEPT`].
    kept: Vec<Arc<Checkpoint>>,
    next: u64,
    taken: u64,
    refused: u64,
    last_refused: Option<String>,
    imported: Option<ImportedCheckpoint>,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStore")
            .field("name", &self.name)
            .field("dir", &self.dir.as_ref().map(StateDir::path))
            .finish_non_exhaustive()
    }
}

impl CheckpointStore {
    /// The store of the instance `name`, holding what `dir`'s file for it holds. A file that
    /// cannot be read or trusted is logged and left alone (the next checkpoint replaces it):
    /// the instance starts afresh rather than not at all.
    pub(crate) fn open(name: &str, dir: Option<StateDir>, limit: usize) -> Arc<Self> {
        let mut inner = Inner {
            next: 1,
            ..Inner::default()
        };
        if let Some(dir) = &dir {
            let file = checkpoint::file_name(name);
            // Every kept state is within the limit; the rest is their metadata.
            let most = (KEPT * (limit + 4096)) as u64;
            let read =
                dir.read(&file, most)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| match bytes {
                        Some(bytes) => checkpoint::decode(name, &bytes)
                            .map_err(|why| format!("{}: {why}", dir.path().join(&file).display())),
                        None => Ok(Vec::new()),
                    });
            match read {
                Ok(found) => {
                    inner.next = found.first().map_or(1, |c| c.sequence + 1);
                    inner.kept = found.into_iter().map(Arc::new).collect();
                }
                Err(error) => {
                    tracing::warn!(plugin = %name, %error, "ignoring the plugin's checkpoint file; the next checkpoint replaces it")
                }
            }
        }
        let latest = inner.kept.first().map_or(0, |c| c.sequence);
        if latest > 0 {
            tracing::info!(plugin = %name, sequence = latest, "found the plugin's latest checkpoint in the state folder");
        }
        Arc::new(Self {
            name: Arc::from(name),
            limit,
            dir,
            import_at_start: AtomicBool::new(latest > 0),
            inner: Mutex::new(inner),
            wanted: watch::channel(latest).0,
            attempted: watch::channel(latest).0,
            saved: AtomicU64::new(latest),
            writer: OnceLock::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain data changed in short critical sections: a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `state`, taken by `by`, as the latest checkpoint; refused (logged and counted)
    /// when it is over the limit.
    pub(crate) fn take(
        self: &Arc<Self>,
        by: &Identity,
        state: Value,
    ) -> Result<(), CheckpointError> {
        if json_size(&state, self.limit).is_none() {
            let limit = self.limit;
            self.refuse(format!(
                "a checkpoint larger than {limit} bytes as JSON was refused"
            ));
            return Err(CheckpointError::TooLarge { limit });
        }
        let sequence = {
            let mut inner = self.lock();
            let sequence = inner.next;
            inner.next += 1;
            inner.taken += 1;
            keep(&mut inner.kept, Checkpoint::new(by, state, sequence));
            sequence
        };
        self.write_soon(sequence);
        Ok(())
    }

    /// `state`, exported by `by` for a reload or an upgrade, as a checkpoint numbered after the
    /// latest. It is kept too when the plugin takes checkpoints (and is within the limit), so
    /// that the state a reload handed over is what a crash of the new instance goes back to.
    pub(crate) fn exported(self: &Arc<Self>, by: &Identity, state: Value) -> Checkpoint {
        let keeping = !self.is_empty() && json_size(&state, self.limit).is_some();
        let mut checkpoint = {
            let mut inner = self.lock();
            let sequence = inner.next;
            inner.next += 1;
            let checkpoint = Checkpoint::new(by, state, sequence);
            if keeping {
                keep(&mut inner.kept, checkpoint.clone());
            }
            checkpoint
        };
        if keeping {
            self.write_soon(checkpoint.sequence);
        }
        checkpoint.exported = true;
        checkpoint
    }

    /// Counts and logs a refusal: the first, then at every power of two, so that a plugin
    /// that checkpoints too much on every call does not flood the log.
    pub(crate) fn refuse(&self, why: String) {
        let refused = {
            let mut inner = self.lock();
            inner.refused += 1;
            inner.last_refused = Some(why.clone());
            inner.refused
        };
        if refused.is_power_of_two() {
            tracing::warn!(plugin = %self.name, refused, "{why}");
        }
    }

    /// True when the plugin never took a checkpoint (nor did an earlier process).
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().kept.is_empty()
    }

    /// The latest checkpoint of plugin kind `kind`.
    pub(crate) fn latest_of(&self, kind: &str) -> Option<Checkpoint> {
        let inner = self.lock();
        let latest = inner.kept.iter().find(|c| c.kind == kind)?;
        Some((**latest).clone())
    }

    /// What to offer an instance of `importer`, best first: `first` (else the latest of its
    /// kind), then the latest its own code took, if that is another one.
    pub(crate) fn candidates(
        &self,
        importer: &Identity,
        first: Option<Checkpoint>,
    ) -> Vec<Checkpoint> {
        let Some(first) = first.or_else(|| self.latest_of(&importer.kind)) else {
            return Vec::new();
        };
        let own = {
            let inner = self.lock();
            inner
                .kept
                .iter()
                .find(|c| c.taken_by(importer) && c.sequence != first.sequence)
                .map(|c| (**c).clone())
        };
        std::iter::once(first).chain(own).collect()
    }

    /// Records that the running instance imported `checkpoint`, for status.
    pub(crate) fn imported(&self, checkpoint: &Checkpoint, cause: ImportCause) {
        tracing::info!(plugin = %self.name, sequence = checkpoint.sequence, taken_at = %checkpoint.taken_at, version = %checkpoint.version, ?cause, "the plugin imported its checkpoint");
        self.lock().imported = Some(ImportedCheckpoint {
            checkpoint: checkpoint.summary(),
            cause,
            imported_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        });
    }

    /// True once, for the slot's first start, when the state folder held checkpoints.
    pub(crate) fn take_import_at_start(&self) -> bool {
        self.import_at_start.swap(false, Ordering::SeqCst)
    }

    /// The store as status shows it; `None` while it has nothing to show.
    pub(crate) fn status(&self) -> Option<CheckpointStatus> {
        let inner = self.lock();
        if inner.kept.is_empty() && inner.refused == 0 && inner.imported.is_none() {
            return None;
        }
        let saved = self.saved.load(Ordering::SeqCst);
        Some(CheckpointStatus {
            latest: inner.kept.first().map(|c| c.summary()),
            saved: (self.dir.is_some() && saved > 0).then_some(saved),
            taken: inner.taken,
            refused: inner.refused,
            last_refused: inner.last_refused.clone(),
            imported: inner.imported.clone(),
        })
    }

    /// Waits (until `deadline`) for the writer to have dealt with every checkpoint kept so far:
    /// for a graceful shutdown, so that what the instance last checkpointed is on disk.
    pub(crate) async fn flush(&self, deadline: Instant) {
        let target = *self.wanted.borrow();
        if self.dir.is_none() || self.writer.get().is_none() {
            return;
        }
        let mut attempted = self.attempted.subscribe();
        let flushed =
            tokio::time::timeout_at(deadline, attempted.wait_for(|done| *done >= target)).await;
        if flushed.is_err() {
            tracing::warn!(plugin = %self.name, sequence = target, "the latest checkpoint was not written before the deadline");
        }
    }

    /// Asks the writer to write the kept checkpoints, the latest being `sequence`; starts the
    /// writer the first time.
    fn write_soon(self: &Arc<Self>, sequence: u64) {
        if self.dir.is_none() {
            return;
        }
        if self.writer.get().is_none() {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                tracing::debug!(plugin = %self.name, "no async runtime to write checkpoints from");
                return;
            };
            if self.writer.set(()).is_ok() {
                let changes = self.wanted.subscribe();
                runtime.spawn(write_all(Arc::downgrade(self), changes));
            }
        }
        self.wanted.send_if_modified(|wanted| {
            let newer = sequence > *wanted;
            if newer {
                *wanted = sequence;
            }
            newer
        });
    }
}

/// Puts `checkpoint` first, replacing the one its identity took before, and keeps [`KEPT`].
fn keep(kept: &mut Vec<Arc<Checkpoint>>, checkpoint: Checkpoint) {
    kept.retain(|c| {
        !(c.kind == checkpoint.kind && c.version == checkpoint.version && c.code == checkpoint.code)
    });
    kept.insert(0, Arc::new(checkpoint));
    kept.truncate(KEPT);
}

/// The writer of one store: whenever the wanted sequence moves, writes what the store keeps
/// then. Ends with the store (its sender goes with it).
async fn write_all(store: Weak<CheckpointStore>, mut changes: watch::Receiver<u64>) {
    while changes.changed().await.is_ok() {
        let Some(store) = store.upgrade() else {
            return;
        };
        let Some(dir) = store.dir.clone() else {
            return;
        };
        let kept = store.lock().kept.clone();
        let sequence = kept.first().map_or(0, |c| c.sequence);
        let name = store.name.clone();
        let written = tokio::task::spawn_blocking(move || {
            let bytes = checkpoint::encode(&name, &kept)?;
            dir.write(&checkpoint::file_name(&name), &bytes)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("the checkpoint writer failed: {e}")));
        match written {
            Ok(()) => {
                store.saved.fetch_max(sequence, Ordering::SeqCst);
            }
            Err(error) => store.refuse(format!("cannot write the checkpoint to disk: {error}")),
        }
        store.attempted.send_replace(sequence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn by(version: &str) -> Identity {
        Identity {
            kind: "counter".into(),
            version: version.into(),
            code: None,
        }
    }

    fn folder() -> (tempfile::TempDir, StateDir) {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(root.path().join("state")).unwrap();
        (root, dir)
    }

    #[tokio::test]
    async fn the_latest_checkpoint_wins_and_reaches_the_disk() {
        let (_root, dir) = folder();
        let store = CheckpointStore::open("hits", Some(dir.clone()), 1024);
        assert!(store.is_empty() && store.status().is_none());
        for count in 1..=50 {
            store.take(&by("1"), json!({ "count": count })).unwrap();
        }
        store
            .flush(Instant::now() + std::time::Duration::from_secs(10))
            .await;
        let status = store.status().unwrap();
        assert_eq!((status.taken, status.saved), (50, Some(50)));
        assert_eq!(
            store.latest_of("counter").unwrap().state,
            json!({"count": 50})
        );
        // A new process reads it back, and numbers on from it.
        let again = CheckpointStore::open("hits", Some(dir), 1024);
        assert!(again.take_import_at_start() && !again.take_import_at_start());
        let latest = again.latest_of("counter").unwrap();
        assert_eq!((latest.sequence, latest.state), (50, json!({"count": 50})));
        again.take(&by("1"), json!({"count": 51})).unwrap();
        assert_eq!(again.latest_of("counter").unwrap().sequence, 51);
    }

    #[tokio::test]
    async fn an_oversized_checkpoint_is_refused_and_counted_and_the_latest_stays() {
        let store = CheckpointStore::open("hits", None, 64);
        store.take(&by("1"), json!({"count": 1})).unwrap();
        let big = json!({ "blob": "x".repeat(100) });
        assert_eq!(
            store.take(&by("1"), big),
            Err(CheckpointError::TooLarge { limit: 64 })
        );
        let status = store.status().unwrap();
        assert_eq!((status.taken, status.refused, status.saved), (1, 1, None));
        assert!(
            status
                .last_refused
                .unwrap()
                .contains("larger than 64 bytes")
        );
        assert_eq!(
            store.latest_of("counter").unwrap().state,
            json!({"count": 1})
        );
    }

    #[tokio::test]
    async fn an_import_is_offered_the_latest_then_what_its_own_code_took() {
        let store = CheckpointStore::open("hits", None, 1024);
        store.take(&by("1"), json!({"count": 5})).unwrap();
        store.take(&by("2"), json!({"total": 9})).unwrap();
        let offered: Vec<Value> = store
            .candidates(&by("1"), None)
            .into_iter()
            .map(|c| c.state)
            .collect();
        assert_eq!(offered, [json!({"total": 9}), json!({"count": 5})]);
        // Code 2's own checkpoint is the latest: offered once.
        assert_eq!(store.candidates(&by("2"), None).len(), 1);
        // Another kind is offered nothing.
        let other = Identity {
            kind: "process".into(),
            ..by("1")
        };
        assert!(store.candidates(&other, None).is_empty());
        // Every other code keeps one; at most KEPT in all.
        for version in 3..10 {
            store
                .take(&by(&version.to_string()), json!(version))
                .unwrap();
        }
        assert_eq!(store.lock().kept.len(), KEPT);
    }

    #[tokio::test]
    async fn an_export_is_kept_only_by_a_plugin_that_checkpoints() {
        let store = CheckpointStore::open("hits", None, 1024);
        let handed = store.exported(&by("1"), json!({"count": 3}));
        assert!(handed.exported && store.is_empty() && store.status().is_none());
        store.take(&by("1"), json!({"count": 4})).unwrap();
        let handed = store.exported(&by("1"), json!({"count": 5}));
        assert!(handed.sequence > 1);
        assert_eq!(
            store.latest_of("counter").unwrap().state,
            json!({"count": 5})
        );
    }
}
