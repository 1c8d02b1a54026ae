//! Helpers shared by the integration tests: a recording module type, an HTTP client, and a
//! way to run the built binary and wait for it to come up.
#![allow(dead_code)]

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

/// Silences the panic messages that tests provoke on purpose (injected faults, crashing
/// plugins), so that a real failure stands out; every other panic is reported as usual.
pub fn quiet_expected_panics() {
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

/// Every start and stop of `test.record` modules, in order, as "start a" / "stop a".
pub type Journal = Arc<Mutex<Vec<String>>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RecordSettings {
    #[serde(default)]
    fail_start: bool,
    #[serde(default)]
    panic_start: bool,
    #[serde(default)]
    fail_stop: bool,
}

struct Recorder {
    name: String,
    settings: RecordSettings,
    journal: Journal,
}

impl Module for Recorder {
    fn start<'a>(&'a self, _context: &'a ModuleContext) -> BoxFuture<'a, Result<(), ModuleError>> {
        Box::pin(async move {
            if self.settings.panic_start {
                panic!("recorder {} panics on purpose", self.name);
            }
            if self.settings.fail_start {
                self.journal
                    .lock()
                    .unwrap()
                    .push(format!("fail {}", self.name));
                return Err(ModuleError::new(format!("{} refuses to start", self.name)));
            }
            self.journal
                .lock()
                .unwrap()
                .push(format!("start {}", self.name));
            Ok(())
        })
    }

    fn stop(&self, _deadline: Instant) -> BoxFuture<'_, Result<(), ModuleError>> {
        Box::pin(async move {
            self.journal
                .lock()
                .unwrap()
                .push(format!("stop {}", self.name));
            if self.settings.fail_stop {
                return Err(ModuleError::new("refuses to stop"));
            }
            Ok(())
        })
    }
}

/// The built-in registry plus `test.record`, whose starts and stops land in the journal.
pub fn recording_registry() -> (Registry, Journal) {
    let journal: Journal = Arc::default();
    let mut registry = Registry::with_builtins();
    let shared = journal.clone();
    registry
        .contributing("tests", |r| {
            r.register_module("test.record", move |build: &ModuleBuild<'_>| {
                let settings: RecordSettings = build.settings()?;
                Ok::<Box<dyn Module>, ConfigErrors>(Box::new(Recorder {
                    name: build.name.to_owned(),
                    settings,
                    journal: shared.clone(),
                }))
            })
        })
        .unwrap();
    (registry, journal)
}

/// Switches the tests flip to steer the `test.toggle` and `test.gated` module types.
#[derive(Clone)]
pub struct Controls {
    /// While true, every `test.toggle` module fails to start.
    pub fail_starts: Arc<std::sync::atomic::AtomicBool>,
    /// How many times a `test.toggle` module was asked to start.
    pub start_attempts: Arc<std::sync::atomic::AtomicUsize>,
    /// Each `test.gated` build waits for one permit.
    pub build_gate: Arc<tokio::sync::Semaphore>,
    /// Signalled whenever a `test.gated` build begins waiting.
    pub build_waiting: Arc<tokio::sync::Notify>,
}

impl Default for Controls {
    fn default() -> Self {
        Self {
            fail_starts: Arc::default(),
            start_attempts: Arc::default(),
            build_gate: Arc::new(tokio::sync::Semaphore::new(0)),
            build_waiting: Arc::default(),
        }
    }
}

struct Toggle(Controls);

impl Module for Toggle {
    // Steered per start: every engine must start it anew for the switch to take effect.
    fn carry_over(&self) -> bool {
        false
    }

    fn start<'a>(&'a self, _context: &'a ModuleContext) -> BoxFuture<'a, Result<(), ModuleError>> {
        Box::pin(async move {
            self.0
                .start_attempts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.0.fail_starts.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(ModuleError::new("toggle is switched to fail"));
            }
            Ok(())
        })
    }

    fn stop(&self, _deadline: Instant) -> BoxFuture<'_, Result<(), ModuleError>> {
        Box::pin(async { Ok(()) })
    }
}

