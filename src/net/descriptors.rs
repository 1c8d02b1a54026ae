//! File descriptors: the one limit every listener, connection, config read and plugin process
//! of the process shares.
//!
//! The soft limit is often far below the hard one (systemd gives services 1,024 soft and
//! 524,288 hard), and the soft limit is what `accept` runs out of. Like nginx
//! (`worker_rlimit_nofile`) and Go's runtime, `swapvisor run` raises the soft limit to the hard
//! limit at start, so a flood of idle connections meets the limit an operator actually set.
//! What the listeners may take of it is decided in [`super::limits`].

use std::io;

/// This process's limit on open files: `(soft, hard)`.
#[allow(unsafe_code)] // Each unsafe block here says why it is sound (SAFETY:).
pub(crate) fn open_file_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
    Ok((limit.rlim_cur as u64, limit.rlim_max as u64))
}

/// Raises this process's soft limit on open files to its hard limit. Returns the soft limit
/// before and after.
#[allow(unsafe_code)] // Each unsafe block here says why it is sound (SAFETY:).
pub(crate) fn raise_open_file_limit() -> io::Result<(u64, u64)> {
    let (soft, hard) = open_file_limit()?;
    if soft < hard {
        let raised = libc::rlimit {
            rlim_cur: hard as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((soft, hard))
}
