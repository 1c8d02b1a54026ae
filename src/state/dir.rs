//! [`StateDir`]: the checked folder, and files written atomically inside it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why the state folder or a file in it cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The folder is not safe to trust, or a name is not a plain relative path.
    #[error("state folder {path}: {message}")]
    Refused {
        /// The folder (or file) refused.
        path: PathBuf,
        /// Why, and what would do.
        message: String,
    },
    /// Reading or writing failed.
    #[error("state folder: cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`write`, `read`, ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
}

impl StateError {
    fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
        move |source| StateError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// The folder the process keeps its state in, checked when opened: owned by the user the
/// process runs as, and writable by no one else.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

/// Makes each temporary file's name unique within the process (the pid tells processes apart).
static TEMPORARY: AtomicU64 = AtomicU64::new(0);

impl StateDir {
    /// Opens the state folder at `path`, creating it (mode 0700) when it does not exist.
    /// Refused when it is not a folder, belongs to another user, or is writable by its group
    /// or others.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StateError> {
        let path = path.into();
        create_private(&path)?;
        let metadata = std::fs::metadata(&path).map_err(StateError::io("inspect", &path))?;
        let refuse = |message: String| StateError::Refused {
            path: path.clone(),
            message,
        };
        if !metadata.is_dir() {
            return Err(refuse("is not a folder".into()));
        }
        let me = rustix::process::geteuid().as_raw();
        if metadata.uid() != me {
            return Err(refuse(format!(
                "belongs to user {} but this process runs as user {me}; give it to this user (chown) or choose another --state-dir",
                metadata.uid()
            )));
        }
        let mode = metadata.mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(refuse(format!(
                "is writable by its group or by others (mode {mode:o}); make it private (chmod 700) or choose another --state-dir"
            )));
        }
        Ok(Self { path })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` to the file `name` (a relative path such as `last-good.json` or
    /// `checkpoints/hits.json`) atomically: the file then holds either its previous content or
    /// all of `bytes`, whatever happens. The file's mode is 0600.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let target = self.file(name)?;
        let parent = target.parent().unwrap_or(&self.path).to_owned();
        create_private(&parent)?;
        let file_name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = parent.join(format!(
            ".{file_name}.{}.{}.tmp",
            std::process::id(),
            TEMPORARY.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &target)?;
            // The rename itself is durable only once the folder is flushed.
            File::open(&parent)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written.map_err(StateError::io("write", &target))
    }

    /// The content of the file `name`, or `None` when there is none. A file larger than
    /// `limit` bytes is an error, not read.
    pub fn read(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.file(name)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(StateError::io("read", &path)(error)),
        };
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(StateError::io("read", &path))?;
        if bytes.len() as u64 > limit {
            return Err(StateError::Refused {
                path,
                message: format!("is larger than {limit} bytes; not read"),
            });
        }
        Ok(Some(bytes))
    }

    /// Deletes the file `name`; nothing when there is none.
    pub fn remove(&self, name: &str) -> Result<(), StateError> {
        let path = self.file(name)?;
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                Err(StateError::io("delete", &path)(error))
            }
            _ => Ok(()),
        }
    }

    /// The path of `name` inside the folder: only plain relative names, so that no name can
    /// reach outside it.
    fn file(&self, name: &str) -> Result<PathBuf, StateError> {
        let relative = Path::new(name);
        let plain = !name.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(part) if !part.to_string_lossy().starts_with('.')));
        if !plain {
            return Err(StateError::Refused {
                path: self.path.clone(),
                message: format!(
                    "{name:?} is not a plain relative file name (no `..`, no leading `/` or `.`)"
                ),
            });
        }
        Ok(self.path.join(relative))
    }
}

/// Creates `path` (and what leads to it) with mode 0700 when it does not exist.
fn create_private(path: &Path) -> Result<(), StateError> {
    if path.exists() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(StateError::io("create", path))
}

/// Where the state folder is when `--state-dir` and `SWAPVISOR_STATE_DIR` say nothing: the
/// folder systemd made for the service (`StateDirectory=`, given as `$STATE_DIRECTORY`), else
/// `$XDG_STATE_HOME/swapvisor`, else `~/.local/state/swapvisor`; `None` without a home.
pub fn default_path() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(systemd) = var("STATE_DIRECTORY") {
        // systemd lists one folder per StateDirectory= entry, separated by colons.
        let first = systemd.to_string_lossy().split(':').next()?.to_owned();
        return Some(PathBuf::from(first));
    }
    if let Some(xdg) = var("XDG_STATE_HOME") {
        return Some(PathBuf::from(xdg).join("swapvisor"));
    }
    var("HOME").map(|home| PathBuf::from(home).join(".local/state/swapvisor"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_whole_files_private_to_the_user() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(root.path().join("state")).unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        dir.write("checkpoints/a.json", b"one").unwrap();
        dir.write("checkpoints/a.json", b"two").unwrap();
        assert_eq!(dir.read("checkpoints/a.json", 10).unwrap().unwrap(), b"two");
        let file = dir.path().join("checkpoints/a.json");
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
        assert!(dir.read("missing.json", 10).unwrap().is_none());
        assert!(matches!(
            dir.read("checkpoints/a.json", 2),
            Err(StateError::Refused { .. })
        ));
        dir.remove("checkpoints/a.json").unwrap();
        dir.remove("checkpoints/a.json").unwrap();
        assert!(dir.read("checkpoints/a.json", 10).unwrap().is_none());
    }

    #[test]
    fn refuses_names_that_leave_the_folder() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(root.path()).unwrap_or_else(|_| {
            std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
            StateDir::open(root.path()).unwrap()
        });
        for name in ["../x", "/etc/passwd", "", ".hidden", "a/../../b"] {
            assert!(
                matches!(dir.write(name, b"x"), Err(StateError::Refused { .. })),
                "{name:?} was accepted"
            );
        }
    }

    #[test]
    fn refuses_a_folder_others_can_write() {
        let root = tempfile::tempdir().unwrap();
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = StateDir::open(&open).unwrap_err().to_string();
        assert!(
            error.contains("writable by its group or by others (mode 777)"),
            "{error}"
        );
        let file = root.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let error = StateDir::open(&file).unwrap_err().to_string();
        assert!(error.contains("is not a folder"), "{error}");
    }

    #[test]
    fn refuses_a_folder_of_another_user() {
        let root = tempfile::tempdir().unwrap();
        let theirs = root.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Only root can give a folder away; as anyone else, a folder of root's is "another
        // user's" already.
        let other = if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            theirs
        } else {
            PathBuf::from("/")
        };
        let error = StateDir::open(&other).unwrap_err().to_string();
        assert!(error.contains("belongs to user"), "{error}");
    }
}