struct Gated(Controls);

impl Module for Gated {
    // Gates every build that has it, so it is never carried over from a running engine.
    fn carry_over(&self) -> bool {
        false
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), ModuleError>> {
        Box::pin(async move {
            self.0.build_waiting.notify_waiters();
            let permit = self
                .0
                .build_gate
                .acquire()
                .await
                .map_err(ModuleError::new)?;
            permit.forget();
            Ok(())
        })
    }

    fn start<'a>(&'a self, _context: &'a ModuleContext) -> BoxFuture<'a, Result<(), ModuleError>> {
        Box::pin(async { Ok(()) })
    }

    fn stop(&self, _deadline: Instant) -> BoxFuture<'_, Result<(), ModuleError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The recording registry plus `test.toggle` and `test.gated`, steered by the returned
/// controls.
pub fn controlled_registry() -> (Registry, Journal, Controls) {
    let (mut registry, journal) = recording_registry();
    let controls = Controls::default();
    let toggle = controls.clone();
    let gated = controls.clone();
    registry
        .contributing("tests", |r| {
            r.register_module("test.toggle", move |_: &ModuleBuild<'_>| {
                Ok::<Box<dyn Module>, ConfigErrors>(Box::new(Toggle(toggle.clone())))
            })?;
            r.register_module("test.gated", move |_: &ModuleBuild<'_>| {
                Ok::<Box<dyn Module>, ConfigErrors>(Box::new(Gated(gated.clone())))
            })
        })
        .unwrap();
    (registry, journal, controls)
}

/// A plugin that journals its starts and stops ("start a", "stop a") and answers `ping`.
/// Settings: `{failStart, hangStart, failWhenSwitched, note}`: `failWhenSwitched` fails its
/// start while the controls' `fail_starts` is set; `note` only makes two specs differ.
struct JournalPlugin {
    name: String,
    fail_start: bool,
    hang_start: bool,
    fail_when: Option<Arc<std::sync::atomic::AtomicBool>>,
    journal: Journal,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JournalSettings {
    #[serde(default)]
    fail_start: bool,
    #[serde(default)]
    hang_start: bool,
    #[serde(default)]
    fail_when_switched: bool,
    #[serde(default)]
    #[allow(dead_code)]
    note: Value,
}

impl swapvisor::plugin::Plugin for JournalPlugin {
    fn kind(&self) -> &str {
        "test.journal"
    }

    fn version(&self) -> &str {
        "0.0.1"
    }

    fn start(
        &mut self,
        _context: &swapvisor::plugin::PluginContext,
    ) -> BoxFuture<'_, Result<(), swapvisor::plugin::PluginError>> {
        Box::pin(async move {
            if self.hang_start {
                std::future::pending::<()>().await;
            }
            let switched = self
                .fail_when
                .as_ref()
                .is_some_and(|flag| flag.load(std::sync::atomic::Ordering::SeqCst));
            if self.fail_start || switched {
                return Err(swapvisor::plugin::PluginError::Failed(format!(
                    "{} refuses to start",
                    self.name
                )));
            }
            self.journal
                .lock()
                .unwrap()
                .push(format!("start {}", self.name));
            Ok(())
        })
    }

    fn handle(
        &mut self,
        call: swapvisor::plugin::PluginCall,
    ) -> BoxFuture<'_, Result<Value, swapvisor::plugin::PluginError>> {
        let answer = Ok(serde_json::json!({ "pong": call.op }));
        Box::pin(std::future::ready(answer))
    }

    fn stop(&mut self) -> BoxFuture<'_, Result<(), swapvisor::plugin::PluginError>> {
        self.journal
            .lock()
            .unwrap()
            .push(format!("stop {}", self.name));
        Box::pin(async { Ok(()) })
    }
}

/// A plugin kind that contributes the step type `<kind>.hello` when `provides` is true.
struct Greeter {
    kind: &'static str,
    provides: bool,
}

impl swapvisor::plugin::Plugin for Greeter {
    fn kind(&self) -> &str {
        self.kind
    }

    fn version(&self) -> &str {
        "1.0.0"
    }

