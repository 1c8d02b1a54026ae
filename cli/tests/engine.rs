// Longer than 450 lines on purpose: one test per property of an engine on its own; they share its small fixtures.
//! The engine on its own: build without effects, start order, rollback of a failed start,
//! reverse stop order, templating, and real HTTP requests.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;
use swapvisor::engine::EngineState;
use swapvisor::extension::ExecuteError;
use swapvisor::{Config, Engine};
use tokio::time::Instant;

use common::{get, recording_registry};

fn config(yaml: &str) -> Config {
    Config::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[tokio::test]
async fn modules_start_in_dependency_order_and_stop_in_reverse() {
    let (registry, journal) = recording_registry();
    let engine = Engine::build(
        &config(
            r#"
modules:
  - { name: api, type: test.record, dependsOn: [db, cache] }
  - { name: cache, type: test.record, dependsOn: [db] }
  - { name: db, type: test.record }
  - { name: metrics, type: test.record }
"#,
        ),
        &registry,
    )
    .await
    .unwrap();
    assert!(
        journal.lock().unwrap().is_empty(),
        "build must not start anything"
    );
    engine.start().await.unwrap();
    assert_eq!(engine.state(), EngineState::Running);
    engine.stop(soon()).await.unwrap();
    assert_eq!(engine.state(), EngineState::Stopped);
    assert_eq!(
        *journal.lock().unwrap(),
        [
            "start db",
            "start cache",
            "start api",
            "start metrics",
            "stop metrics",
            "stop api",
            "stop cache",
            "stop db"
        ]
    );
}

#[tokio::test]
async fn a_failed_start_stops_the_started_modules_in_reverse_and_names_the_failure() {
    let (registry, journal) = recording_registry();
    let engine = Engine::build(
        &config(
            r#"
modules:
  - { name: a, type: test.record }
  - { name: b, type: test.record, dependsOn: [a] }
  - { name: c, type: test.record, dependsOn: [b], config: { failStart: true } }
  - { name: d, type: test.record, dependsOn: [c] }
"#,
        ),
        &registry,
    )
    .await
    .unwrap();
    let error = engine.start().await.unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"module "c" failed to start: c refuses to start"#
    );
    assert_eq!(error.module, "c");
    assert_eq!(engine.state(), EngineState::Stopped);
    assert_eq!(
        *journal.lock().unwrap(),
        ["start a", "start b", "fail c", "stop b", "stop a"]
    );
}

#[tokio::test]
async fn a_panic_in_start_is_an_error_that_names_the_module() {
    let (registry, journal) = recording_registry();
    let engine = Engine::build(
        &config(
            r#"
modules:
  - { name: a, type: test.record }
  - { name: boom, type: test.record, dependsOn: [a], config: { panicStart: true } }
"#,
        ),
        &registry,
    )
    .await
    .unwrap();
    let error = engine.start().await.unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"module "boom" failed to start: panicked: recorder boom panics on purpose"#
    );
    assert_eq!(*journal.lock().unwrap(), ["start a", "stop a"]);
}

#[tokio::test]
async fn every_module_is_stopped_even_when_one_fails_to_stop() {
    let (registry, journal) = recording_registry();
    let engine = Engine::build(
        &config(
            r#"
modules:
  - { name: a, type: test.record }
  - { name: b, type: test.record, config: { failStop: true } }
  - { name: c, type: test.record }
"#,
        ),
        &registry,
    )
    .await
    .unwrap();
    engine.start().await.unwrap();
    let error = engine.stop(soon()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"module "b" failed to stop: refuses to stop"#
    );
    assert_eq!(
        *journal.lock().unwrap(),
        [
            "start a", "start b", "start c", "stop c", "stop b", "stop a"
        ]
    );
}

#[tokio::test]
async fn fault_inject_fails_each_stage_as_configured() {
    let (registry, _) = recording_registry();
    let build_fault =
        config("modules: [{ name: f, type: fault.inject, config: { failOn: build } }]");
    let error = Engine::build(&build_fault, &registry).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"module "f" failed to build: injected fault at build in module "f""#
    );

    let panic_fault = config(
        "modules: [{ name: f, type: fault.inject, config: { failOn: build, mode: panic } }]",
    );
    let error = Engine::build(&panic_fault, &registry).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"module "f" failed to build: panicked: injected fault at build in module "f""#
    );

    let hang = config(
        "modules: [{ name: f, type: fault.inject, config: { failOn: start, mode: hang } }]\nruntime: { reload: { startTimeout: 50ms } }",
    );
    let engine = Engine::build(&hang, &registry).await.unwrap();
    let error = engine.start().await.unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"module "f" failed to start: did not start before the start timeout"#
    );

    let stop_fault =
        config("modules: [{ name: f, type: fault.inject, config: { failOn: stop, mode: panic } }]");
    let engine = Engine::build(&stop_fault, &registry).await.unwrap();
    engine.start().await.unwrap();
    let error = engine.stop(soon()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"module "f" failed to stop: panicked: injected fault at stop in module "f""#
    );
}

