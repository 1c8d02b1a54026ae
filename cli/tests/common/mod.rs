//! Helpers shared by the integration tests, one concern per file: recording module types
//! (`modules`), plugin kinds (`plugins`), an HTTP client (`http`), running the built binary
//! (`process`), and headless Chromium (`webdriver`).
// Each test binary uses a part of these helpers.
#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::Value;
use swapvisor::Registry;
use swapvisor::config::ConfigErrors;
use swapvisor::extension::{Module, ModuleBuild, ModuleContext, ModuleError};
use tokio::time::Instant;

mod backend;
mod http;
mod modules;
mod plugins;
mod postgres;
mod process;
mod stores;
mod webdriver;

pub(crate) use backend::*;
pub(crate) use http::*;
pub(crate) use modules::*;
pub(crate) use plugins::*;
pub(crate) use postgres::*;
pub(crate) use process::*;
pub(crate) use stores::*;
pub(crate) use webdriver::*;

/// Silences the panic messages that tests provoke on purpose (injected faults, crashing
/// plugins), so that a real failure stands out; every other panic is reported as usual.
pub(crate) fn quiet_expected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message =
                swapvisor::actors::guard::Interrupted::from_panic(info.payload()).to_string();
            let expected = [
                "injected fault",
                "counter crashed on request",
                "panics on purpose",
            ];
            // A failing proptest case quotes the faults it injected; it is never quiet.
            let quiet =
                expected.iter().any(|e| message.contains(e)) && !message.contains("Test failed");
            if !quiet {
                default(info);
            }
        }));
    });
}

/// A config with one `http.server` (`web`) on `address` and one route, `GET /hello`, that
/// answers `{"version": version}`.
pub(crate) fn hello_config(address: &str, version: &str) -> String {
    format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "{address}" }} }}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, method: GET, path: /hello }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
"#
    )
}

/// Asserts that `text` (a `/metrics` exposition, say) has each of `lines` as a whole line.
pub(crate) fn assert_has_lines<L: AsRef<str>>(text: &str, lines: impl IntoIterator<Item = L>) {
    for line in lines {
        let line = line.as_ref();
        assert!(
            text.lines().any(|l| l == line),
            "no {line:?} in
{text}"
        );
    }
}

/// GETs `url` (on a fresh connection each time) until `check` holds for its JSON answer,
/// for up to `within`, and returns that answer.
pub(crate) async fn wait_for_json(
    url: &str,
    what: &str,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (_, answer) = get(url).await;
        if check(&answer) {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last answer: {answer:#}"
        );
        // The answer is read over HTTP, where nothing announces a change; ask again shortly.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (up to 10 s) until `check` holds for the runtime's status.
pub(crate) async fn wait_for_status(
    runtime: &swapvisor::Runtime,
    what: &str,
    check: impl Fn(&swapvisor::RuntimeStatus) -> bool,
) -> swapvisor::RuntimeStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = runtime.status().await.expect("status");
        if check(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last status: {status:#?}"
        );
        // Status is answered from the Supervisor's mailbox; ask again shortly.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The outcome of each reload in a status answer's history, oldest first.
pub(crate) fn outcomes(status: &Value) -> Vec<&str> {
    status["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|r| r["outcome"].as_str().expect("an outcome"))
        .collect()
}

/// Whether an outside tool a test uses is installed (`present`). When it is not, the caller
/// skips `what` (said on stderr), unless `require` (`SWAPVISOR_REQUIRE_PROMTOOL`, say) is `1`,
/// as `.ci/run` sets it: then this fails the test, naming `install`.
pub(crate) fn tool_present(present: bool, what: &str, require: &str, install: &str) -> bool {
    if !present {
        assert_ne!(
            std::env::var(require).as_deref(),
            Ok("1"),
            "{require}=1 but {what} cannot run: {install}"
        );
        eprintln!("note: skipping {what}: {install}");
    }
    present
}

/// `promtool` (`/usr/bin/promtool`, or on the `PATH`), if it is installed; see
/// [`tool_present`] (`SWAPVISOR_REQUIRE_PROMTOOL`).
pub(crate) fn promtool(what: &str) -> Option<std::path::PathBuf> {
    let found = std::iter::once(std::path::PathBuf::from("/usr/bin/promtool"))
        .chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join("promtool")),
        )
        .find(|path| path.is_file());
    let install = "install Debian's prometheus package (docs/DEPLOYMENT.md)";
    tool_present(found.is_some(), what, "SWAPVISOR_REQUIRE_PROMTOOL", install)
        .then_some(found)
        .flatten()
}

/// Runs `command` and asserts that it succeeds, showing what it printed when it does not;
/// returns its output (stdout, then stderr).
pub(crate) fn succeeds(command: &mut std::process::Command) -> String {
    let output = command.output().expect("the command runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}
