//! The code store: private copies of plugin executables, by content hash, checked at every
//! use.
//!
//! A process plugin never runs the file its config names. The build only *reads* that file and
//! hashes it (a build has no outside effects); the first start copies it into the store under
//! its SHA-256, and every start after that (a restart, a probation revert) runs the copy, so
//! the file on disk can be replaced at any time (a deploy, a bad build) without touching what
//! runs. Copies are written to a temporary name and renamed, so a reader never sees half a file.
//! Hashes of the named files are remembered by the file's identity (device, inode, size,
//! modification and change time), so an unchanged executable is not read again at build.
//!
//! Nothing in the store is trusted for being there. Before each start the copy is opened
//! without following links, checked to be a regular file owned by this user and writable by
//! no one else, and read whole; what was read is hashed and compared with the hash the config
//! was built with, and those same bytes are what runs (see [`super::sealed`]). A copy that
//! fails any check is refused, never silently replaced: the start fails naming the hash
//! expected and found, and [`refused`] counts it. The store folder itself (one per user,
//! `$TMPDIR/swapvisor-code-<uid>` or `SWAPVISOR_CODE_DIR`) is created private (mode 0700) and
//! checked at every use: it must be a folder this user owns that no one else can write.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::watch::content_hash;

/// The largest executable the store takes: it is read whole, into memory, at each start.
const MAX_EXECUTABLE_BYTES: u64 = 512 * 1024 * 1024;

/// Stored copies refused since the process started.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// How many stored copies were refused (a hash mismatch, a foreign owner, a link, a copy
/// others can write) since the process started; the admin API's metrics show it.
#[cfg(feature = "admin")]
pub(crate) fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
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

type KnownHashes = Mutex<HashMap<(PathBuf, FileIdentity), String>>;

fn known() -> &'static KnownHashes {
    static KNOWN: OnceLock<KnownHashes> = OnceLock::new();
    KNOWN.get_or_init(KnownHashes::default)
}

#[allow(unsafe_code)] // Each unsafe block here says why it is sound (SAFETY:).
fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The content hash of `executable`, read (not copied) at build.
pub(super) fn hash_of(executable: &Path) -> Result<String, String> {
    let shown = executable.display();
    let metadata = std::fs::metadata(executable)
        .map_err(|e| format!("cannot read the executable {shown}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("the executable {shown} is not a file"));
    }
    let key = (executable.to_owned(), FileIdentity::of(&metadata));
    if let Some(hash) = known().lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(hash.clone());
    }
    let file = std::fs::File::open(executable)
        .map_err(|e| format!("cannot read the executable {shown}: {e}"))?;
    let bytes =
        read_bounded(file).map_err(|e| format!("cannot read the executable {shown}: {e}"))?;
    let hash = content_hash(&bytes);
    known()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, hash.clone());
    Ok(hash)
}

/// Checks that `hash` names a SHA-256, as a restart's or a revert's pinned code must.
pub(super) fn check_hash(hash: &str) -> Result<(), String> {
    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("{hash:?} is not a SHA-256 code hash"))
    }
}

/// The store's folder, created private when missing and checked every time.
pub(super) fn folder() -> Result<PathBuf, String> {
    let folder = match std::env::var_os("SWAPVISOR_CODE_DIR") {
        Some(folder) => PathBuf::from(folder),
        None => std::env::temp_dir().join(format!("swapvisor-code-{}", uid())),
    };
    let shown = folder.display();
    match std::fs::DirBuilder::new().mode(0o700).create(&folder) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create the plugin code store {shown}: {e}")),
    }
    let metadata = std::fs::symlink_metadata(&folder)
        .map_err(|e| format!("cannot read the plugin code store {shown}: {e}"))?;
    let uid = uid();
    if !metadata.is_dir() || metadata.uid() != uid {
        refuse();
        return Err(format!(
            "the plugin code store {shown} is not a folder owned by this user (uid {uid}); remove it or set SWAPVISOR_CODE_DIR"
        ));
    }
    if metadata.mode() & 0o022 != 0 {
        refuse();
        return Err(format!(
            "the plugin code store {shown} can be written by other users (mode {:o}); make it private (chmod 700) or set SWAPVISOR_CODE_DIR",
            metadata.mode() & 0o777
        ));
    }
    Ok(folder)
}

