//! The Grafana dashboard (`deploy/grafana/swapvisor.json`) and the Prometheus alert rules
//! (`deploy/prometheus/alerts.yaml`): every metric they use is a family the binary exports, the
//! dashboard has its panels, and the rules pass `promtool check rules` and their unit tests
//! (`promtool test rules`), as do the dashboard's queries.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use common::{Swapvisor, TempConfig, get};

const DASHBOARD: &str = "deploy/grafana/swapvisor.json";
const RULES: &str = "deploy/prometheus/alerts.yaml";
const RULE_TESTS: &str = "deploy/prometheus/alerts_test.yaml";

fn read(path: &str) -> String {
    std::fs::read_to_string(common::repository().join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

/// The strings under the keys `keys`, anywhere in `value`.
fn strings_under<'a>(value: &'a Value, keys: &[&str], found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    Value::String(text) if keys.contains(&key.as_str()) => found.push(text),
                    _ => strings_under(value, keys, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, keys, found)),
        _ => {}
    }
}

/// The dashboard's PromQL: its panels' and annotations' `expr`.
fn dashboard_exprs(dashboard: &Value) -> Vec<&str> {
    let mut found = Vec::new();
    strings_under(dashboard, &["expr"], &mut found);
    found
}

/// The alert rules' `expr`, by alert.
fn rule_exprs() -> Vec<(String, String)> {
    let rules: serde_json::Value = serde_yaml::from_str(&read(RULES)).expect("the rules are YAML");
    let groups = rules["groups"].as_array().expect("rule groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .map(|r| {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap();
            (name.to_owned(), r["expr"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// The metric names in `query`: each `swapvisor_` and the lower-case letters and underscores
/// after it.
fn metric_names(query: &str) -> Vec<&str> {
    query
        .match_indices("swapvisor_")
        .map(|(start, _)| {
            let rest = &query[start..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// The families a scrape declares (`# TYPE <name> <kind>`), by name.
fn families(exposition: &str) -> HashMap<&str, &str> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .collect()
}

/// Whether `name` is a series of one of `families`: a family's own name, or a histogram's
/// `_bucket`, `_sum` or `_count`.
fn exported(name: &str, families: &HashMap<&str, &str>) -> bool {
    families.contains_key(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|family| families.get(family) == Some(&"histogram"))
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_dashboard_and_the_alerts_use_is_one_the_binary_exports() {
    let config = TempConfig::new(
        r#"
modules:
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }
plugins:
  - { name: hits, type: counter, config: { start: 0 } }
pipelines:
  hello:
    trigger: { type: http, config: { server: web, method: GET, path: /hello } }
    steps:
      - { name: c, type: step.plugin_call, config: { plugin: hits, op: increment } }
"#,
    );
    let mut process = Swapvisor::start(&["run", config.as_str(), "--admin", "127.0.0.1:0"]);
    let (web, admin) = process.wait_until_up_with_admin("web");
    let (code, answer) = get(&format!("{web}/hello")).await;
    assert_eq!(code, 200, "{answer}");
    let (code, text) = get(&format!("{admin}/metrics")).await;
    assert_eq!(code, 200);
    let text = text.as_str().expect("the exposition");
    common::assert_has_lines(
        text,
        [r#"swapvisor_http_requests_total{pipeline="hello",status_class="2xx"} 1"#],
    );
    let families = families(text);

    let dashboard = dashboard();
    let mut queries: Vec<(String, String)> = dashboard_exprs(&dashboard)
        .into_iter()
        .map(|e| (DASHBOARD.to_owned(), e.to_owned()))
        .collect();
    // The template variables' `label_values(...)` queries.
    let mut variables = Vec::new();
    strings_under(&dashboard["templating"], &["query"], &mut variables);
    queries.extend(
        variables
            .iter()
            .map(|q| (DASHBOARD.to_owned(), q.to_string())),
    );
    queries.extend(rule_exprs());

    let mut used = BTreeSet::new();
    let mut missing = Vec::new();
    for (owner, query) in &queries {
        for name in metric_names(query) {
            used.insert(name.to_owned());
            if !exported(name, &families) {
                missing.push(format!("{name} (in {owner}: {query})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not exported by the binary:\n{}\n\nthe scrape:\n{text}",
        missing.join("\n")
    );
    // The extraction found what the dashboard and the rules are about (and a name the binary
    // does not export would be caught).
    for name in [
        "swapvisor_reloads_total",
        "swapvisor_reload_duration_seconds_bucket",
        "swapvisor_plugin_up",
        "swapvisor_plugin_state",
        "swapvisor_http_requests_total",
        "swapvisor_http_request_duration_seconds_bucket",
        "swapvisor_listener_connections",
        "swapvisor_listener_max_connections",
    ] {
        assert!(used.contains(name), "{name} is not used; used: {used:?}");
    }
    assert!(!exported("swapvisor_reloads_totl", &families));
    assert!(!exported("swapvisor_generation_bucket", &families));
}

#[test]
fn the_dashboard_has_its_panels_and_variables() {
    let dashboard = dashboard();
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 39);
    assert_eq!(dashboard["uid"], "swapvisor");
    let panels = dashboard["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().expect("a title"))
        .collect();
    for title in [
        "Reloads by outcome",
        "Last reload successful",
        "Generation",
        "Reload duration (p50, p99)",
        "Plugins not up",
        "Plugin states",
        "Plugin reloads by plugin and outcome",
        "Plugin restarts and escalations",
        "Request rate by pipeline",
        "Error rate (5xx share) by pipeline",
        "Latency by pipeline (p50, p99)",
        "In-flight requests",
        "Listener saturation (connections / max connections)",
        "Listener at cap, evicted and refused",
    ] {
        assert!(titles.contains(&title), "no panel {title:?} in {titles:?}");
    }
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    // Every query panel reads the data source the `datasource` variable picks.
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel:#}");
        assert!(
            !panel["targets"].as_array().unwrap().is_empty(),
            "{panel:#}"
        );
    }
    let variables: HashMap<&str, &Value> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    assert_eq!(variables["datasource"]["query"], "prometheus");
    for (name, label) in [("pipeline", "pipeline)"), ("plugin", "plugin)")] {
        let query = variables[name]["query"]["query"].as_str().unwrap();
        assert!(
            query.starts_with("label_values(") && query.ends_with(label),
            "{name}: {query}"
        );
    }
}

/// Runs `promtool args` in the repository and asserts that it succeeds; returns its output.
fn run_promtool(promtool: &Path, args: &[&str]) -> String {
    common::succeeds(
        Command::new(promtool)
            .args(args)
            .current_dir(common::repository()),
    )
}

#[test]
fn the_alert_rules_and_the_dashboard_queries_pass_promtool() {
    let Some(promtool) = common::promtool("the promtool checks of deploy/") else {
        return;
    };
    let checked = run_promtool(&promtool, &["check", "rules", RULES]);
    let alerts = rule_exprs().len();
    assert!(
        checked.contains(&format!("SUCCESS: {alerts} rules found")),
        "{checked}"
    );
    let tested = run_promtool(&promtool, &["test", "rules", RULE_TESTS]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // The dashboard's queries, with its variables given values, as recording rules: promtool
    // parses each one.
    let dashboard = dashboard();
    let rules: Vec<Value> = dashboard_exprs(&dashboard)
        .iter()
        .enumerate()
        .map(|(i, expr)| {
            let mut expr = expr.replace("$__rate_interval", "5m");
            for variable in ["$job", "$instance", "$pipeline", "$plugin"] {
                expr = expr.replace(variable, ".*");
            }
            serde_json::json!({ "record": format!("dashboard:query_{i}"), "expr": expr })
        })
        .collect();
    let file = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard_rules.yaml");
    std::fs::write(&path, serde_yaml::to_string(&file).unwrap()).unwrap();
    let checked = run_promtool(&promtool, &["check", "rules", path.to_str().unwrap()]);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "{checked}"
    );
}
