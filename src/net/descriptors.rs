//! File descriptors: the one limit every listener, connection, config read and plugin process
//! of the process shares.
//!
//! The soft limit is often far below the hard one (systemd gives services 1,024 soft and
//! 524,288 hard), and the soft limit is what `accept` runs out of. Like nginx
//! (`worker_rlimit_nofile`) and Go's runtime, `swapvisor run` raises the soft limit to the hard
//! limit at start, so a flood of idle connections meets the limit an operator actually set.

use std::io;

/// Raises this process's soft limit on open files to its hard limit. Returns the soft limit
/// before and after.
pub(crate) fn raise_open_file_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
    Ok((before as u64, limit.rlim_max as u64))
}
