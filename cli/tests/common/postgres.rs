//! A real PostgreSQL server for a test: `initdb` into a temporary folder and `postgres`
//! listening only on a Unix socket in it (no TCP port), stopped and reaped on drop. As root
//! (CI), the server runs as the `postgres` user, since PostgreSQL refuses to run as root.
//!
//! Without PostgreSQL's server programs the test is skipped with a note, or fails under
//! `SWAPVISOR_REQUIRE_POSTGRES=1` (as `.ci/run` sets, after installing Debian's `postgresql`).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub(crate) struct Postgres {
    dir: tempfile::TempDir,
    server: Option<Child>,
}

/// The folder holding `initdb` and `postgres`: on the `PATH`, or Debian's versioned folder.
fn server_bin() -> Option<PathBuf> {
    // An `initdb` on the PATH may be a link into the folder that holds `postgres` too.
    let on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .filter_map(|dir| std::fs::canonicalize(dir.join("initdb")).ok())
        .filter_map(|initdb| initdb.parent().map(Path::to_owned))
        .find(|bin| bin.join("postgres").is_file());
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

/// The uid and gid of `user`, from `id`.
fn ids_of(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

impl Postgres {
    /// Starts a server, or `None` (with a note) where PostgreSQL is not installed.
    pub(crate) fn start(what: &str) -> Option<Self> {
        let bin = server_bin();
        let install = "install Debian's postgresql package (apt-get install postgresql)";
        if !super::tool_present(bin.is_some(), what, "SWAPVISOR_REQUIRE_POSTGRES", install) {
            return None;
        }
        let bin = bin?;
        let dir = tempfile::Builder::new()
            .prefix("pg")
            .tempdir_in("/tmp")
            .expect("a temporary folder");
        // PostgreSQL will not run as root: as root, it runs as the postgres user.
        let user = rustix::process::geteuid().is_root().then(|| {
            ids_of("postgres").expect("a postgres user (Debian's postgresql package makes one)")
        });
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("the folder is handed to postgres");
        }
        let command = |program: &str| {
            let mut command = Command::new(bin.join(program));
            if let Some((uid, gid)) = user {
                command.uid(uid).gid(gid);
            }
            command.stdin(Stdio::null());
            command
        };
        let data = dir.path().join("data");
        let init = command("initdb")
            .args([
                "--no-sync",
                "-A",
                "trust",
                "-U",
                "swapvisor",
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("initdb runs");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let server = command("postgres")
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        let running = Self {
            dir,
            server: Some(server),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = command("pg_isready")
                .arg("-q")
                .arg("-h")
                .arg(running.dir.path())
                .arg("-U")
                .arg("swapvisor")
                .status();
            if ready.is_ok_and(|s| s.success()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(running)
    }

    /// The connection string of database `database` (`postgres` always exists).
    pub(crate) fn url(&self, database: &str) -> String {
        format!(
            "postgres://swapvisor@localhost/{database}?host={}",
            self.dir.path().display()
        )
    }

    /// A new empty database, and its connection string.
    pub(crate) async fn database(&self, name: &str) -> String {
        let admin = self.connect("postgres").await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("the database is created");
        admin.close().await;
        self.url(name)
    }

    /// A pool of one connection on `database`, for the test's own checks.
    pub(crate) async fn connect(&self, database: &str) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.url(database))
            .await
            .expect("the test connects")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        // SIGINT: a fast shutdown (open sessions are ended), then reaped.
        if let Some(pid) = rustix::process::Pid::from_raw(server.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = server.kill();
                let _ = server.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
