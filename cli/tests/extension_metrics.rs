//! Metrics that module and plugin types register through their `MetricsHandle`, as `/metrics`
//! of a running server shows them across reloads: the built-in `counter` plugin's
//! `swapvisor_plugin_increments_total`.

mod common;

use std::time::Duration;

use common::{Swapvisor, TempConfig, get, request_with};
use serde_json::{Value, json};

fn config(plugins: &str) -> String {
    format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
plugins:
{plugins}
pipelines:
  count:
    trigger: {{ type: http, config: {{ server: web, path: /count }} }}
    steps:
      - {{ name: bump, type: step.plugin_call, config: {{ plugin: hits, op: increment }} }}
      - {{ name: respond, type: step.json_response, config: {{ body: {{ count: "{{{{ bump.count }}}}" }} }} }}
"#
    )
}

const HITS: &str = "  - { name: hits, type: counter, config: { start: 5 } }";

async fn metrics(admin: &str) -> String {
    let (code, text) = get(&format!("{admin}/metrics")).await;
    assert_eq!(code, 200);
    text.as_str().unwrap().to_owned()
}

/// The lines of `text` about `family`.
fn lines_of(text: &str, family: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(family))
        .map(str::to_owned)
        .collect()
}

async fn count(web: &str) -> Value {
    let (code, body) = get(&format!("{web}/count")).await;
    assert_eq!(code, 200, "{body}");
    body["count"].clone()
}

async fn post(url: &str, body: &str) -> (u16, Value) {
    request_with("POST", url, &[], body.to_owned())
        .await
        .unwrap()
}

const FAMILY: &str = "swapvisor_plugin_increments_total";
const HELP: &str =
    "# HELP swapvisor_plugin_increments_total Increments each `counter` plugin instance answered.";
const TYPE: &str = "# TYPE swapvisor_plugin_increments_total counter";

#[tokio::test]
async fn the_counter_plugins_increments_continue_across_a_plugin_reload_and_go_with_the_plugin() {
    let file = TempConfig::new(&config(HITS));
    let mut process = Swapvisor::start(&["run", file.as_str(), "--admin", "127.0.0.1:0"]);
    let (web, admin) = process.wait_until_up_with_admin("web");

    assert_eq!(
        lines_of(&metrics(&admin).await, FAMILY),
        [
            HELP,
            TYPE,
            r#"swapvisor_plugin_increments_total{plugin="hits"} 0"#
        ]
    );
    assert_eq!(count(&web).await, json!(6));
    assert_eq!(count(&web).await, json!(7));
    assert_eq!(
        lines_of(&metrics(&admin).await, FAMILY),
        [
            HELP,
            TYPE,
            r#"swapvisor_plugin_increments_total{plugin="hits"} 2"#
        ]
    );

    // A reload of the plugin alone: the new instance takes over the count and the series.
    let (code, body) = post(
        &format!("{admin}/api/v1/admin/plugins/hits/reload"),
        "{ name: hits, type: counter, config: { start: 0 } }",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "activated", "{body}");
    assert_eq!(count(&web).await, json!(8));
    assert_eq!(
        lines_of(&metrics(&admin).await, FAMILY),
        [
            HELP,
            TYPE,
            r#"swapvisor_plugin_increments_total{plugin="hits"} 3"#
        ]
    );

    // A config without the plugin (nor the pipeline calling it): once the old engine, the last
    // to use it, has retired and the plugin stopped, the series is gone.
    let without = r#"
modules:
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }
pipelines:
  hello:
    trigger: { type: http, config: { server: web, path: /hello } }
    steps:
      - { name: r, type: step.json_response, config: { body: { ok: true } } }
"#;
    let (code, body) = post(&format!("{admin}/api/v1/admin/engine/reload"), without).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "activated", "{body}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, status) = get(&format!("{admin}/api/v1/admin/engine/status")).await;
        let retired = status["retirements"]["retired"].as_u64().unwrap_or(0) >= 1;
        if retired && status["plugins"].as_array().is_some_and(|p| p.is_empty()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old engine did not retire: {status}"
        );
        // Status is answered from the Supervisor's mailbox; ask again shortly.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = metrics(&admin).await;
    assert_eq!(lines_of(&text, FAMILY), Vec::<String>::new(), "{text}");

    process.signal("TERM");
    assert_eq!(process.wait_exit(Duration::from_secs(10)), Some(0));
}

