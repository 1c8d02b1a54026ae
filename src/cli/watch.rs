//! `--watch`: reload when the config file's content changes.
//!
//! The file is followed by a [`FileWatch`] (folder watch, debounced, by content hash). Each
//! change goes through the same reload path as everything else, as a coalescing `watch`
//! request: if several changes queue up behind a slow reload, only the latest is applied.

use std::path::Path;
use std::sync::Arc;

use crate::watch::{DEBOUNCE, FileChange, FileWatch};
use crate::{Origin, Reload, Runtime};

/// Starts watching `path`; changes reload `runtime`.
pub(super) fn watch(path: &Path, runtime: Arc<Runtime>) -> notify::Result<FileWatch> {
    let on_change = move |change: FileChange| {
        let runtime = runtime.clone();
        let reload: futures::future::BoxFuture<'static, bool> = Box::pin(async move {
            tracing::info!("the config file changed; reloading");
            let request = Reload::new(change.content).from(Origin::Watch);
            // An error means the runtime has shut down: stop watching.
            super::systemd::reload(&runtime, request).await.is_ok()
        });
        reload
    };
    let watch = FileWatch::start(path, DEBOUNCE, Box::new(on_change))?;
    tracing::info!(config = %watch.path().display(), debounce_ms = DEBOUNCE.as_millis() as u64, "watching the config file");
    Ok(watch)
}