/// The verified content of the stored copy of `hash`, and that copy opened under a shared
/// lock, copying `source` into the store first when the copy is not there yet (a first start).
/// `source` must still hash to `hash`. Kept in the slot's [`CodeHold`] while the code is live
/// or previous, the lock keeps [`prune`] (of any process) from deleting the copy.
///
/// [`CodeHold`]: crate::extension::plugin::CodeHold
pub(super) fn verified(
    hash: &str,
    source: Option<&Path>,
) -> Result<(Vec<u8>, std::fs::File), String> {
    check_hash(hash)?;
    let path = folder()?.join(hash);
    // Twice at most: a copy another process pruned between our open and our lock is copied
    // again.
    for _ in 0..2 {
        match open_locked(&path) {
            Ok(Some(file)) => return read_checked(&file, &path, hash).map(|bytes| (bytes, file)),
            Ok(None) => {}
            Err(e) => {
                refuse();
                return Err(format!(
                    "refusing to run the stored copy {} of code {hash}: {e}",
                    path.display()
                ));
            }
        }
        let Some(source) = source else {
            return Err(format!(
                "the code {hash} is no longer in the plugin code store {}",
                path.display()
            ));
        };
        store_copy(source, hash, &path)?;
    }
    Err(format!(
        "the copy of code {hash} in the plugin code store {} was deleted as it was stored, twice",
        path.display()
    ))
}

/// Copies `source`, which must hash to `hash`, to `path` in the store (unless a copy is there).
fn store_copy(source: &Path, hash: &str, path: &Path) -> Result<(), String> {
    let shown = source.display();
    let file = std::fs::File::open(source)
        .map_err(|e| format!("cannot read the executable {shown}: {e}"))?;
    let bytes =
        read_bounded(file).map_err(|e| format!("cannot read the executable {shown}: {e}"))?;
    let found = content_hash(&bytes);
    if found != hash {
        return Err(format!(
            "the executable {shown} changed since the config was built (built with sha256:{hash}, now sha256:{found}); reload again to run the new code"
        ));
    }
    write_atomically(path, &bytes)
        .map_err(|e| format!("cannot copy the executable {shown} into the plugin code store: {e}"))
}

/// Opens a stored copy as [`open_checked`] does and takes a shared lock on it; `None` when
/// there is no copy, or it was deleted before the lock was taken.
fn open_locked(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    let file = match open_checked(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockShared)?;
    Ok(still_at(&file, path).then_some(file))
}

/// Whether `path` still names the file `file` has open.
fn still_at(file: &std::fs::File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => (open.dev(), open.ino()) == (named.dev(), named.ino()),
        _ => false,
    }
}

/// Deletes every stored copy that no process holds: one whose exclusive lock can be taken at
/// once. A running plugin's slot holds a shared lock on its live and previous copies (see
/// [`verified`]), so those stay, whichever process (of this user) runs them; everything else
/// (code replaced twice over, a failed start's copy) goes. Called after each start.
pub(super) fn prune() {
    let Ok(folder) = folder() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return;
    };
    for entry in entries.flatten() {
        let is_copy = entry
            .file_name()
            .to_str()
            .is_some_and(|n| check_hash(n).is_ok());
        let path = entry.path();
        let Some(file) = is_copy.then(|| open_checked(&path).ok()).flatten() else {
            continue;
        };
        let free =
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok();
        // Unlinked under the lock: an opener that locks after us sees it gone and copies again.
        if free && still_at(&file, &path) && std::fs::remove_file(&path).is_ok() {
            tracing::debug!(copy = %path.display(), "deleted a plugin code copy no one holds");
        }
    }
}

fn refuse() {
    REFUSED.fetch_add(1, Ordering::Relaxed);
}

/// Opens a stored copy without following a link, and checks it is a regular file of ours that
/// no one else can write. `NotFound` means there is no copy.
fn open_checked(path: &Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::other("it is a symbolic link"),
            _ => e,
        })?;
    // The checks are on what was opened, so a rename after them changes nothing.
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    if metadata.uid() != uid() {
        return Err(std::io::Error::other(format!(
            "it is owned by uid {}, not by this user (uid {})",
            metadata.uid(),
            uid()
        )));
    }
    if metadata.mode() & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "other users can write it (mode {:o})",
            metadata.mode() & 0o777
        )));
    }
    Ok(file)
}

/// Reads an opened copy whole and checks its hash.
fn read_checked(file: &std::fs::File, path: &Path, hash: &str) -> Result<Vec<u8>, String> {
    let bytes = read_bounded(file)
        .map_err(|e| format!("cannot read the stored copy {}: {e}", path.display()))?;
    let found = content_hash(&bytes);
    if found != hash {
        refuse();
        return Err(format!(
            "refusing to run the stored copy {}: its content hash is sha256:{found}, expected sha256:{hash} (it was changed after it was stored)",
            path.display()
        ));
    }
    Ok(bytes)
}

fn read_bounded(file: impl Read) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(MAX_EXECUTABLE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_EXECUTABLE_BYTES {
        return Err(std::io::Error::other(format!(
            "it is larger than {} MiB",
            MAX_EXECUTABLE_BYTES >> 20
        )));
    }
    Ok(bytes)
}

/// Writes a copy under a fresh temporary name (never following or reusing a file that is
/// there), then links it into place unless a copy is there already: a copy another process
/// holds is never replaced under its lock.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary =
        path.with_extension(format!("tmp-{}-{}", std::process::id(), fastrand::u64(..)));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        match std::fs::hard_link(&temporary, path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            linked => linked,
        }
    })();
    let _ = std::fs::remove_file(&temporary);
    written
}
