//! Process plugins against the in-process `counter`, in the same run.
//!
//! `cargo bench --bench process` prints:
//! - **call round trip**: `PluginRef::call("increment")` on the built-in `counter` (in-process)
//!   and on `swapvisor-counter-plugin` (the same `Plugin` served as a process), with one caller
//!   (median and p99 latency) and 16 concurrent callers (throughput), and the ratios;
//! - **code swap**: per-plugin reloads alternating two executables (spawn, handshake, state
//!   move, publish, old process shut down): median and p99;
//! - **swaps under load**: 100 code swaps while 4 callers increment; failed calls, and whether
//!   the final count equals the calls answered (each answered exactly once).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use swapvisor::config::PluginSpec;
use swapvisor::plugin::PluginRef;
use swapvisor::{Config, Registry, ReloadOutcome, Runtime};

const RUST_PLUGIN: &str = env!("CARGO_BIN_EXE_swapvisor-counter-plugin");

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn process_entry(name: &str, executable: &Path) -> String {
    format!(
        "{{ name: {name}, type: process, config: {{ command: [{:?}], callTimeout: 5s }} }}",
        executable.display()
    )
}

async fn start(plugins: &[String]) -> Runtime {
    let yaml = format!(
        "plugins:\n{}\npipelines: {{ p: {{ steps: [{{ name: s, type: step.set, config: {{ values: {{}} }} }}] }} }}\n",
        plugins
            .iter()
            .map(|p| format!("  - {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Runtime::start(
        Config::parse(yaml.as_bytes()).unwrap(),
        Registry::with_builtins(),
    )
    .await
    .unwrap()
}

/// One caller: the latency of each of `calls` calls, sorted.
async fn latencies(plugin: &PluginRef, calls: usize) -> Vec<Duration> {
    let mut taken = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        plugin.call("increment", Value::Null).await.unwrap();
        taken.push(started.elapsed());
    }
    taken.sort();
    taken
}

/// `callers` concurrent callers for `period`: calls per second.
async fn throughput(plugin: &PluginRef, callers: usize, period: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (plugin, stop) = (plugin.clone(), stop.clone());
            tokio::spawn(async move {
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    plugin.call("increment", Value::Null).await.unwrap();
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    tokio::time::sleep(period).await;
    stop.store(true, Ordering::Relaxed);
    let mut calls = 0;
    for task in tasks {
        calls += task.await.unwrap();
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

async fn round_trips() {
    let runtime = start(&[
        "{ name: inproc, type: counter }".to_owned(),
        process_entry("proc", Path::new(RUST_PLUGIN)),
    ])
    .await;
    let inproc = runtime.plugin("inproc").unwrap();
    let proc = runtime.plugin("proc").unwrap();
    // Warm both up.
    latencies(&inproc, 2_000).await;
    latencies(&proc, 2_000).await;
    let (a, b) = (
        latencies(&inproc, 20_000).await,
        latencies(&proc, 20_000).await,
    );
    println!("call round trip, 1 caller (20,000 calls each):");
    for (name, taken) in [("in-process counter", &a), ("process plugin", &b)] {
        println!(
            "  {name:<20} median {:>7.1} µs   p99 {:>7.1} µs",
            micros(percentile(taken, 0.5)),
            micros(percentile(taken, 0.99))
        );
    }
    println!(
        "RATIO process / in-process median latency, 1 caller: {:.1}",
        micros(percentile(&b, 0.5)) / micros(percentile(&a, 0.5))
    );
    let period = Duration::from_secs(3);
    let a = throughput(&inproc, 16, period).await;
    let b = throughput(&proc, 16, period).await;
    println!("call throughput, 16 concurrent callers ({period:?} each):");
    println!("  in-process counter   {a:>10.0} calls/s");
    println!("  process plugin       {b:>10.0} calls/s   (first target: >= 50,000)");
    println!(
        "RATIO process / in-process throughput, 16 callers: {:.2}",
        b / a
    );
    runtime.shutdown().await.unwrap();
}

/// Two executables with different content (the second is the first with bytes appended,
/// which an ELF loader ignores), so each swap changes the code hash.
fn two_executables(folder: &Path) -> [std::path::PathBuf; 2] {
    use std::os::unix::fs::PermissionsExt;
    let original = std::fs::read(RUST_PLUGIN).unwrap();
    let mut other = original.clone();
    other.extend_from_slice(b"\nanother build\n");
    let paths = [folder.join("counter-a"), folder.join("counter-b")];
    for (path, content) in paths.iter().zip([original, other]) {
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    paths
}

fn spec(executable: &Path) -> PluginSpec {
    PluginSpec::parse(process_entry("proc", executable).as_bytes()).unwrap()
}

async fn swap(plugin: &PluginRef, executable: &Path) -> Duration {
    let started = Instant::now();
    let record = plugin.reload(spec(executable)).await.unwrap();
    let taken = started.elapsed();
    assert!(
        matches!(record.outcome, ReloadOutcome::Activated { .. }),
        "{:?}",
        record.outcome
    );
    taken
}

async fn code_swaps() {
    let folder = tempfile::tempdir().unwrap();
    let executables = two_executables(folder.path());
    let runtime = start(&[process_entry("proc", &executables[0])]).await;
    let plugin = runtime.plugin("proc").unwrap();
    plugin.call("increment", json!({"by": 41})).await.unwrap();
    // Warm up: both executables in the store, both hashed.
    for executable in &executables {
        swap(&plugin, executable).await;
    }
    let mut taken = Vec::new();
    for i in 0..100 {
        taken.push(swap(&plugin, &executables[i % 2]).await);
    }
    taken.sort();
    let count = plugin.call("get", Value::Null).await.unwrap()["count"].clone();
    assert_eq!(count, json!(41), "the state moved through every swap");
    println!("code swap latency (100 swaps, Rust plugin, state moved):");
    println!(
        "  median {:>6.2} ms   p99 {:>6.2} ms   (first target: median < 20 ms)",
        micros(percentile(&taken, 0.5)) / 1000.0,
        micros(percentile(&taken, 0.99)) / 1000.0
    );

    // 100 swaps under 4 callers.
    let before = plugin.call("get", Value::Null).await.unwrap()["count"]
        .as_u64()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (plugin, stop) = (plugin.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut answered, mut failed) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    match plugin.call("increment", Value::Null).await {
                        Ok(_) => answered += 1,
                        Err(_) => failed += 1,
                    }
                }
                (answered, failed)
            })
        })
        .collect();
    for i in 0..100 {
        swap(&plugin, &executables[i % 2]).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut answered, mut failed) = (0, 0);
    for caller in callers {
        let (a, f) = caller.await.unwrap();
        answered += a;
        failed += f;
    }
    let after = plugin.call("get", Value::Null).await.unwrap()["count"]
        .as_u64()
        .unwrap();
    println!("100 code swaps under 4 concurrent callers:");
    println!(
        "  calls answered {answered}, failed {failed}; count grew by {} (exactly once: {})",
        after - before,
        after - before == answered
    );
    runtime.shutdown().await.unwrap();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        round_trips().await;
        code_swaps().await;
    });
}
