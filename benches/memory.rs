//! Bytes per idle plugin instance at 10,000 instances, against one bare ractor actor.
//!
//! `cargo bench --bench memory` prints the figures. Each instance is a counter plugin with its
//! own supervised actor, slot and (hibernating) swap Supervisor, idle after one call. The
//! baseline, measured first in the same run, is 10,000 bare ractor actors, each idle after
//! one message: the least a plugin with an actor of its own can cost here. Two measures of
//! each: live heap bytes (a counting allocator, exact) and RSS growth (what the OS sees,
//! allocator overhead included).

#[path = "support/counting.rs"]
mod counting;
#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::Value;
use swapvisor::{Config, Runtime};

const PLUGINS: usize = 10_000;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// What memory looks like at one moment.
#[derive(Clone, Copy)]
struct Usage {
    heap: usize,
    rss: u64,
}

impl Usage {
    fn now() -> Self {
        Usage {
            heap: counting::live_bytes(),
            rss: support::rss_bytes(),
        }
    }

    /// Bytes per item grown since `before`: (heap, RSS).
    fn per_item_since(self, before: Usage, items: usize) -> (f64, f64) {
        let heap = self.heap.saturating_sub(before.heap) as f64 / items as f64;
        let rss = self.rss.saturating_sub(before.rss) as f64 / items as f64;
        (heap, rss)
    }
}

/// An actor that does nothing: the baseline.
struct Idle;

impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

fn config(plugins: usize) -> Config {
    let mut yaml = String::from("plugins:\n");
    for i in 0..plugins {
        yaml.push_str(&format!("  - {{ name: p{i}, type: counter }}\n"));
    }
    yaml.push_str("pipelines: {}\n");
    Config::parse(yaml.as_bytes()).expect("valid")
}

fn kib(bytes: f64) -> f64 {
    bytes / 1024.0
}

fn main() {
    // `cargo bench` passes --bench; this binary takes no arguments of its own.
    let runtime = support::tokio_runtime();
    runtime.block_on(async {
        // Warm up the allocator and the actor system with a runtime that has no plugins.
        let empty = config(0);
        let full = config(PLUGINS);
        let warm = Runtime::start(empty.clone(), support::registry())
            .await
            .expect("starts");
        warm.shutdown().await.expect("stops");

        let before = Usage::now();
        let mut actors = Vec::with_capacity(PLUGINS);
        for _ in 0..PLUGINS {
            let (actor, _) = Actor::spawn(None, Idle, ()).await.expect("spawns");
            actor.send_message(()).expect("delivered");
            actors.push(actor);
        }
        // Let every actor handle its message and go idle.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (actor_heap, actor_rss) = Usage::now().per_item_since(before, PLUGINS);
        for actor in &actors {
            actor.stop(None);
        }
        drop(actors);
        tokio::time::sleep(Duration::from_millis(200)).await;

        let baseline = Runtime::start(empty, support::registry())
            .await
            .expect("starts");
        let before = Usage::now();
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
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (plugin_heap, plugin_rss) = Usage::now().per_item_since(before, PLUGINS);
        let status = baseline.status().await.expect("status");
        let running = status
            .plugins
            .iter()
            .filter(|p| p.state == swapvisor::plugin::PluginState::Running)
            .count();
        println!("plugins running: {running}");
        println!("started {PLUGINS} plugins in {:.2} s", took.as_secs_f64());
        println!(
            "one bare ractor actor, idle: heap {:.1} KiB, RSS {:.1} KiB",
            kib(actor_heap),
            kib(actor_rss)
        );
        println!(
            "MEMORY bytes per idle plugin instance: {plugin_rss:.0} RSS ({:.1} KiB), heap {plugin_heap:.0} ({:.1} KiB); target <= 8 KiB",
            kib(plugin_rss),
            kib(plugin_heap)
        );
        println!(
            "RATIO idle plugin / bare actor: heap {:.2}, RSS {:.2}",
            plugin_heap / actor_heap,
            plugin_rss / actor_rss
        );
        baseline.shutdown().await.expect("stops");
    });
}