#[tokio::test]
async fn templates_see_the_request_and_earlier_steps() {
    let (registry, _) = recording_registry();
    let engine = Engine::build(
        &config(
            r#"
pipelines:
  greet:
    steps:
      - name: first
        type: step.set
        config: { values: { who: "{{ request.query.name }}", n: "{{ request.count }}" } }
      - name: second
        type: step.set
        config: { values: { line: "hello {{ first.who }} x{{ first.n }}", count: "{{ first.n }}", list: ["{{ request.tags[1] }}"] } }
      - name: reply
        type: step.json_response
        config: { status: 201, headers: { x-who: "{{ first.who }}" }, body: { text: "{{ second.line }}", count: "{{ second.count }}", list: "{{ second.list }}" } }
"#,
        ),
        &registry,
    )
    .await
    .unwrap();
    let output = engine
        .execute(
            "greet",
            json!({"query": {"name": "ada"}, "count": 3, "tags": ["a", "b"]}),
        )
        .await
        .unwrap();
    assert_eq!(
        output,
        json!({"status": 201, "headers": {"x-who": "ada"}, "body": {"text": "hello ada x3", "count": 3, "list": ["b"]}})
    );
}

#[tokio::test]
async fn a_failing_step_names_the_pipeline_and_step() {
    let (registry, _) = recording_registry();
    let engine = Engine::build(
        &config(
            r#"
pipelines:
  p:
    steps:
      - { name: ok, type: step.set, config: { values: { x: 1 } } }
      - { name: boom, type: step.fail, config: { message: "no {{ request.what }} today" } }
"#,
        ),
        &registry,
    )
    .await
    .unwrap();
    let error = engine
        .execute("p", json!({"what": "cake"}))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"pipeline "p" failed at step "boom": no cake today"#
    );
    let unknown = engine.execute("q", json!({})).await.unwrap_err();
    assert!(matches!(unknown, ExecuteError::UnknownPipeline { .. }));
    assert_eq!(
        unknown.to_string(),
        r#"unknown pipeline "q" (pipelines: p)"#
    );
}

const HELLO: &str = r#"
modules:
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }
pipelines:
  hello:
    trigger: { type: http, config: { server: web, method: GET, path: /hello } }
    steps:
      - name: greet
        type: step.set
        config: { values: { message: "hello {{ request.query.name }}" } }
      - name: respond
        type: step.json_response
        config: { status: 200, body: { message: "{{ greet.message }}", version: "v1" } }
  user:
    trigger: { type: http, config: { server: web, method: POST, path: "/users/{id}" } }
    steps:
      - name: respond
        type: step.json_response
        config: { body: { id: "{{ request.params.id }}", sent: "{{ request.body }}", agent: "{{ request.headers.x-agent }}" } }
  broken:
    trigger: { type: http, config: { server: web, path: /broken } }
    steps:
      - { name: explode, type: step.fail, config: { message: "it broke" } }
"#;

#[tokio::test]
async fn http_requests_run_the_routed_pipelines() {
    let (registry, _) = recording_registry();
    let engine = Engine::build(&config(HELLO), &registry).await.unwrap();
    assert!(
        engine.listening().is_empty(),
        "nothing is bound before start"
    );
    engine.start().await.unwrap();
    let (_, address) = engine.listening().pop().unwrap();
    let base = format!("http://{address}");

    assert_eq!(
        get(&format!("{base}/hello?name=ada")).await,
        (200, json!({"message": "hello ada", "version": "v1"}))
    );
    let client = common::client();
    let (status, body) = common::request(
        &client,
        "POST",
        &format!("{base}/users/42"),
        r#"{"a": [1]}"#,
    )
    .await
    .unwrap();
    assert_eq!(
        (status, body["id"].clone(), body["sent"].clone()),
        (200, json!("42"), json!({"a": [1]}))
    );
    assert_eq!(
        get(&format!("{base}/nope")).await,
        (
            404,
            json!({"error": "not found", "method": "GET", "path": "/nope"})
        )
    );
    assert_eq!(
        get(&format!("{base}/broken")).await,
        (
            500,
            json!({"error": "it broke", "pipeline": "broken", "step": "explode"})
        )
    );
    let (status, body) = common::request(&client, "DELETE", &format!("{base}/hello"), "")
        .await
        .unwrap();
    assert_eq!((status, body["allowed"].clone()), (405, json!(["GET"])));
    // A GET route answers HEAD: the same head (its length included), no body.
    let mut stream = tokio::net::TcpStream::connect(address.as_str())
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"HEAD /hello?name=ada HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(head.to_lowercase().contains("content-length: "), "{answer}");
    assert_eq!(body, "", "a HEAD answer has no body");

    engine.stop(soon()).await.unwrap();
    let refused = std::net::TcpStream::connect(address.as_str());
    assert!(refused.is_err(), "the port must be closed after stop");
}