    fn register(
        &self,
        registry: &mut swapvisor::registry::Types,
    ) -> Result<(), swapvisor::registry::RegistryError> {
        if self.provides {
            registry.register_step("greet.hello", |_: &swapvisor::extension::StepBuild<'_>| {
                Ok::<Box<dyn swapvisor::extension::Step>, ConfigErrors>(Box::new(HelloStep))
            })?;
        }
        Ok(())
    }

    fn handle(
        &mut self,
        _call: swapvisor::plugin::PluginCall,
    ) -> BoxFuture<'_, Result<Value, swapvisor::plugin::PluginError>> {
        Box::pin(std::future::ready(Ok(Value::Null)))
    }
}

struct HelloStep;

impl swapvisor::extension::Step for HelloStep {
    fn run<'a>(
        &'a self,
        _context: &'a swapvisor::extension::StepContext<'a>,
    ) -> BoxFuture<'a, Result<Value, swapvisor::extension::StepError>> {
        Box::pin(async { Ok(serde_json::json!("hello")) })
    }
}

/// A counting plugin whose `migrate` and `export_state` behave as configured:
/// `{migrate: ok|error|panic|hang, export: ok|error|panic|hang}`.
struct Stateful {
    count: i64,
    migrate: String,
    export: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatefulSettings {
    #[serde(default = "ok")]
    migrate: String,
    #[serde(default = "ok")]
    export: String,
}

fn ok() -> String {
    "ok".to_owned()
}

impl swapvisor::plugin::Plugin for Stateful {
    fn kind(&self) -> &str {
        "test.stateful"
    }

    fn version(&self) -> &str {
        "1.0.0"
    }

    fn handle(
        &mut self,
        call: swapvisor::plugin::PluginCall,
    ) -> BoxFuture<'_, Result<Value, swapvisor::plugin::PluginError>> {
        if call.op == "increment" {
            self.count += 1;
        }
        Box::pin(std::future::ready(Ok(
            serde_json::json!({ "count": self.count }),
        )))
    }

    fn export_state(
        &mut self,
    ) -> BoxFuture<'_, Result<Option<Value>, swapvisor::plugin::PluginError>> {
        Box::pin(async move {
            match self.export.as_str() {
                "error" => Err(swapvisor::plugin::PluginError::Failed(
                    "this state cannot be exported".into(),
                )),
                "panic" => panic!("export panics on purpose"),
                "hang" => std::future::pending().await,
                _ => Ok(Some(serde_json::json!(self.count))),
            }
        })
    }

    fn migrate(
        &mut self,
        previous: Value,
    ) -> BoxFuture<'_, Result<(), swapvisor::plugin::PluginError>> {
        Box::pin(async move {
            match self.migrate.as_str() {
                "error" => Err(swapvisor::plugin::PluginError::Failed(
                    "this state cannot be migrated".into(),
                )),
                "panic" => panic!("migrate panics on purpose"),
                "hang" => std::future::pending().await,
                _ => {
                    self.count = previous.as_i64().unwrap_or(0);
                    Ok(())
                }
            }
        })
    }
}

/// `test.panic {after}`: waits, then panics (a step that blows up mid-request).
struct PanicStep(Duration);

impl swapvisor::extension::Step for PanicStep {
    fn run<'a>(
        &'a self,
        _context: &'a swapvisor::extension::StepContext<'a>,
    ) -> BoxFuture<'a, Result<Value, swapvisor::extension::StepError>> {
        Box::pin(async move {
            tokio::time::sleep(self.0).await;
            panic!("the step panics on purpose");
        })
    }
}

