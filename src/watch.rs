//! Following one file's content: what `--watch` does for the config, and what `watch: true`
//! does for a process plugin's executable.
//!
//! A [`FileWatch`] watches the file's *folder*, not the file: editors and deploy tools often
//! save by writing a temporary file and renaming it over the old one, which replaces the inode
//! a file watch would follow, and a Kubernetes ConfigMap update swaps a `..data` symlink in the
//! folder without ever naming the file. So every change in the folder is a reason to look. Events are debounced (a burst of writes is one change), and a
//! change whose content hashes the same as the last one seen is skipped, so a touch or a
//! rewrite of the same bytes does nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::BoxFuture;
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// How long a file must be quiet before a change is passed on, by default.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// A changed file: its content, and the content's SHA-256 in lowercase hex.
#[derive(Debug)]
pub struct FileChange {
    /// The file's content now.
    pub content: Vec<u8>,
    /// Its SHA-256.
    pub hash: String,
}

/// What a [`FileWatch`] calls with each change; it returns false to stop watching.
pub type OnChange = Box<dyn FnMut(FileChange) -> BoxFuture<'static, bool> + Send>;

/// A running watch of one file; dropping it stops watching.
pub struct FileWatch {
    path: PathBuf,
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FileWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatch")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The SHA-256 of `bytes` in lowercase hex.
pub fn content_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl FileWatch {
    /// Starts watching `path`, calling `on_change` after each change of its content that
    /// stayed quiet for `debounce`. Must be called within a tokio runtime.
    pub fn start(path: &Path, debounce: Duration, mut on_change: OnChange) -> notify::Result<Self> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let folder = path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        let (changes, mut changed) = mpsc::unbounded_channel::<()>();
        // Any change in the folder may change the file's content without naming it: a
        // Kubernetes ConfigMap update swaps a `..data` symlink the file resolves through. The
        // content hash below keeps changes to other files from reloading anything.
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) => {
                    if !event.kind.is_access() {
                        let _ = changes.send(());
                    }
                }
                Err(error) => tracing::warn!(%error, "file watch error"),
            })?;
        watcher.watch(&folder, RecursiveMode::NonRecursive)?;
        let mut last = std::fs::read(&path).ok().map(|bytes| content_hash(&bytes));
        let watched = path.clone();
        let task = tokio::spawn(async move {
            while changed.recv().await.is_some() {
                // Wait until the file has been quiet for a whole debounce period.
                loop {
                    match tokio::time::timeout(debounce, changed.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let content = match tokio::fs::read(&watched).await {
                    Ok(content) => content,
                    Err(error) => {
                        // Mid-rename, or deleted: the next event tells.
                        tracing::warn!(file = %watched.display(), %error, "the watched file changed but cannot be read");
                        continue;
                    }
                };
                let hash = content_hash(&content);
                if last.as_ref() == Some(&hash) {
                    tracing::debug!(file = %watched.display(), "the watched file was touched but its content is unchanged");
                    continue;
                }
                last = Some(hash.clone());
                if !on_change(FileChange { content, hash }).await {
                    return;
                }
            }
        });
        Ok(Self {
            path,
            _watcher: watcher,
            task,
        })
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
