//! A reload storm under HTTP load: keep-alive clients hammer a live swapvisor while it is
//! reloaded with a mix of good, build-failing and start-failing configs.
//!
//! `cargo bench --bench storm` prints requests served, failed (non-2xx) and refused (no
//! response: connect, reset, timeout), counted for the storm alone, and p50/p99 latency in
//! steady state and during the storm, with the p99 ratio. Targets: 0 failed or refused; storm
//! p99 <= 5x steady p99. The clients never retry. Every reload must get the outcome its kind
//! of config calls for (good: activated, build-failing: rejected, start-failing: rolled back),
//! and the version served after it must be the latest activated one; the bench stops with an
//! error otherwise.
//!
//! The clients are the test suite's (`cli/tests/common/http.rs`): one keep-alive connection
//! each, never a retry, and every connection they open counted. A reload must not close a
//! connection, so the bench also stops with an error unless the clients opened exactly one
//! connection each.
//!
//! Knobs (environment): STORM_CLIENTS (16), STORM_RELOADS (60), STORM_INTERVAL_MS (50),
//! STORM_STEADY_SECS (3), STORM_MODE (start-first | stop-first).
//!
//! `cargo test` runs it too, in a short form (2 s steady, 12 reloads, debug build), so that its
//! assertions hold on every submission; `cargo bench` passes `--bench` and gets the full form.

#[path = "support/mod.rs"]
mod support;

/// The test suite's client, which never retries and counts its connections.
#[path = "../cli/tests/common/http.rs"]
#[allow(dead_code)]
mod http;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

// What `http` takes from its parent module (in the test suite, `common`).
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use swapvisor::{Config, ReloadOutcome, Runtime};

fn config(version: &str, address: &str, extra: &str, mode: &str) -> Config {
    let yaml = format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "{address}" }} }}
{extra}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, path: /hello }} }}
    steps:
      - {{ name: greet, type: step.set, config: {{ values: {{ message: "hello {{{{ request.query.name }}}}" }} }} }}
      - {{ name: respond, type: step.json_response, config: {{ body: {{ message: "{{{{ greet.message }}}}", version: "{version}" }} }} }}
runtime: {{ reload: {{ mode: {mode}, drainTimeout: 2s }} }}
"#
    );
    Config::parse(yaml.as_bytes()).expect("valid")
}

#[derive(Default)]
struct Tally {
    steady: Vec<u32>,
    storm: Vec<u32>,
    served: u64,
    failed: u64,
    refused: u64,
    /// Of the above, during the storm.
    storm_failed: u64,
    storm_refused: u64,
    first_refusal: Option<String>,
    /// TCP connections the clients opened: one each, unless something closed one.
    connections: usize,
}

impl Tally {
    fn failed(&mut self, in_storm: bool) {
        self.failed += 1;
        self.storm_failed += u64::from(in_storm);
    }

    fn refused(&mut self, in_storm: bool, why: impl FnOnce() -> String) {
        self.refused += 1;
        self.storm_refused += u64::from(in_storm);
        self.first_refusal.get_or_insert_with(why);
    }
}