/// The controlled registry plus the plugin kinds `test.journal`, `test.stateful`, `greeter`
/// (contributes the step type `greet.hello`) and `greeter-lite` (contributes nothing), and
/// the step type `test.panic {after}`.
pub fn plugin_registry() -> (Registry, Journal, Controls) {
    let (mut registry, journal, controls) = controlled_registry();
    let shared = journal.clone();
    let switch = controls.fail_starts.clone();
    registry
        .contributing("tests", |r| {
            r.register_plugin(
                "test.journal",
                move |build: &swapvisor::plugin::PluginBuild<'_>| {
                    let settings: JournalSettings = build.settings()?;
                    Ok::<Box<dyn swapvisor::plugin::Plugin>, ConfigErrors>(Box::new(
                        JournalPlugin {
                            name: build.name.to_owned(),
                            fail_start: settings.fail_start,
                            hang_start: settings.hang_start,
                            fail_when: settings.fail_when_switched.then(|| switch.clone()),
                            journal: shared.clone(),
                        },
                    ))
                },
            )?;
            r.register_plugin(
                "test.stateful",
                |build: &swapvisor::plugin::PluginBuild<'_>| {
                    let settings: StatefulSettings = build.settings()?;
                    Ok::<Box<dyn swapvisor::plugin::Plugin>, ConfigErrors>(Box::new(Stateful {
                        count: 0,
                        migrate: settings.migrate,
                        export: settings.export,
                    }))
                },
            )?;
            r.register_step(
                "test.panic",
                |build: &swapvisor::extension::StepBuild<'_>| {
                    let after = build
                        .config
                        .get("after")
                        .and_then(Value::as_str)
                        .unwrap_or("0ms");
                    let after = swapvisor::config::parse_duration(after)
                        .map_err(|m| swapvisor::config::ConfigError::new(build.place, m))?;
                    Ok::<Box<dyn swapvisor::extension::Step>, ConfigErrors>(Box::new(PanicStep(
                        after,
                    )))
                },
            )?;
            r.register_plugin("greeter", |_: &swapvisor::plugin::PluginBuild<'_>| {
                Ok::<Box<dyn swapvisor::plugin::Plugin>, ConfigErrors>(Box::new(Greeter {
                    kind: "greeter",
                    provides: true,
                }))
            })?;
            r.register_plugin("greeter-lite", |_: &swapvisor::plugin::PluginBuild<'_>| {
                Ok::<Box<dyn swapvisor::plugin::Plugin>, ConfigErrors>(Box::new(Greeter {
                    kind: "greeter-lite",
                    provides: false,
                }))
            })
        })
        .unwrap();
    (registry, journal, controls)
}

