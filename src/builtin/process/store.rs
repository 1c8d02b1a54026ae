//! The code store: private copies of plugin executables, by content hash.
//!
//! A process plugin never runs the file its config names. At build it copies the file into the
//! store under its SHA-256 and runs the copy, so the file on disk can be replaced at any time
//! (a deploy, a bad build) without touching what runs, and a restart or a probation revert
//! runs exactly the code it ran before. Copies are written to a temporary name and renamed,
//! so a reader never sees half a file. Hashes are remembered by the file's identity (device,
//! inode, size, modification time), so an unchanged executable is not read again.
//!
//! The store is one folder per user, `$TMPDIR/swapvisor-code-<uid>` (or `SWAPVISOR_CODE_DIR`),
//! created private (mode 0700) and refused when another user owns it.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::watch::content_hash;

/// A pinned executable: its content hash and the private copy to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoredCode {
    /// Lowercase hex SHA-256 of the content.
    pub(super) hash: String,
    /// The copy in the store.
    pub(super) path: PathBuf,
}

/// What identifies a file's content without reading it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct FileIdentity {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i64,
    changed_ns: i64,
}

impl FileIdentity {
    fn of(metadata: &std::fs::Metadata) -> Self {
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified_ns: metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
            changed_ns: metadata.ctime() * 1_000_000_000 + metadata.ctime_nsec(),
        }
    }
}

/// The store's folder and the hashes already known.
struct Store {
    folder: PathBuf,
    known: Mutex<HashMap<(PathBuf, FileIdentity), String>>,
}

fn store() -> Result<&'static Store, String> {
    static STORE: OnceLock<Result<Store, String>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let folder = match std::env::var_os("SWAPVISOR_CODE_DIR") {
                Some(folder) => PathBuf::from(folder),
                // SAFETY: getuid has no preconditions and cannot fail.
                None => std::env::temp_dir()
                    .join(format!("swapvisor-code-{}", unsafe { libc::getuid() })),
            };
            prepare(&folder).map(|()| Store {
                folder,
                known: Mutex::default(),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Creates the folder private, or checks that an existing one is ours and private.
fn prepare(folder: &Path) -> Result<(), String> {
    let shown = folder.display();
    std::fs::create_dir_all(folder)
        .map_err(|e| format!("cannot create the plugin code store {shown}: {e}"))?;
    let metadata = std::fs::symlink_metadata(folder)
        .map_err(|e| format!("cannot read the plugin code store {shown}: {e}"))?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if !metadata.is_dir() || metadata.uid() != uid {
        return Err(format!(
            "the plugin code store {shown} is not a folder owned by this user (uid {uid}); set SWAPVISOR_CODE_DIR"
        ));
    }
    std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot make the plugin code store {shown} private: {e}"))
}

/// Copies `executable` into the store (unless its content is there already) and returns the
/// copy to run.
pub(super) fn pin(executable: &Path) -> Result<StoredCode, String> {
    let store = store()?;
    let shown = executable.display();
    let metadata = std::fs::metadata(executable)
        .map_err(|e| format!("cannot read the executable {shown}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("the executable {shown} is not a file"));
    }
    let key = (executable.to_owned(), FileIdentity::of(&metadata));
    let known = store
        .known
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    if let Some(hash) = known
        && let Ok(code) = stored(&hash)
    {
        return Ok(code);
    }
    let bytes =
        read_whole(executable).map_err(|e| format!("cannot read the executable {shown}: {e}"))?;
    let hash = content_hash(&bytes);
    let path = store.folder.join(&hash);
    if !path.is_file() {
        write_atomically(&path, &bytes).map_err(|e| {
            format!("cannot copy the executable {shown} into the plugin code store: {e}")
        })?;
    }
    store
        .known
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, hash.clone());
    Ok(StoredCode { hash, path })
}

/// The stored copy of the code `hash`, which an earlier instance ran.
pub(super) fn stored(hash: &str) -> Result<StoredCode, String> {
    let valid = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(format!("{hash:?} is not a SHA-256 code hash"));
    }
    let path = store()?.folder.join(hash);
    if !path.is_file() {
        return Err(format!(
            "the code {hash} is no longer in the plugin code store {}",
            path.display()
        ));
    }
    Ok(StoredCode {
        hash: hash.to_owned(),
        path,
    })
}

fn read_whole(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary =
        path.with_extension(format!("tmp-{}-{}", std::process::id(), fastrand::u64(..)));
    let written = (|| {
        std::fs::write(&temporary, bytes)?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o700))?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}
