//! `--watch`: reload when the config file's content changes.
//!
//! The watcher watches the file's *folder*, not the file: editors and deploy tools often save
//! by writing a temporary file and renaming it over the config, which replaces the inode a
//! file watch would follow. Events are debounced (a burst of writes is one change) and a change
//! whose content hashes the same as the last one seen is skipped. Each change goes through the
//! same reload path as everything else, as a coalescing `watch` request: if several changes
//! queue up behind a slow reload, only the latest is applied.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use swapvisor::config::read_file;
use swapvisor::{Origin, Reload, Runtime};
use tokio::sync::mpsc;

/// How long the file must be quiet before a change is applied.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// A running watcher; dropping it stops watching.
pub struct ConfigWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Starts watching `path`; changes reload `runtime`.
pub fn watch(path: &Path, runtime: Arc<Runtime>) -> notify::Result<ConfigWatcher> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let folder = path
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = path.file_name().map(|n| n.to_owned());
    let (changes, mut changed) = mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                let ours = event.paths.iter().any(|p| p.file_name() == name.as_deref());
                if ours && !event.kind.is_access() {
                    let _ = changes.send(());
                }
            }
            Err(error) => tracing::warn!(%error, "file watch error"),
        })?;
    watcher.watch(&folder, RecursiveMode::NonRecursive)?;
    let mut last = read_file(&path).ok().map(|bytes| digest(&bytes));
    tracing::info!(config = %path.display(), debounce_ms = DEBOUNCE.as_millis() as u64, "watching the config file");
    let task = tokio::spawn(async move {
        while changed.recv().await.is_some() {
            // Wait until the file has been quiet for a whole debounce period.
            loop {
                match tokio::time::timeout(DEBOUNCE, changed.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let source = match read_file(&path) {
                Ok(source) => source,
                Err(error) => {
                    // Mid-rename, or deleted: the next event tells.
                    tracing::warn!(%error, "the config file changed but cannot be read; keeping the current config");
                    continue;
                }
            };
            let hash = digest(&source);
            if last == Some(hash) {
                tracing::debug!(
                    "the config file was touched but its content is unchanged; not reloading"
                );
                continue;
            }
            last = Some(hash);
            tracing::info!(config = %path.display(), "the config file changed; reloading");
            let request = Reload::new(source).from(Origin::Watch);
            if runtime.reload(request).await.is_err() {
                return; // the runtime has shut down
            }
        }
    });
    Ok(ConfigWatcher {
        _watcher: watcher,
        task,
    })
}
