//! The process's own restart: the last good config saved in the state folder, and
//! `run --resume` starting from it after a crash, when the config file no longer builds.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Swapvisor, TempConfig, client, get, request, swapvisor_with_env};

fn hello(version: &str) -> String {
    common::hello_config("127.0.0.1:0", version)
}

/// A config that parses but does not build: the watcher or a reload rejects it.
const BROKEN: &str = "modules:\n  - { name: web, type: http.server, config: { address: 12 } }\n";

fn start(
    config: &TempConfig,
    state: &std::path::Path,
    extra: &[&str],
) -> (Swapvisor, String, String) {
    let mut args = vec!["run", config.as_str(), "--admin", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let state = state.to_str().unwrap();
    let mut process = Swapvisor::start_with_env(&args, &[("SWAPVISOR_STATE_DIR", state)]);
    let (web, admin) = process.wait_until_up_with_admin("web");
    (process, web, admin)
}

async fn reload_from_file(admin: &str) -> String {
    let (_, body) = request(
        &client(),
        "POST",
        &format!("{admin}/api/v1/admin/engine/reload"),
        "",
    )
    .await
    .unwrap();
    body["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_serves_the_last_good_config_after_a_kill() {
    let state = tempfile::tempdir().unwrap();
    let config = TempConfig::new(&hello("v1"));
    let (mut process, web, admin) = start(&config, state.path(), &[]);
    assert_eq!(get(&format!("{web}/hello")).await.1["version"], "v1");

    std::fs::write(&config.path, hello("v2")).unwrap();
    assert_eq!(reload_from_file(&admin).await, "activated");
    assert_eq!(get(&format!("{web}/hello")).await.1["version"], "v2");

    // The file is edited into something that does not build: rejected, v2 serves on.
    std::fs::write(&config.path, BROKEN).unwrap();
    assert_eq!(reload_from_file(&admin).await, "build_failed");
    assert_eq!(get(&format!("{web}/hello")).await.1["version"], "v2");

    // The saved config is private to the user.
    let saved = state.path().join("last-good.json");
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A crash: no shutdown, nothing flushed on the way out.
    process.child.kill().unwrap();
    process.child.wait().unwrap();

    // Without --resume the broken file fails to start, and the error says what would.
    let (code, _, stderr) = swapvisor_with_env(
        &["run", config.as_str(), "--admin", "off"],
        &[("SWAPVISOR_STATE_DIR", state.path().to_str().unwrap())],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("modules[0] (name \"web\")"), "{stderr}");
    assert!(
        stderr.contains("the last good config (generation 2,")
            && stderr.contains(saved.to_str().unwrap())
            && stderr.contains("swapvisor run --resume"),
        "{stderr}"
    );

    // With --resume it serves v2 again, though the file is still broken.
    let (_resumed, web, _) = start(&config, state.path(), &["--resume"]);
    assert_eq!(get(&format!("{web}/hello")).await.1["version"], "v2");
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_without_a_saved_config_starts_from_the_file() {
    let state = tempfile::tempdir().unwrap();
    let config = TempConfig::new(&hello("v1"));
    let (mut process, web, _) = start(&config, &state.path().join("fresh"), &["--resume"]);
    process.wait_for_line("no last good config saved yet", Duration::from_secs(10));
    assert_eq!(get(&format!("{web}/hello")).await.1["version"], "v1");
    // The folder it made is private.
    let mode = std::fs::metadata(state.path().join("fresh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn refuses_a_state_folder_others_can_write() {
    let state = tempfile::tempdir().unwrap();
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = TempConfig::new(&hello("v1"));
    let (code, _, stderr) = swapvisor_with_env(
        &["run", config.as_str(), "--admin", "off"],
        &[("SWAPVISOR_STATE_DIR", state.path().to_str().unwrap())],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("is writable by its group or by others (mode 777)"),
        "{stderr}"
    );
}
