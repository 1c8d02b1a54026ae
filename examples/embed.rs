//! Embedding swapvisor: start a runtime on a config, serve HTTP, reload it from Rust, and
//! watch a bad reload being refused while the good config keeps serving.
//!
//! cargo run --example embed

use serde_json::json;
use swapvisor::{Config, Registry, ReloadOutcome, Runtime};

fn config(version: &str, extra_module: &str) -> Config {
    let yaml = format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0" }} }}
{extra_module}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, path: /hello }} }}
    steps:
      - {{ name: r, type: step.json_response, config: {{ body: {{ version: "{version}" }} }} }}
"#
    );
    Config::parse(yaml.as_bytes()).expect("a valid config")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::start(config("v1", ""), Registry::with_builtins()).await?;
    let listening = runtime.status().await?.listening();
    let (_, address) = &listening[0];
    println!("serving http://{address}/hello");
    println!(
        "v1 -> {}",
        runtime.execute("hello", json!({})).await?["body"]
    );

    let outcome = runtime.reload(config("v2", "")).await?.outcome;
    println!("reload to v2: {outcome:?}");

    let failing = "  - { name: f, type: fault.inject, config: { failOn: start } }";
    let outcome = runtime.reload(config("v3", failing)).await?.outcome;
    assert!(matches!(outcome, ReloadOutcome::RolledBack { .. }));
    println!("reload to v3 (fails to start): {outcome:?}");
    println!(
        "still serving -> {}",
        runtime.execute("hello", json!({})).await?["body"]
    );

    let status = runtime.status().await?;
    println!("status: {}", serde_json::to_string_pretty(&status)?);
    runtime.shutdown().await?;
    Ok(())
}
