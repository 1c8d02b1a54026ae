//! Bytes per idle plugin instance at 10,000 instances: RSS before and after starting them.
//!
//! `cargo bench --bench memory` prints the figure. Each instance is a counter plugin with its
//! own supervised actor, slot and swap Supervisor, idle after one call.

#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use serde_json::Value;
use swapvisor::{Config, Runtime};

const PLUGINS: usize = 10_000;

fn config(plugins: usize) -> Config {
    let mut yaml = String::from("plugins:\n");
    for i in 0..plugins {
        yaml.push_str(&format!("  - {{ name: p{i}, type: counter }}\n"));
    }
    yaml.push_str("pipelines: {}\n");
    Config::parse(yaml.as_bytes()).expect("valid")
}

fn main() {
    // `cargo bench` passes --bench; this binary takes no arguments of its own.
    let runtime = support::tokio_runtime();
    runtime.block_on(async {
        let empty = config(0);
        let full = config(PLUGINS);
        // Warm up the allocator and the actor system with a runtime that has no plugins.
        let warm = Runtime::start(empty.clone(), support::registry())
            .await
            .expect("starts");
        warm.shutdown().await.expect("stops");
        let baseline = Runtime::start(empty, support::registry())
            .await
            .expect("starts");
        let before = support::rss_bytes();
        let started = Instant::now();
        baseline.reload(full).await.expect("reload");
        let took = started.elapsed();
        // One call each, so every actor has handled a message and is idle.
        for i in 0..PLUGINS {
            baseline
                .plugin(&format!("p{i}"))
                .expect("runs")
                .call("get", Value::Null)
                .await
                .expect("answers");
        }
        let after = support::rss_bytes();
        let status = baseline.status().await.expect("status");
        let running = status
            .plugins
            .iter()
            .filter(|p| p.state == swapvisor::plugin::PluginState::Running)
            .count();
        let per_plugin = (after.saturating_sub(before)) as f64 / PLUGINS as f64;
        println!("plugins running: {running}");
        println!("started {PLUGINS} plugins in {:.2} s", took.as_secs_f64());
        println!(
            "RSS before: {:.1} MiB, after: {:.1} MiB",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0
        );
        println!(
            "MEMORY bytes per idle plugin instance: {per_plugin:.0} ({:.1} KiB; target <= 16 KiB)",
            per_plugin / 1024.0
        );
        baseline.shutdown().await.expect("stops");
    });
}
