//! The safe join of `step.static`: a requested path to a regular file inside the root, or a
//! refusal.
//!
//! Two checks, both needed:
//!
//! 1. The text: the path (already percent-decoded once, never twice) is split at `/`, and it is
//!    refused when it holds a NUL byte or a backslash, starts with `/` (absolute), or has a
//!    `..` segment. Empty and `.` segments are skipped.
//! 2. The file system: the joined path and the root are canonicalized (every symlink
//!    followed), and the file must still lie under the root, component by component. A
//!    symlink that points out of the root is refused; one that stays inside is served. The
//!    index file of a folder is checked the same way.
//!
//! What is left: a check and the open that follows it are two steps, so someone who can
//! write inside the root can swap a file for a symlink in between. Whoever can write there
//! already chooses what is served; the root must not be writable by those it serves.

use std::path::{Path, PathBuf};

/// What a requested path resolved to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Resolved {
    /// A regular file inside the root: its canonical path.
    File(PathBuf),
    /// Nothing there (or nothing readable, or a folder without its index file).
    NotFound,
    /// The path is not one this step serves; the reason is for the debug log only.
    Refused(&'static str),
}

/// The segments of `path` under the root, or why it is refused.
pub(super) fn segments(path: &str) -> Result<Vec<&str>, &'static str> {
    if path.contains('\0') {
        return Err("a NUL byte");
    }
    if path.contains('\\') {
        return Err("a backslash");
    }
    if path.starts_with('/') {
        return Err("an absolute path");
    }
    let mut kept = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err("a `..` segment"),
            other => kept.push(other),
        }
    }
    Ok(kept)
}

/// Resolves `path` under `root`, trying `index` inside a folder.
pub(super) async fn resolve(root: &Path, path: &str, index: &str) -> Resolved {
    let segments = match segments(path) {
        Ok(segments) => segments,
        Err(reason) => return Resolved::Refused(reason),
    };
    // Canonicalized per request: a root that is a symlink (a `current` release link) is
    // followed to wherever it points now.
    let root = match tokio::fs::canonicalize(root).await {
        Ok(root) => root,
        Err(error) => {
            tracing::warn!(root = %root.display(), %error, "step.static: the root folder is gone");
            return Resolved::NotFound;
        }
    };
    let mut candidate = root.clone();
    candidate.extend(segments);
    let mut target = match inside(&root, &candidate).await {
        Ok(target) => target,
        Err(resolved) => return resolved,
    };
    let mut metadata = match tokio::fs::metadata(&target).await {
        Ok(metadata) => metadata,
        Err(_) => return Resolved::NotFound,
    };
    if metadata.is_dir() {
        target = match inside(&root, &target.join(index)).await {
            Ok(target) => target,
            Err(resolved) => return resolved,
        };
        metadata = match tokio::fs::metadata(&target).await {
            Ok(metadata) => metadata,
            Err(_) => return Resolved::NotFound,
        };
    }
    if metadata.is_file() {
        Resolved::File(target)
    } else {
        // A folder as index, a FIFO, a device: never opened.
        Resolved::Refused("not a regular file")
    }
}

/// The canonical form of `candidate`, when it lies under the canonical `root`.
async fn inside(root: &Path, candidate: &Path) -> Result<PathBuf, Resolved> {
    match tokio::fs::canonicalize(candidate).await {
        Ok(target) if target.starts_with(root) => Ok(target),
        Ok(_) => Err(Resolved::Refused("a path that leaves the root")),
        // Missing, unreadable, ENOTDIR (a file used as a folder), ELOOP, ENAMETOOLONG: nothing
        // to serve, and nothing said about which.
        Err(_) => Err(Resolved::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_split_into_their_segments() {
        assert_eq!(segments("a/b.txt"), Ok(vec!["a", "b.txt"]));
        assert_eq!(segments("a//./b/"), Ok(vec!["a", "b"]));
        assert_eq!(segments(""), Ok(vec![]));
        assert_eq!(segments("..."), Ok(vec!["..."]));
        assert_eq!(segments("a..b"), Ok(vec!["a..b"]));
    }

    // The file system's half (symlinks, folders, index files) is tested through a real
    // server in cli/tests/static_files.rs.
    #[test]
    fn escapes_are_refused_by_their_text() {
        assert_eq!(segments("../x"), Err("a `..` segment"));
        assert_eq!(segments("a/../../x"), Err("a `..` segment"));
        assert_eq!(segments("a/.."), Err("a `..` segment"));
        assert_eq!(segments("/etc/passwd"), Err("an absolute path"));
        assert_eq!(segments("..\\x"), Err("a backslash"));
        assert_eq!(segments("a\0.txt"), Err("a NUL byte"));
    }
}
