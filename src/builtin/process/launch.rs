//! How a plugin process is started (its command, pipes, process group and inherited
//! descriptor) and signalled.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Child;

use crate::process::protocol;

/// What to run.
pub(super) struct Launch<'a> {
    pub(super) executable: &'a Path,
    /// What the process sees as its name (`argv[0]`): the command as the config gives it.
    pub(super) arg0: &'a str,
    /// A descriptor the child inherits: the sealed executable it runs (see
    /// [`super::sealed`]).
    pub(super) inherit: Option<std::os::fd::RawFd>,
    pub(super) args: &'a [String],
    pub(super) env: &'a std::collections::BTreeMap<String, String>,
    pub(super) cwd: Option<&'a Path>,
    /// The instance's name: logs, and `SWAPVISOR_PLUGIN`.
    pub(super) name: &'a str,
    pub(super) max_line_bytes: usize,
}

impl Launch<'_> {
    /// The command that runs it, with its pipes, in a process group of its own: signals reach
    /// whatever it started, and a terminal's Ctrl-C reaches the runtime alone, which then
    /// stops its plugins in order.
    #[allow(unsafe_code)] // Each unsafe block here says why it is sound (SAFETY:).
    pub(super) fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(self.executable);
        command
            .args(self.args)
            .envs(self.env)
            .env("SWAPVISOR_PLUGIN", self.name)
            .env(
                "SWAPVISOR_PROTOCOL_VERSION",
                protocol::PROTOCOL_VERSION.to_string(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        std::os::unix::process::CommandExt::arg0(&mut command, self.arg0);
        if let Some(fd) = self.inherit {
            // SAFETY: the closure runs in the forked child before exec and calls only fcntl,
            // which is async-signal-safe; it clears close-on-exec on a descriptor the parent
            // keeps open for the whole spawn, so the executable's path stays valid in the child.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        if let Some(cwd) = self.cwd {
            command.current_dir(cwd);
        }
        command
    }
}

/// Runs `spawn`, retrying briefly on ETXTBSY: another thread of this process may be forking
/// while a freshly written executable's descriptor is still open in the child it forked.
pub(super) fn retry_busy<T>(mut spawn: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let mut attempt = 0;
    loop {
        match spawn() {
            Err(error) if error.raw_os_error() == Some(libc::ETXTBSY) && attempt < 20 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result,
        }
    }
}

/// Spawns the process, killed if its handle is dropped.
pub(super) fn spawn_child(launch: &Launch<'_>) -> std::io::Result<Child> {
    let mut command = tokio::process::Command::from(launch.command());
    command.kill_on_drop(true);
    retry_busy(|| command.spawn())
}

/// Sends `signal` to the process group led by `leader`.
#[allow(unsafe_code)] // Each unsafe block here says why it is sound (SAFETY:).
pub(super) fn signal_group(leader: u32, signal: i32) {
    let Ok(leader) = i32::try_from(leader) else {
        return;
    };
    if leader <= 0 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. The group is the
    // child's own (spawned with process_group(0)); its id cannot be reused while the child,
    // its leader, is not yet reaped, and only its owner reaps it.
    unsafe {
        libc::kill(-leader, signal);
    }
}
