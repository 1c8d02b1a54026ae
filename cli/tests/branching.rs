// Longer than 450 lines on purpose: one test per behaviour of branching and errors, each with its own small config.
//! Branching and errors in pipelines, through a real runtime and real HTTP requests: `if:`,
//! `step.switch`, `onError:` and `step.transform`, and their config errors with exact places.

mod common;

use serde_json::{Value, json};
use swapvisor::config::{DocumentLimits, process_env};
use swapvisor::engine::BuildError;
use swapvisor::{Config, Engine, Registry, Runtime};

use common::{client, request};

/// Starts a runtime on `pipelines` (YAML, indented under `pipelines:`) behind a server `web`
/// on an ephemeral port; its base URL.
async fn start(pipelines: &str) -> (Runtime, String) {
    let yaml = format!(
        "modules:\n  - {{ name: web, type: http.server, config: {{ address: \"127.0.0.1:0\" }} }}\npipelines:\n{pipelines}"
    );
    let config = Config::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let runtime = Runtime::start(config, Registry::with_builtins())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let address = runtime.status().await.unwrap().listening()[0].1.clone();
    (runtime, format!("http://{address}"))
}

async fn call(method: &str, url: &str, body: &str) -> (u16, Value) {
    request(&client(), method, url, body)
        .await
        .expect("request")
}

