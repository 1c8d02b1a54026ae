//! An embedder's first `cargo build`: a crate outside this repository that depends on swapvisor
//! with its default features and writes its own ractor actor with a plain message enum
//! (cli/tests/fixtures/embedder). If a default feature turned on ractor's `cluster` feature again,
//! that enum would stop implementing `Message` and this build would fail.
//!
//! The crate is built in its own target folder (`target/embedder`), so the first run compiles
//! its dependencies once; later runs reuse them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A cold build of the embedder's dependency tree on a 2-core machine takes a few minutes.
const BUILD_DEADLINE: Duration = Duration::from_secs(30 * 60);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli package lives in the repository")
        .to_path_buf()
}

/// Copies the fixture outside the repository, pointing its path dependency at this checkout,
/// with this workspace's lock file so that it resolves the same versions offline.
fn outside_crate(into: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/embedder");
    let root = repository();
    let manifest = std::fs::read_to_string(fixture.join("Cargo.toml")).unwrap();
    let pointed = manifest.replace(
        r#"path = "../../../..""#,
        &format!("path = {:?}", root.to_str().unwrap()),
    );
    assert_ne!(manifest, pointed, "the fixture names its path dependency");
    let crate_dir = into.join("embedder");
    std::fs::create_dir_all(crate_dir.join("src")).unwrap();
    std::fs::write(crate_dir.join("Cargo.toml"), pointed).unwrap();
    std::fs::copy(fixture.join("src/main.rs"), crate_dir.join("src/main.rs")).unwrap();
    std::fs::copy(root.join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();
    crate_dir
}

#[test]
fn an_outside_crate_with_default_features_builds_its_own_actor_and_reloads() {
    let temp = tempfile::tempdir().unwrap();
    let crate_dir = outside_crate(temp.path());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args(["run", "--quiet", "--offline", "--manifest-path"])
        .arg(crate_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", repository().join("target/embedder"))
        // Debug info is most of a build's size and link time; the run needs none.
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .env_remove("RUSTFLAGS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cargo runs");
    let started = Instant::now();
    // Reads the pipes on their own threads so that a full pipe cannot stall the build.
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BUILD_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the embedder's build took over {BUILD_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "the embedder failed: {status}\n{stderr}");
    assert_eq!(stdout.trim(), "embedder: ok", "{stderr}");
}