/// Waits (up to 10 s) until `check` holds for the runtime's status.
pub async fn wait_for_status(
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

/// A keep-alive HTTP/1 client on one connection at a time, which never retries and counts the
/// connections it opens.
///
/// Load tests use it to see what a reload does to clients. hyper-util's legacy client would
/// hide exactly that: it retries, by default, a request whose pooled connection was closed
/// under it, and races a new connection against waiting for an idle one. Here a request on a
/// connection the server closes fails, and a connection the server closed between requests
/// shows up as one more connection opened.
#[derive(Default)]
pub struct TestClient {
    connection: tokio::sync::Mutex<Option<(String, SendRequest<Full<Bytes>>)>>,
    opened: std::sync::atomic::AtomicUsize,
}

impl TestClient {
    /// How many TCP connections it has opened.
    pub fn connections(&self) -> usize {
        self.opened.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A fresh [`TestClient`].
pub fn client() -> TestClient {
    TestClient::default()
}

/// Sends one request and returns the status and the JSON body (or the text as a JSON string).
pub async fn request(
    client: &TestClient,
    method: &str,
    url: &str,
    body: &str,
) -> Result<(u16, Value), String> {
    send(client, method, url, &[], Bytes::from(body.to_owned())).await
}

/// Sends one request with extra headers on a fresh client.
pub async fn request_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<(u16, Value), String> {
    send(&client(), method, url, headers, body.into()).await
}

async fn send(
    client: &TestClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(u16, Value), String> {
    send_full(client, method, url, headers, body)
        .await
        .map(|(status, _, body)| (status, body))
}

/// Sends one request on a fresh client and returns the status, the response headers and the
/// JSON body.
pub async fn request_full(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<(u16, hyper::HeaderMap, Value), String> {
    send_full(&client(), method, url, headers, body.into()).await
}

async fn send_full(
    client: &TestClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(u16, hyper::HeaderMap, Value), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url}: no host"))?
        .to_string();
    let mut connection = client.connection.lock().await;
    let reusable =
        matches!(&*connection, Some((to, sender)) if *to == authority && !sender.is_closed());
    if !reusable {
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("connect {authority}: {e}"))?;
        let (sender, serving) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with {authority}: {e}"))?;
        tokio::spawn(serving);
        client
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *connection = Some((authority.clone(), sender));
    }
    let Some((_, sender)) = connection.as_mut() else {
        return Err("no connection".into());
    };
    sender
        .ready()
        .await
        .map_err(|e| format!("the connection closed: {e:?}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, &authority);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let response_headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, response_headers, json))
}

/// GET `url` on a fresh client, with the response headers.
pub async fn get_full(url: &str) -> (u16, hyper::HeaderMap, Value) {
    request_full("GET", url, &[], "")
        .await
        .expect("request failed")
}

/// The outcome of each reload in a status answer's history, oldest first.
pub fn outcomes(status: &Value) -> Vec<&str> {
    status["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|r| r["outcome"].as_str().expect("an outcome"))
        .collect()
}

/// GET `url` on a fresh client.
pub async fn get(url: &str) -> (u16, Value) {
    request(&client(), "GET", url, "")
        .await
        .expect("request failed")
}

/// The repository's root: the working folder of every `swapvisor` process a test starts, so
/// that relative paths in args and configs (`examples/hello.yaml`) mean what they mean to a
/// user in a checkout.
pub fn repository() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Runs `swapvisor` with `args` to its end: its exit code (-1 if killed), stdout and stderr.
pub fn swapvisor(args: &[&str]) -> (i32, String, String) {
    swapvisor_with_env(args, &[])
}

/// The same, with extra environment variables.
pub fn swapvisor_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_swapvisor"))
        .args(args)
        .current_dir(repository())
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
pub struct Swapvisor {
    pub child: Child,
    /// Lines the process wrote to stderr, as they arrive.
    pub lines: std::sync::mpsc::Receiver<String>,
    /// Everything read so far.
    pub seen: Vec<String>,
}

impl Swapvisor {
    /// Starts `swapvisor` with `args`.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Starts `swapvisor` with `args` and extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_binary_with_env(env!("CARGO_BIN_EXE_swapvisor").as_ref(), args, env)
    }

    /// Starts another binary built on swapvisor's command line (an example) with `args`.
    pub fn start_binary(binary: &std::path::Path, args: &[&str]) -> Self {
        Self::start_binary_with_env(binary, args, &[])
    }

    /// Starts `swapvisor` with `args` under the open-file limit `ulimit` sets with `limit`
    /// (`-Sn 200`: the soft limit only; `-n 1024`: soft and hard); the shell execs, so the
    /// child is swapvisor.
    pub fn start_under_ulimit(limit: &str, args: &[&str]) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit {limit} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_swapvisor"))
            .args(args);
        Self::spawn(command)
    }

    fn start_binary_with_env(
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
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
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

    /// Waits for the "swapvisor is up" line and returns the URL of the server named `server`.
    pub fn wait_until_up(&mut self, server: &str) -> String {
        let line = self.wait_for_line("swapvisor is up", Duration::from_secs(30));
        url_after(&line, &format!("{server}="))
    }

    /// Waits for the "swapvisor is up" line and returns the URLs of `server` and of the admin
    /// API.
    pub fn wait_until_up_with_admin(&mut self, server: &str) -> (String, String) {
        let line = self.wait_for_line("swapvisor is up", Duration::from_secs(30));
        (
            url_after(&line, &format!("{server}=")),
            url_after(&line, "admin="),
        )
    }

    /// Sends a signal by name (TERM, HUP, INT).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits (up to `timeout`) for the process to exit, and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
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
pub struct TempConfig {
    pub dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
}

impl TempConfig {
    /// Writes `text` to `config.yaml` in a fresh temporary folder.
    pub fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, text).unwrap();
        TempConfig { dir, path }
    }

    /// The path as a string, for command lines.
    pub fn as_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}
