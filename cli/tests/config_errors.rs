//! Every kind of config error, with its exact place and message, and all of them at once.

use swapvisor::Stage;
use swapvisor::config::{DocumentLimits, process_env};
use swapvisor::engine::BuildError;
use swapvisor::{Engine, Registry};

/// Builds `yaml` with the built-in registry and the given environment, and returns every
/// error line, or panics if it builds.
async fn errors_with_env(yaml: &str, env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Vec<String> {
    let result = Engine::build_from_source(
        yaml.as_bytes(),
        &DocumentLimits::default(),
        &Registry::with_builtins(),
        env,
    )
    .await;
    match result {
        Ok(_) => panic!("config built, but errors were expected:\n{yaml}"),
        Err(BuildError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        Err(other) => panic!(
            "expected validation errors, got {:?}: {other}",
            other.stage()
        ),
    }
}

async fn errors(yaml: &str) -> Vec<String> {
    errors_with_env(yaml, &process_env).await
}

#[tokio::test]
async fn unknown_fields_are_named_at_every_level() {
    let found = errors(
        r#"
modulez: []
modules:
  - name: web
    type: http.server
    config: { adress: "127.0.0.1:0" }
    dependson: []
runtime:
  reload: { mode: sideways, drainTimeout: soon }
"#,
    )
    .await;
    assert_eq!(
        found,
        vec![
            r#"modulez: unknown field "modulez" (did you mean "modules"?; valid fields: modules, pipelines, plugins, runtime)"#,
            r#"modules[0] (name "web").dependson: unknown field "dependson" (did you mean "dependsOn"?; valid fields: name, type, config, dependsOn)"#,
            r#"runtime.reload.mode: unknown value "sideways" (valid: start-first, stop-first)"#,
            r#"runtime.reload.drainTimeout: invalid duration "soon" (expected number at 0); expected a number with a unit, such as "250ms", "5s" or "1m""#,
            r#"modules[0] (name "web").config.adress: unknown field "adress", expected one of "address", "maxConnections", "headerReadTimeout", "idleTimeout", "bodyReadTimeout", "minBodyRate""#,
        ]
    );
}

#[tokio::test]
async fn duplicate_module_pipeline_and_step_names() {
    let found = errors(
        r#"
modules:
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }
pipelines:
  a:
    steps:
      - { name: s, type: step.set, config: { values: {} } }
      - { name: s, type: step.set, config: { values: {} } }
  a:
    steps: []
"#,
    )
    .await;
    assert_eq!(
        found,
        vec![
            r#"pipelines.a: duplicate pipeline name "a" (each pipeline name may appear once)"#,
            r#"modules[1] (name "web").name: duplicate module name "web" (first used at modules[0])"#,
            r#"pipelines.a.steps[1] (name "s").name: duplicate step name "s" (first used at pipelines.a.steps[0])"#,
        ]
    );
}

#[tokio::test]
async fn unknown_types_list_the_registered_ones() {
    let found = errors(
        r#"
modules:
  - { name: db, type: kv.store }
pipelines:
  p:
    trigger: { type: cron, config: {} }
    steps:
      - { name: s, type: step.sett, config: {} }
"#,
    )
    .await;
    assert_eq!(
        found,
        vec![
            r#"modules[0] (name "db").type: unknown module type "kv.store" (registered: fault.inject, http.server, http.upstream, storage.postgres, storage.sqlite)"#,
            r#"pipelines.p.steps[0] (name "s").type: unknown step type "step.sett" (did you mean "step.set"?; registered: step.db_exec, step.db_query, step.delay, step.fail, step.http_call, step.json_response, step.jwt, step.log, step.plugin_call, step.proxy, step.rate_limit, step.set, step.static, step.switch, step.transform, step.validate)"#,
            r#"pipelines.p.trigger.type: unknown trigger type "cron" (registered: http, schedule)"#,
        ]
    );
}

#[tokio::test]
async fn depends_on_an_unknown_module() {
    let found = errors(
        r#"
modules:
  - { name: cache, type: fault.inject, config: { failOn: stop } }
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" }, dependsOn: [cach] }
"#,
    )
    .await;
    assert_eq!(
        found,
        vec![
            r#"modules[1] (name "web").dependsOn[0]: unknown module "cach" (did you mean "cache"?; modules: cache, web)"#
        ]
    );
}

#[tokio::test]
async fn dependency_cycles_print_the_cycle() {
    let found = errors(
        r#"
modules:
  - { name: a, type: fault.inject, config: { failOn: stop }, dependsOn: [c] }
  - { name: b, type: fault.inject, config: { failOn: stop }, dependsOn: [a] }
  - { name: c, type: fault.inject, config: { failOn: stop }, dependsOn: [b] }
  - { name: d, type: fault.inject, config: { failOn: stop }, dependsOn: [d] }
"#,
    )
    .await;
    assert_eq!(
        found,
        vec![
            r#"modules[0] (name "a").dependsOn: dependency cycle: a -> c -> b -> a"#,
            r#"modules[3] (name "d").dependsOn: dependency cycle: d -> d"#,
        ]
    );
}

#[tokio::test]
async fn a_trigger_naming_an_unknown_server() {
    let found = errors(
        r#"
modules:
  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }
  - { name: chaos, type: fault.inject, config: { failOn: stop } }
pipelines:
  a:
    trigger: { type: http, config: { server: wbe, path: /a } }
    steps: []
  b:
    trigger: { type: http, config: { server: chaos, path: /b } }
    steps: []
"#,
    )
    .await;
    assert_eq!(
        found,
        vec![
            r#"pipelines.a.trigger.config.server: unknown server "wbe" (did you mean "web"?; servers: web)"#,
            r#"pipelines.b.trigger.config.server: module "chaos" is not an http.server (servers: web)"#,
        ]
    );
}