/// `meter {tag}`: counts its starts in `test_meter_starts_total` (a different tag rebuilds it).
struct Meter;

impl swapvisor::extension::Module for Meter {
    fn start<'a>(
        &'a self,
        context: &'a swapvisor::extension::ModuleContext,
    ) -> futures::future::BoxFuture<'a, Result<(), swapvisor::extension::ModuleError>> {
        Box::pin(async move {
            let starts = context
                .metrics
                .counter("test_meter_starts_total", "Starts of each meter module.")
                .map_err(|e| swapvisor::extension::ModuleError(e.to_string()))?;
            starts.inc();
            Ok(())
        })
    }

    fn stop(
        &self,
        _: tokio::time::Instant,
    ) -> futures::future::BoxFuture<'_, Result<(), swapvisor::extension::ModuleError>> {
        Box::pin(async { Ok(()) })
    }
}

fn meters(modules: &str) -> swapvisor::Config {
    let yaml = format!("modules:\n{modules}pipelines: {{}}\n");
    swapvisor::Config::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

async fn meter_lines(
    runtime: &swapvisor::Runtime,
    metrics: &swapvisor::admin::Metrics,
) -> Vec<String> {
    let status = runtime.status().await.unwrap();
    lines_of(&metrics.render(&status, runtime), "test_meter")
}

#[tokio::test]
async fn a_rebuilt_module_continues_its_series_and_a_rolled_back_one_never_shows() {
    let mut registry = swapvisor::Registry::with_builtins();
    registry
        .contributing("tests", |r| {
            r.register_module("meter", |_: &swapvisor::extension::ModuleBuild<'_>| {
                Ok(Box::new(Meter) as Box<dyn swapvisor::extension::Module>)
            })
        })
        .unwrap();
    let one = "  - { name: m1, type: meter, config: { tag: a } }\n";
    let runtime = swapvisor::Runtime::start(meters(one), registry)
        .await
        .unwrap();
    let metrics = swapvisor::admin::Metrics::default();
    const HELP: &str = "# HELP test_meter_starts_total Starts of each meter module.";
    const TYPE: &str = "# TYPE test_meter_starts_total counter";
    assert_eq!(
        meter_lines(&runtime, &metrics).await,
        [HELP, TYPE, r#"test_meter_starts_total{module="m1"} 1"#]
    );

    // A changed config rebuilds m1: the new instance counts on in the same series.
    let rebuilt = "  - { name: m1, type: meter, config: { tag: b } }\n";
    let record = runtime.reload(meters(rebuilt)).await.unwrap();
    assert_eq!(record.outcome.name(), "activated", "{record:?}");
    assert_eq!(
        meter_lines(&runtime, &metrics).await,
        [HELP, TYPE, r#"test_meter_starts_total{module="m1"} 2"#]
    );

    // A candidate whose m2 starts but whose next module fails is rolled back: m2's series
    // never shows, and m1, carried, is not started again.
    let failing = format!(
        "{rebuilt}  - {{ name: m2, type: meter, config: {{ tag: x }} }}\n  - {{ name: broken, type: fault.inject, dependsOn: [m2], config: {{ failOn: start }} }}\n"
    );
    let record = runtime.reload(meters(&failing)).await.unwrap();
    assert_eq!(record.outcome.name(), "rolled_back", "{record:?}");
    assert_eq!(
        meter_lines(&runtime, &metrics).await,
        [HELP, TYPE, r#"test_meter_starts_total{module="m1"} 2"#]
    );

    // Without the module, its series goes once the engine that had it has retired.
    let retired = runtime.status().await.unwrap().retirements.retired;
    let record = runtime.reload(meters("  []\n")).await.unwrap();
    assert_eq!(record.outcome.name(), "activated", "{record:?}");
    common::wait_for_status(&runtime, "the old engine to retire", |s| {
        s.retirements.retired > retired
    })
    .await;
    assert_eq!(meter_lines(&runtime, &metrics).await, Vec::<String>::new());
    runtime.shutdown().await.unwrap();
}
