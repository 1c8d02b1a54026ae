//! Running the `swapvisor` binary: to its end, or as a server waited on until it is up.

use super::*;

/// The repository's root: the working folder of every `swapvisor` process a test starts, so
/// that relative paths in args and configs (`examples/hello.yaml`) mean what they mean to a
/// user in a checkout.
pub(crate) fn repository() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Runs `swapvisor` with `args` to its end: its exit code (-1 if killed), stdout and stderr.
pub(crate) fn swapvisor(args: &[&str]) -> (i32, String, String) {
    swapvisor_with_env(args, &[])
}

/// The same, with extra environment variables.
pub(crate) fn swapvisor_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_swapvisor"))
        .args(args)
        .current_dir(repository())
        .env("SWAPVISOR_STATE_DIR", "off")
        .envs(env.iter().copied())
        .output()
        .expect("run swapvisor");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A running `swapvisor` process, killed when dropped.
pub(crate) struct Swapvisor {
    pub child: Child,
    /// Lines the process wrote to stderr, as they arrive.
    pub lines: std::sync::mpsc::Receiver<String>,
    /// Everything read so far.
    pub seen: Vec<String>,
}

impl Swapvisor {
    /// Starts `swapvisor` with `args`.
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Starts `swapvisor` with `args` and extra environment variables.
    pub(crate) fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_binary_with_env(env!("CARGO_BIN_EXE_swapvisor").as_ref(), args, env)
    }

    /// Starts another binary built on swapvisor's command line (an example) with `args`.
    pub(crate) fn start_binary(binary: &std::path::Path, args: &[&str]) -> Self {
        Self::start_binary_with_env(binary, args, &[])
    }

    /// Starts `swapvisor` with `args` under the open-file limit `ulimit` sets with `limit`
    /// (`-Sn 200`: the soft limit only; `-n 1024`: soft and hard); the shell execs, so the
    /// child is swapvisor.
    pub(crate) fn start_under_ulimit(limit: &str, args: &[&str]) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit {limit} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_swapvisor"))
            .args(args);
        Self::spawn(command)
    }

    /// Starts `swapvisor` through `bash -c script` (which should end in `exec "$0" "$@"`),
    /// with `args` and extra environment variables: for descriptors set up by the shell (bash:
    /// dash takes only one-digit descriptor numbers), and variables that need the pid
    /// (`LISTEN_PID=$$`).
    pub(crate) fn start_via_shell(script: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_swapvisor"))
            .args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        Self::spawn(command)
    }

    pub(crate) fn start_binary_with_env(
        binary: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(binary);
        command.args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Self {
        if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        // A test that keeps state says where; the others keep none (not in the user's home).
        if !command
            .get_envs()
            .any(|(key, _)| key == "SWAPVISOR_STATE_DIR")
        {
            command.env("SWAPVISOR_STATE_DIR", "off");
        }
        command
            .current_dir(repository())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn swapvisor");
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Swapvisor {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Returns the first stderr line (already read, or arriving within `timeout`) containing
    /// `needle`.
    pub(crate) fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line containing {needle:?} within {timeout:?}; stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Whether a stderr line read so far contains `needle`.
    pub(crate) fn has_seen(&self, needle: &str) -> bool {
        self.seen.iter().any(|l| l.contains(needle))
    }

    /// Waits for the "swapvisor is up" line and returns the URL of the server named `server`.
    pub(crate) fn wait_until_up(&mut self, server: &str) -> String {
        let line = self.wait_for_line("swapvisor is up", Duration::from_secs(30));
        url_after(&line, &format!("{server}="))
    }

    /// Waits for the "swapvisor is up" line and returns the URLs of `server` and of the admin
    /// API.
    pub(crate) fn wait_until_up_with_admin(&mut self, server: &str) -> (String, String) {
        let line = self.wait_for_line("swapvisor is up", Duration::from_secs(30));
        (
            url_after(&line, &format!("{server}=")),
            url_after(&line, "admin="),
        )
    }

    /// Sends a signal by name (TERM, HUP, INT).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits (up to `timeout`) for the process to exit, and returns its exit code.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "swapvisor did not exit within {timeout:?}"
            );
            // Polling the child is the only portable way to wait with a bound.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn url_after(line: &str, marker: &str) -> String {
    let start = line
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {line}"))
        + marker.len();
    line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('"')
        .to_owned()
}

impl Drop for Swapvisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file in its own temporary folder, deleted when dropped.
pub(crate) struct TempConfig {
    pub dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
}

impl TempConfig {
    /// Writes `text` to `config.yaml` in a fresh temporary folder.
    pub(crate) fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, text).unwrap();
        TempConfig { dir, path }
    }

    /// The path as a string, for command lines.
    pub(crate) fn as_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}