/// The version the live engine serves now, asked on a connection of its own.
async fn served_version(url: &str) -> String {
    let (status, body) = http::get(url).await;
    assert_eq!(status, 200, "the version check is answered: {body}");
    body["version"].as_str().unwrap_or_default().to_owned()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs the short form (knobs still apply).
    let short = !std::env::args().any(|arg| arg == "--bench");
    let clients = support::knob("STORM_CLIENTS", 16);
    let reloads = support::knob("STORM_RELOADS", if short { 12 } else { 60 });
    let interval = Duration::from_millis(support::knob("STORM_INTERVAL_MS", 50));
    let steady_for = Duration::from_secs(support::knob(
        "STORM_STEADY_SECS",
        if short { 2 } else { 3 },
    ));
    let mode = std::env::var("STORM_MODE").unwrap_or_else(|_| "start-first".to_owned());
    let rt = support::tokio_runtime();
    rt.block_on(async move {
        let runtime = Arc::new(Runtime::start(config("v0", "127.0.0.1:0", "", &mode), support::registry()).await.expect("starts"));
        let address = runtime.status().await.unwrap().listening()[0].1.clone();
        let url = format!("http://{address}/hello?name=ada");
        let storming = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (url, storming, done) = (url.clone(), storming.clone(), done.clone());
                tokio::spawn(async move {
                    let client = http::client();
                    let mut tally = Tally::default();
                    while !done.load(Ordering::Relaxed) {
                        let in_storm = storming.load(Ordering::Relaxed);
                        let started = Instant::now();
                        let answer = tokio::time::timeout(Duration::from_secs(5), http::request(&client, "GET", &url, "")).await;
                        let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                        match answer {
                            Ok(Ok((status, _))) if (200..300).contains(&status) => {
                                tally.served += 1;
                                if in_storm { tally.storm.push(micros) } else { tally.steady.push(micros) }
                            }
                            Ok(Ok(_)) => tally.failed(in_storm),
                            Ok(Err(error)) => tally.refused(in_storm, || error),
                            Err(_) => tally.refused(in_storm, || "no answer within 5s".to_owned()),
                        }
                    }
                    tally.connections = client.connections();
                    tally
                })
            })
            .collect();

        tokio::time::sleep(steady_for).await;
        storming.store(true, Ordering::Relaxed);
        let storm_started = Instant::now();
        let mut outcomes = std::collections::BTreeMap::<&'static str, u32>::new();
        let mut serving = "v0".to_owned();
        for i in 1..=reloads {
            let version = format!("v{i}");
            let (extra, expected) = match i % 4 {
                1 => ("  - { name: f, type: fault.inject, config: { failOn: build } }", "rejected"),
                2 => ("  - { name: f, type: fault.inject, config: { failOn: start } }", "rolled_back"),
                _ => ("", "activated"),
            };
            let next = config(&version, "127.0.0.1:0", extra, &mode);
            let outcome: ReloadOutcome = runtime.reload(next).await.expect("answers").outcome;
            assert_eq!(outcome.name(), expected, "reload {i}: {outcome:?}");
            if outcome.is_activated() {
                serving = version;
            }
            assert_eq!(served_version(&url).await, serving, "the version served after reload {i}");
            *outcomes.entry(outcome.name()).or_default() += 1;
            tokio::time::sleep(interval).await;
        }
        let storm_for = storm_started.elapsed();
        done.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for task in tasks {
            let tally = task.await.expect("client");
            total.steady.extend(tally.steady);
            total.storm.extend(tally.storm);
            total.served += tally.served;
            total.failed += tally.failed;
            total.refused += tally.refused;
            total.storm_failed += tally.storm_failed;
            total.storm_refused += tally.storm_refused;
            total.first_refusal = total.first_refusal.or(tally.first_refusal);
            total.connections += tally.connections;
        }
        total.steady.sort_unstable();
        total.storm.sort_unstable();
        let (steady_p50, steady_p99) = (support::percentile_ms(&total.steady, 50.0), support::percentile_ms(&total.steady, 99.0));
        let (storm_p50, storm_p99) = (support::percentile_ms(&total.storm, 50.0), support::percentile_ms(&total.storm, 99.0));
        println!("storm: {clients} keep-alive clients, {reloads} reloads every {} ms ({mode}), steady {} s then storm {:.1} s", interval.as_millis(), steady_for.as_secs(), storm_for.as_secs_f64());
        println!("reload outcomes: {outcomes:?}");
        println!("requests served {}, failed {}, refused {}; connections opened {} by {clients} clients", total.served, total.failed, total.refused, total.connections);
        println!("during the storm alone: served {}, failed {}, refused {}", total.storm.len(), total.storm_failed, total.storm_refused);
        if let Some(first) = &total.first_refusal {
            println!("first refusal: {first}");
        }
        println!("steady: {} requests, {:.0} rps, p50 {steady_p50:.3} ms, p99 {steady_p99:.3} ms", total.steady.len(), total.steady.len() as f64 / steady_for.as_secs_f64());
        println!("storm:  {} requests, {:.0} rps, p50 {storm_p50:.3} ms, p99 {storm_p99:.3} ms", total.storm.len(), total.storm.len() as f64 / storm_for.as_secs_f64());
        println!("STORM failed+refused during the storm {} of {} (target 0); p99 storm / steady = {:.2} (target <= 5)", total.storm_failed + total.storm_refused, total.storm.len() as u64 + total.storm_failed + total.storm_refused, storm_p99 / steady_p99);
        runtime.shutdown().await.expect("stops");
        assert_eq!(total.failed + total.refused, 0, "failed or refused requests (first refusal: {:?})", total.first_refusal);
        assert!(!total.storm.is_empty(), "no request was served during the storm");
        assert_eq!(total.connections as u64, clients, "a reload closed a client's connection (each client opens one)");
    });
}
