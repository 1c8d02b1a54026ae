//! Ordinary requests while thousands of slow connections are held open against the same
//! listener: the attack of issue 16, measured.
//!
//! `cargo bench --bench slow_connections` serves the templated pipeline in-process and runs
//! the same keep-alive load three times in one run: without slow connections, with
//! SLOW_CONNECTIONS connections that each sent half a request head and then nothing, and
//! without them again. It prints p50/p99 of each phase and the p99 ratio of the middle phase
//! against the two others together (target: at most 1.5). The clients never retry; a
//! request that fails or goes unanswered is counted, and any stops the bench.
//!
//! Knobs (environment): SLOW_CONNECTIONS (5000), SLOW_CLIENTS (8), SLOW_PHASE_SECS (4), and
//! SLOW_MAX_CONNECTIONS (the listener's `maxConnections`; unset: the default, the process
//! budget): below SLOW_CONNECTIONS, the listener is at its cap and each new client connection
//! evicts a slow one.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use swapvisor::extension::DescriptorBudget;
use swapvisor::{Config, Runtime};
use tokio::io::AsyncWriteExt;

fn config(max_connections: Option<u64>) -> Config {
    let cap = max_connections.map_or(String::new(), |n| format!(", maxConnections: {n}"));
    let yaml = format!(
        r#"
modules:
  - {{ name: web, type: http.server, config: {{ address: "127.0.0.1:0"{cap} }} }}
pipelines:
  hello:
    trigger: {{ type: http, config: {{ server: web, path: /hello }} }}
    steps:
      - {{ name: greet, type: step.set, config: {{ values: {{ message: "hello {{{{ request.query.name }}}}" }} }} }}
      - {{ name: respond, type: step.json_response, config: {{ body: {{ message: "{{{{ greet.message }}}}" }} }} }}
"#
    );
    Config::parse(yaml.as_bytes()).expect("valid")
}

/// Latencies in microseconds of `clients` keep-alive clients for `length`.
async fn load(url: &hyper::Uri, clients: u64, length: Duration) -> Vec<u32> {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(1)
                    .retry_canceled_requests(false)
                    .build_http::<Empty<Bytes>>();
                let mut latencies = Vec::new();
                let until = Instant::now() + length;
                while Instant::now() < until {
                    let started = Instant::now();
                    let response =
                        tokio::time::timeout(Duration::from_secs(5), client.get(url.clone()))
                            .await
                            .expect("answered within 5 s")
                            .expect("answered");
                    assert!(response.status().is_success(), "{}", response.status());
                    response.into_body().collect().await.expect("a body");
                    latencies.push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client"));
    }
    all.sort_unstable();
    all
}

fn report(phase: &str, latencies: &[u32], length: Duration) {
    println!(
        "{phase:<34} {:>8} requests {:>7.0} rps  p50 {:.3} ms  p99 {:.3} ms",
        latencies.len(),
        latencies.len() as f64 / length.as_secs_f64(),
        support::percentile_ms(latencies, 50.0),
        support::percentile_ms(latencies, 99.0)
    );
}

fn main() {
    // This process holds both ends of every connection.
    DescriptorBudget::raise_open_file_limit().expect("the open-file limit can be raised");
    let slow = support::knob("SLOW_CONNECTIONS", 5000) as usize;
    let clients = support::knob("SLOW_CLIENTS", 8);
    let length = Duration::from_secs(support::knob("SLOW_PHASE_SECS", 4));
    let rt = support::tokio_runtime();
    rt.block_on(async move {
        let cap = std::env::var("SLOW_MAX_CONNECTIONS").ok().and_then(|v| v.parse().ok());
        let runtime = Runtime::start(config(cap), support::registry())
            .await
            .expect("starts");
        let address = runtime.status().await.unwrap().listening()[0].1.clone();
        let url: hyper::Uri = format!("http://{address}/hello?name=ada").parse().expect("uri");

        let before = load(&url, clients, length).await;
        let mut held = Vec::with_capacity(slow);
        for _ in 0..slow {
            let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connects");
            stream
                .write_all(b"GET /hello HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
                .await
                .expect("writes");
            held.push(stream);
        }
        // Wait until the server holds them all, so the load meets them.
        let budget = DescriptorBudget::global();
        let settle = Instant::now();
        let expected = cap.map_or(slow, |cap| slow.min(cap as usize));
        while budget.in_use() < expected && settle.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let holding = budget.in_use();
        let during = load(&url, clients, length).await;
        let still = budget.in_use();
        drop(held);
        let after = load(&url, clients, length).await;

        println!(
            "slow connections: {clients} keep-alive clients, {} s per phase, {slow} slow connections (server held {holding} when the load began, {still} when it ended; cap {})",
            length.as_secs(),
            cap.map_or(budget.connections(), |c| c as usize)
        );
        report("without slow connections (before)", &before, length);
        report("with slow connections", &during, length);
        report("without slow connections (after)", &after, length);
        let mut baseline = before;
        baseline.extend(after);
        baseline.sort_unstable();
        let ratio = support::percentile_ms(&during, 99.0) / support::percentile_ms(&baseline, 99.0);
        println!(
            "p99 with ÷ without: {ratio:.2} (target <= 1.5); p50 ratio {:.2}",
            support::percentile_ms(&during, 50.0) / support::percentile_ms(&baseline, 50.0)
        );
        runtime.shutdown().await.ok();
    });
}
