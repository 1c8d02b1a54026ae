//! Running exactly the bytes that were checked.
//!
//! Checking a file and then executing it by path leaves a window in which the path can come to
//! name something else. So a process plugin runs from a *sealed memory file*: the verified
//! bytes are written into a `memfd`, sealed against any further write, resize or unsealing,
//! and the child executes that descriptor (`/proc/self/fd/N`, which also lets an interpreter
//! open a `#!` script). Nothing on disk is consulted after the hash was compared.
//!
//! Where memory files are not available (another OS, or a kernel that forbids executing them),
//! the plugin runs its verified store copy by path, as the fallback the store's private folder
//! and per-use checks make safe against every user but this one.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// Executable bytes held in a sealed, read-only memory file.
#[derive(Debug)]
pub(super) struct SealedExecutable {
    fd: OwnedFd,
}

impl SealedExecutable {
    /// Seals a copy of `bytes`; `None` when this system cannot execute memory files.
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)] // Each unsafe block here says why it is sound (SAFETY:).
    pub(super) fn new(bytes: &[u8]) -> Option<Self> {
        use std::io::Write;
        // MFD_EXEC (Linux 6.3) asks for an executable memfd where the sysctl
        // vm.memfd_noexec would otherwise default to a non-executable one; older kernels
        // refuse the flag, and their memfds are executable anyway.
        const MFD_EXEC: libc::c_uint = 0x0010;
        let name = c"swapvisor-plugin";
        let create = |flags: libc::c_uint| {
            // SAFETY: `name` is a NUL-terminated string; memfd_create has no other preconditions.
            let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
            // SAFETY: a non-negative result is a fresh descriptor that nothing else owns.
            (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
        };
        let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        let writable = create(base | MFD_EXEC).or_else(|| create(base))?;
        let mut file = std::fs::File::from(writable);
        file.write_all(bytes).ok()?;
        let seals =
            libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
        // SAFETY: F_ADD_SEALS on a descriptor this function owns.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return None;
        }
        // A descriptor open for writing makes exec fail with ETXTBSY: keep a read-only one.
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let readable = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .ok()?;
        drop(file);
        Some(Self {
            fd: readable.into(),
        })
    }

    /// Memory files are Linux's; elsewhere the store copy runs by path.
    #[cfg(not(target_os = "linux"))]
    pub(super) fn new(_bytes: &[u8]) -> Option<Self> {
        None
    }

    /// The path the child executes. It names the descriptor in the child, which inherits it
    /// (see [`Self::descriptor`]).
    pub(super) fn path(&self) -> PathBuf {
        Path::new("/proc/self/fd").join(self.fd.as_raw_fd().to_string())
    }

    /// The descriptor the child must inherit (it is close-on-exec for every other child).
    pub(super) fn descriptor(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(target_os = "linux")]
use std::os::unix::fs::OpenOptionsExt;

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[test]
    fn the_sealed_copy_holds_the_bytes_and_refuses_writes() {
        let sealed = SealedExecutable::new(b"#!/bin/sh\nexit 0\n").expect("memfd");
        let mut file = std::fs::File::open(sealed.path()).expect("open");
        let mut read = String::new();
        file.read_to_string(&mut read).expect("read");
        assert_eq!(read, "#!/bin/sh\nexit 0\n");
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .open(sealed.path())
            .expect("open for writing");
        writer.rewind().expect("rewind");
        assert!(writer.write_all(b"#!/bin/sh\nexit 1\n").is_err());
    }
}