#[tokio::test]
async fn building_binds_nothing() {
    // Find a free port, then let the engine plan to use it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = HELLO.replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let (registry, _) = recording_registry();
    let engine = Engine::build(&config(&yaml), &registry).await.unwrap();
    let probe = TcpListener::bind(("127.0.0.1", port));
    assert!(
        probe.is_ok(),
        "a built (not started) engine must not hold its port"
    );
    drop(probe);
    drop(engine);
}

#[tokio::test]
async fn a_schedule_trigger_runs_while_the_engine_runs() {
    let (mut registry, _) = recording_registry();
    let (ticks, mut seen) = tokio::sync::mpsc::unbounded_channel::<u64>();
    registry
        .register_step(
            "test.tick",
            move |_build: &swapvisor::extension::StepBuild<'_>| {
                let ticks = ticks.clone();
                Ok::<Box<dyn swapvisor::extension::Step>, swapvisor::config::ConfigErrors>(
                    Box::new(TickStep(ticks)),
                )
            },
        )
        .unwrap();
    let engine = Engine::build(
        &config(
            r#"
pipelines:
  beat:
    trigger: { type: schedule, config: { every: 20ms } }
    steps: [{ name: t, type: test.tick }]
"#,
        ),
        &registry,
    )
    .await
    .unwrap();
    engine.start().await.unwrap();
    for expected in 1..=3 {
        let tick = tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tick, expected);
    }
    engine.stop(soon()).await.unwrap();
    // Once the engine and the registry are gone, the only senders left would belong to a
    // schedule task that outlived stop: the channel must close.
    drop(engine);
    drop(registry);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while seen.recv().await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "the schedule task must be gone after stop");
}

struct TickStep(tokio::sync::mpsc::UnboundedSender<u64>);

impl swapvisor::extension::Step for TickStep {
    fn run<'a>(
        &'a self,
        context: &'a swapvisor::extension::StepContext<'a>,
    ) -> futures::future::BoxFuture<'a, Result<serde_json::Value, swapvisor::extension::StepError>>
    {
        let tick = context.request["tick"].as_u64().unwrap_or(0);
        let _ = self.0.send(tick);
        Box::pin(async { Ok(serde_json::Value::Null) })
    }
}

#[tokio::test]
async fn a_pipeline_past_its_time_limit_answers_504_and_other_requests_are_unaffected() {
    let yaml = r#"
modules:
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }
pipelines:
  slow:
    timeout: 200ms
    trigger: { type: http, config: { server: web, method: GET, path: /slow } }
    steps:
      - { name: wait, type: step.delay, config: { duration: 30s } }
  fast:
    trigger: { type: http, config: { server: web, method: GET, path: /fast } }
    steps:
      - { name: ok, type: step.json_response, config: { body: { fast: true } } }
"#;
    let runtime = swapvisor::Runtime::start(config(yaml), swapvisor::Registry::with_builtins())
        .await
        .unwrap();
    let status = runtime.status().await.unwrap();
    let (_, address) = status.listening().pop().unwrap();
    let base = format!("http://{address}");

    let slow_url = format!("{base}/slow");
    let slow = tokio::spawn(async move {
        let began = Instant::now();
        (get(&slow_url).await, began.elapsed())
    });
    // While the slow request waits, other requests on the same server are answered.
    let client = common::client();
    for _ in 0..20 {
        let answer = common::request(&client, "GET", &format!("{base}/fast"), "").await;
        assert_eq!(answer, Ok((200, json!({"fast": true}))));
    }
    let ((status, body), took) = slow.await.unwrap();
    assert_eq!(
        (status, body),
        (
            504,
            json!({"error": "pipeline \"slow\" ran past its time limit of 200ms", "pipeline": "slow"})
        )
    );
    // The step's 30 s are not waited out: the run was abandoned at its limit.
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    assert_eq!(runtime.status().await.unwrap().in_flight, 0);

    // Through the Rust API, the same limit is a typed error.
    let error = runtime
        .execute("slow", json!({}))
        .await
        .expect_err("the run is past its limit");
    assert_eq!(
        error,
        ExecuteError::TimedOut {
            pipeline: "slow".to_owned(),
            limit: Duration::from_millis(200),
        }
    );
    runtime.shutdown().await.unwrap();
}