#[tokio::test]
async fn unset_environment_variables_are_named() {
    let env = |name: &str| (name == "HOST").then(|| "127.0.0.1".to_owned());
    let found = errors_with_env(
        r#"
modules:
  - { name: web, type: http.server, config: { address: "${HOST}:${SWAPVISOR_TEST_UNSET_PORT}" } }
"#,
        &env,
    )
    .await;
    assert_eq!(
        found,
        vec![
            r#"modules[0] (name "web").config.address: environment variable "SWAPVISOR_TEST_UNSET_PORT" is not set (set it, or give a default with ${SWAPVISOR_TEST_UNSET_PORT:-default})"#
        ]
    );
}

#[tokio::test]
async fn environment_expansion_leaves_the_parsed_config_untouched() {
    let env = |name: &str| (name == "GREETING").then(|| "hi".to_owned());
    let source = br#"
pipelines:
  p:
    steps:
      - { name: s, type: step.set, config: { values: { word: "${GREETING}", other: "${MISSING:-fallback}" } } }
"#;
    let engine = Engine::build_from_source(
        source,
        &DocumentLimits::default(),
        &Registry::with_builtins(),
        &env,
    )
    .await
    .unwrap();
    let written = &engine.config().pipelines[0].steps[0].config;
    assert_eq!(written["values"]["word"], "${GREETING}");
    let resolved = &engine.resolved().config.pipelines[0].steps[0].config;
    assert_eq!(resolved["values"]["word"], "hi");
    assert_eq!(resolved["values"]["other"], "fallback");
    let output = engine.execute("p", serde_json::json!({})).await.unwrap();
    assert_eq!(
        output,
        serde_json::json!({"word": "hi", "other": "fallback"})
    );
}

#[tokio::test]
async fn every_error_is_reported_in_one_pass() {
    let found = errors(
        r#"
modules:
  - { name: a, type: bad.type, dependsOn: [b] }
  - { name: b, type: fault.inject, config: { failOn: stop }, dependsOn: [a] }
  - { name: b, type: fault.inject, config: { failOn: stop } }
"#,
    )
    .await;
    assert_eq!(
        found,
        vec![
            r#"modules[2] (name "b").name: duplicate module name "b" (first used at modules[1])"#,
            r#"modules[0] (name "a").dependsOn: dependency cycle: a -> b -> a"#,
            r#"modules[0] (name "a").type: unknown module type "bad.type" (registered: fault.inject, http.server, http.upstream, storage.postgres, storage.sqlite)"#,
        ]
    );
}