/// Every error line of building `pipelines` (YAML under `pipelines:`), with the built-in types.
async fn errors(pipelines: &str) -> Vec<String> {
    let yaml = format!("pipelines:\n{pipelines}");
    let result = Engine::build_from_source(
        yaml.as_bytes(),
        &DocumentLimits::default(),
        &Registry::with_builtins(),
        &process_env,
    )
    .await;
    match result {
        Ok(_) => panic!("config built, but errors were expected:\n{yaml}"),
        Err(BuildError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("expected validation errors, got: {other}"),
    }
}

#[tokio::test]
async fn if_runs_a_step_only_when_its_expression_is_truthy() {
    let (runtime, base) = start(
        r#"
  greet:
    trigger: { type: http, config: { server: web, path: /greet } }
    steps:
      - name: who
        type: step.set
        config: { values: { name: "{{ request.query.name }}" } }
      - name: loud
        if: '$who.name == "ada" or .request.query.loud == "yes"'
        type: step.set
        config: { values: { shout: "HELLO {{ who.name }}" } }
      - name: answer
        type: step.json_response
        config: { body: { who: "{{ who.name }}", loud: "{{ loud }}" } }
"#,
    )
    .await;
    assert_eq!(
        call("GET", &format!("{base}/greet?name=ada"), "").await,
        (200, json!({"who": "ada", "loud": {"shout": "HELLO ada"}}))
    );
    assert_eq!(
        call("GET", &format!("{base}/greet?name=bob"), "").await,
        (200, json!({"who": "bob", "loud": null}))
    );
    assert_eq!(
        call("GET", &format!("{base}/greet?name=bob&loud=yes"), "").await,
        (200, json!({"who": "bob", "loud": {"shout": "HELLO bob"}}))
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_skipped_response_step_leaves_the_answer_to_the_others() {
    let (runtime, base) = start(
        r#"
  p:
    trigger: { type: http, config: { server: web, method: "*", path: /p } }
    steps:
      - { name: early, if: '.request.method == "POST"', type: step.json_response, config: { status: 201, body: { created: true } } }
      - { name: last, if: '.request.method == "DELETE"', type: step.set, config: { values: { deleted: true } } }
"#,
    )
    .await;
    assert_eq!(
        call("POST", &format!("{base}/p"), "").await,
        (201, json!({"created": true}))
    );
    assert_eq!(
        call("DELETE", &format!("{base}/p"), "").await,
        (200, json!({"deleted": true}))
    );
    // Neither ran: the last step's output, null.
    assert_eq!(
        call("GET", &format!("{base}/p"), "").await,
        (200, Value::Null)
    );
    runtime.shutdown().await.unwrap();
}

const ROUTE: &str = r#"
  route:
    trigger: { type: http, config: { server: web, method: POST, path: /route } }
    steps:
      - { name: input, type: step.set, config: { values: { role: "{{ request.body.role }}" } } }
      - name: decide
        type: step.switch
        config:
          cases:
            - when: '$input.role == "admin"'
              steps:
                - { name: grant, type: step.set, config: { values: { level: 9 } } }
                - { name: admin, type: step.set, config: { values: { access: all, level: "{{ grant.level }}" } } }
            - when: '$input.role | test("^user")'
              steps:
                - { name: user, type: step.set, config: { values: { access: some } } }
            - when: 'true'
              steps:
                - { name: never, type: step.set, config: { values: { access: never } } }
            - when: '$input.role == "banned"'
              steps:
                - { name: deny, type: step.json_response, config: { status: 403, body: { error: "banned" } } }
          default:
            - { name: none, type: step.set, config: { values: { access: none } } }
      - { name: answer, type: step.json_response, config: { body: { decided: "{{ decide }}" } } }
"#;

#[tokio::test]
async fn a_switch_runs_the_first_matching_case_and_passes_on_its_last_output() {
    let (runtime, base) = start(ROUTE).await;
    let url = format!("{base}/route");
    assert_eq!(
        call("POST", &url, r#"{"role": "admin"}"#).await,
        (200, json!({"decided": {"access": "all", "level": 9}}))
    );
    assert_eq!(
        call("POST", &url, r#"{"role": "user-7"}"#).await,
        (200, json!({"decided": {"access": "some"}}))
    );
    // `true` matches before the case written after it.
    assert_eq!(
        call("POST", &url, r#"{"role": "banned"}"#).await,
        (200, json!({"decided": {"access": "never"}}))
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_default_runs_when_no_case_matches_and_a_response_inside_a_case_answers() {
    let (runtime, base) = start(
        r#"
  route:
    trigger: { type: http, config: { server: web, path: /route } }
    steps:
      - name: decide
        type: step.switch
        config:
          cases:
            - when: '.request.query.who == "banned"'
              steps:
                - { name: deny, type: step.json_response, config: { status: 403, body: { error: "banned {{ request.query.who }}" } } }
                - { name: after, type: step.log, config: { message: "denied" } }
          default:
            - { name: none, type: step.set, config: { values: { access: none } } }
"#,
    )
    .await;
    assert_eq!(
        call("GET", &format!("{base}/route?who=banned"), "").await,
        (403, json!({"error": "banned banned"}))
    );
    assert_eq!(
        call("GET", &format!("{base}/route?who=ada"), "").await,
        (200, json!({"access": "none"}))
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn on_error_steps_answer_a_failure_with_its_message() {
    let (runtime, base) = start(
        r#"
  risky:
    trigger: { type: http, config: { server: web, path: /risky } }
    steps:
      - { name: first, type: step.set, config: { values: { ok: true } } }
      - { name: boom, if: '.request.query.fail == "yes"', type: step.fail, config: { message: "no luck for {{ request.query.who }}" } }
      - { name: fine, type: step.json_response, config: { body: { fine: "{{ first.ok }}" } } }
    onError:
      - { name: log, type: step.log, config: { message: "{{ error.step }} failed" } }
      - name: answer
        type: step.json_response
        config: { status: 422, body: { failed: "{{ error.step }}", why: "{{ error.message }}", before: "{{ first.ok }}" } }
  unanswered:
    trigger: { type: http, config: { server: web, path: /unanswered } }
    steps:
      - { name: boom, type: step.fail, config: { message: "broken" } }
    onError:
      - { name: note, type: step.log, config: { message: "{{ error.message }}" } }
  twice:
    trigger: { type: http, config: { server: web, path: /twice } }
    steps:
      - { name: boom, type: step.fail, config: { message: "broken" } }
    onError:
      - { name: again, type: step.transform, config: { program: 'error("handler broke on \(.error.message)")' } }
"#,
    )
    .await;
    assert_eq!(
        call("GET", &format!("{base}/risky?fail=yes&who=ada"), "").await,
        (
            422,
            json!({"failed": "boom", "why": "no luck for ada", "before": true})
        )
    );
    assert_eq!(
        call("GET", &format!("{base}/risky"), "").await,
        (200, json!({"fine": true}))
    );
    // onError steps without a response: the failure answers as it would without them.
    assert_eq!(
        call("GET", &format!("{base}/unanswered"), "").await,
        (
            500,
            json!({"error": "broken", "pipeline": "unanswered", "step": "boom"})
        )
    );
    assert_eq!(
        call("GET", &format!("{base}/twice"), "").await,
        (
            500,
            json!({
                "error": "broken; then onError step \"again\" failed too: jq: handler broke on broken",
                "pipeline": "twice",
                "step": "boom"
            })
        )
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn transform_outputs_its_program_first_output_or_all_of_them() {
    let (runtime, base) = start(
        r#"
  shape:
    trigger: { type: http, config: { server: web, method: POST, path: /shape } }
    steps:
      - { name: order, type: step.set, config: { values: { items: "{{ request.body.items }}" } } }
      - name: total
        type: step.transform
        config: { program: '{count: ($order.items | length), sum: ([$order.items[].price] | add), names: [.order.items[].name | ascii_upcase]}' }
      - name: cheap
        type: step.transform
        config: { input: "{{ order.items }}", all: true, program: '.[] | select(.price < 5) | .name' }
      - name: nothing
        type: step.transform
        config: { program: 'empty' }
      - { name: answer, type: step.json_response, config: { body: { total: "{{ total }}", cheap: "{{ cheap }}", nothing: "{{ nothing }}" } } }
"#,
    )
    .await;
    let body = r#"{"items": [{"name": "tea", "price": 3}, {"name": "cake", "price": 7.5}, {"name": "jam", "price": 4}]}"#;
    assert_eq!(
        call("POST", &format!("{base}/shape"), body).await,
        (
            200,
            json!({
                "total": {"count": 3, "sum": 14.5, "names": ["TEA", "CAKE", "JAM"]},
                "cheap": ["tea", "jam"],
                "nothing": null
            })
        )
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_runtime_jq_error_fails_the_step_like_a_step_error() {
    let (runtime, base) = start(
        r#"
  p:
    trigger: { type: http, config: { server: web, path: /p } }
    steps:
      - { name: check, if: '.request.query.n | tonumber > 1', type: step.set, config: { values: { big: true } } }
"#,
    )
    .await;
    assert_eq!(
        call("GET", &format!("{base}/p?n=2"), "").await,
        (200, json!({"big": true}))
    );
    let (status, body) = call("GET", &format!("{base}/p?n=abc"), "").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["step"], "check");
    assert_eq!(body["pipeline"], "p");
    let error = body["error"].as_str().unwrap();
    assert!(error.starts_with("its if: "), "{error}");
    assert!(error.contains("abc"), "{error}");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn jq_syntax_errors_and_unknown_variables_are_config_errors_with_their_places() {
    let found = errors(
        r#"
  p:
    steps:
      - { name: a, type: step.set, config: { values: {} } }
      - { name: x, if: '.request.q ==', type: step.set, config: { values: {} } }
      - { name: y, if: '$nope', type: step.set, config: { values: {} } }
      - name: route
        type: step.switch
        config:
          cases:
            - { when: 'if . then 1', steps: [] }
      - { name: t, type: step.transform, config: { program: '{a: }' } }
"#,
    )
    .await;
    assert_eq!(
        found,
        vec![
            r#"pipelines.p.steps[1] (name "x").if: syntax error: expected term at the end (offset 13) in jq program ".request.q ==" (variables: $a, $request)"#,
            r#"pipelines.p.steps[2] (name "y").if: undefined variable $nope in jq program "$nope" (variables: $a, $request, $x)"#,
            r#"pipelines.p.steps[3] (name "route").config.cases[0].when: syntax error: expected else or end at the end (offset 11) in jq program "if . then 1" (variables: $a, $request, $x, $y)"#,
            r#"pipelines.p.steps[4] (name "t").config.program: syntax error: expected term at offset 4: "}" in jq program "{a: }" (variables: $a, $request, $route, $x, $y)"#,
        ]
    );
}

#[tokio::test]
async fn nested_steps_have_unique_names_known_types_and_their_own_places() {
    let found = errors(
        r#"
  p:
    steps:
      - { name: deny, type: step.set, config: { values: {} } }
      - name: route
        type: step.switch
        config:
          cases:
            - when: 'true'
              steps:
                - { name: ok, type: step.set, config: { values: {} } }
                - { name: deny, type: step.json_response, config: {} }
                - { name: odd, type: step.sett, config: {} }
          default:
            - { name: ok, type: step.set, config: { values: { v: "{{ odd }}" } } }
      - { name: after, type: step.set, config: { values: { v: "{{ ok }}" } } }
    onError:
      - { name: route, type: step.log, config: { message: "x" } }
"#,
    )
    .await;
    assert_eq!(
        found,
        vec![
            r#"pipelines.p.steps[1] (name "route").config.cases[0].steps[1] (name "deny").name: duplicate step name "deny" (first used at pipelines.p.steps[0]); step names are unique in the whole pipeline, nested and onError steps included"#,
            r#"pipelines.p.steps[1] (name "route").config.cases[0].steps[2] (name "odd").type: unknown step type "step.sett" (did you mean "step.set"?; registered: step.db_exec, step.db_query, step.delay, step.fail, step.http_call, step.json_response, step.jwt, step.log, step.plugin_call, step.proxy, step.rate_limit, step.set, step.static, step.switch, step.transform, step.validate)"#,
            r#"pipelines.p.steps[1] (name "route").config.default[0] (name "ok").name: duplicate step name "ok" (first used at pipelines.p.steps[1] (name "route").config.cases[0].steps[0]); step names are unique in the whole pipeline, nested and onError steps included"#,
            r#"pipelines.p.steps[1] (name "route").config.default[0] (name "ok").config.values.v: unknown template reference "odd" (available: request, deny)"#,
            r#"pipelines.p.steps[2] (name "after").config.values.v: unknown template reference "ok" (available: request, deny, route)"#,
            r#"pipelines.p.onError[0] (name "route").name: duplicate step name "route" (first used at pipelines.p.steps[1]); step names are unique in the whole pipeline, nested and onError steps included"#,
        ]
    );
}

#[tokio::test]
async fn a_run_past_its_time_limit_answers_504_without_on_error_and_transform_output_is_charged() {
    let (runtime, base) = start(
        r#"
  slow:
    timeout: 100ms
    trigger: { type: http, config: { server: web, path: /slow } }
    steps:
      - { name: wait, type: step.delay, config: { duration: 30s } }
    onError:
      - { name: answer, type: step.json_response, config: { status: 418, body: { handled: true } } }
  big:
    maxRenderBytes: 1024
    trigger: { type: http, config: { server: web, path: /big } }
    steps:
      - { name: many, type: step.transform, config: { program: '[range(.request.query.n | tonumber)]' } }
"#,
    )
    .await;
    assert_eq!(
        call("GET", &format!("{base}/slow"), "").await,
        (
            504,
            json!({"error": "pipeline \"slow\" ran past its time limit of 100ms", "pipeline": "slow"})
        )
    );
    let (status, small) = call("GET", &format!("{base}/big?n=3"), "").await;
    assert_eq!((status, small), (200, json!([0, 1, 2])));
    assert_eq!(
        call("GET", &format!("{base}/big?n=1000"), "").await,
        (
            500,
            json!({
                "error": "its templates would render more than the pipeline's maxRenderBytes (1024 bytes) for this run",
                "pipeline": "big",
                "step": "many"
            })
        )
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn on_error_reads_the_failure_of_a_nested_step_by_its_own_name() {
    let (runtime, base) = start(
        r#"
  p:
    trigger: { type: http, config: { server: web, path: /p } }
    steps:
      - name: route
        type: step.switch
        config:
          cases:
            - when: 'true'
              steps:
                - { name: inner, type: step.fail, config: { message: "inner broke" } }
    onError:
      - name: answer
        if: '$error.step == "inner"'
        type: step.json_response
        config: { status: 503, body: "{{ error }}" }
"#,
    )
    .await;
    assert_eq!(
        call("GET", &format!("{base}/p"), "").await,
        (503, json!({"step": "inner", "message": "inner broke"}))
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_example_in_config_md_answers_as_documented() {
    let doc = include_str!("../../docs/CONFIG.md");
    let section = &doc[doc.find("### Branching and errors").expect("the section")..];
    let start = section.find("```yaml\nmodules:").expect("its example") + "```yaml\n".len();
    let yaml = &section[start..start + section[start..].find("```").expect("its end")];
    let yaml = yaml.replace("127.0.0.1:8080", "127.0.0.1:0");
    let config = Config::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let runtime = Runtime::start(config, Registry::with_builtins())
        .await
        .unwrap();
    let address = runtime.status().await.unwrap().listening()[0].1.clone();
    let url = format!("http://{address}/orders");
    let order = |user: &str, second: Value| {
        json!({"user": user, "items": [{"price": 30}, {"price": second}]}).to_string()
    };
    assert_eq!(
        call("POST", &url, &order("ada", json!(12.5))).await,
        (201, json!({"accepted": "ada", "total": 42.5}))
    );
    assert_eq!(
        call("POST", &url, &order("guest", json!(12.5))).await,
        (403, json!({"error": "log in first"}))
    );
    assert_eq!(
        call("POST", &url, &order("ada", json!(90))).await,
        (
            422,
            json!({"failed": "check", "why": "the total 120 is over the limit"})
        )
    );
    runtime.shutdown().await.unwrap();
}