#[tokio::test]
async fn documents_that_are_not_configs_fail_at_the_parse_stage() {
    for (source, expected) in [
        (&b"modules: [unclosed"[..], "YAML syntax:"),
        (b"\xff\xfe\x00junk", "not UTF-8"),
        (b"", "document is empty"),
        (b"{\"modules\": [}", "JSON syntax:"),
    ] {
        let error = Engine::build_from_source(
            source,
            &DocumentLimits::default(),
            &Registry::with_builtins(),
            &process_env,
        )
        .await
        .unwrap_err();
        assert_eq!(error.stage(), Stage::Parse);
        assert!(error.to_string().contains(expected), "{error}");
    }
}

#[tokio::test]
async fn type_settings_are_checked_with_their_place() {
    let found = errors(
        r#"
modules:
  - { name: web, type: http.server, config: { address: "example.com:80" } }
pipelines:
  p:
    trigger: { type: schedule, config: { every: 1ms } }
    steps:
      - { name: r, type: step.json_response, config: { status: 700 } }
      - { name: d, type: step.delay, config: { duration: forever } }
"#,
    )
    .await;
    assert_eq!(
        found,
        vec![
            r#"modules[0] (name "web").config.address: invalid address "example.com:80" (expected IP:port, such as "127.0.0.1:8080", "[::1]:8080" or "localhost:8080")"#,
            r#"pipelines.p.steps[0] (name "r").config.status: HTTP status 700 is out of range (100 to 599)"#,
            r#"pipelines.p.steps[1] (name "d").config.duration: invalid duration "forever" (expected number at 0); expected a number with a unit, such as "250ms", "5s" or "1m""#,
            r#"pipelines.p.trigger.config.every: interval "1ms" is shorter than the minimum of 10ms"#,
        ]
    );
}

#[tokio::test]
async fn durations_are_capped_at_30_days() {
    let found =
        errors("runtime: { reload: { drainTimeout: 300000000000y, probation: 31d } }").await;
    assert_eq!(
        found,
        vec![
            r#"runtime.reload.drainTimeout: duration "300000000000y" is longer than the maximum of 30 days"#,
            r#"runtime.reload.probation: duration "31d" is longer than the maximum of 30 days"#,
        ]
    );
}

#[tokio::test]
async fn a_pipeline_time_limit_must_be_a_positive_duration() {
    let found = errors(
        r#"
pipelines:
  zero:
    timeout: 0s
    steps: []
  soon:
    timeout: soon
    steps: []
  number:
    timeout: 5
    steps: []
"#,
    )
    .await;
    assert_eq!(
        found,
        vec![
            r#"pipelines.zero.timeout: must be longer than 0 (a duration such as 500ms or 30s)"#,
            r#"pipelines.soon.timeout: invalid duration "soon" (expected number at 0); expected a number with a unit, such as "250ms", "5s" or "1m""#,
            r#"pipelines.number.timeout: expected a duration such as "250ms", "5s" or "1m", found a number"#,
        ]
    );
}

#[tokio::test]
async fn connection_limits_of_an_http_server_are_checked_with_their_places() {
    let found = errors(
        r#"
modules:
  - name: web
    type: http.server
    config: { address: "127.0.0.1:0", maxConnections: 0, headerReadTimeout: soon, idleTimeout: 0s }
"#,
    )
    .await;
    assert_eq!(
        found,
        vec![
            r#"modules[0] (name "web").config.maxConnections: maxConnections must be at least 1, got 0"#,
            r#"modules[0] (name "web").config.headerReadTimeout: invalid duration "soon" (expected number at 0); expected a number with a unit, such as "250ms", "5s" or "1m""#,
            r#"modules[0] (name "web").config.idleTimeout: idleTimeout must be longer than zero, got "0s""#,
        ]
    );
}
