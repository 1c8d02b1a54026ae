//! How long reloads take, against a baseline of the same work without actors.
//!
//! `cargo bench --bench reload` measures, for 10, 100 and 1,000 no-op modules:
//! - `reload <mode>/runtime/N`: `Runtime::reload` between two configs (build in a Candidate,
//!   swap in the Active, drain and stop the old engine), start-first and stop-first;
//! - `reload <mode>/direct/N`: the same build + start + stop of the same engines, called
//!   directly with no actors: the protocol's baseline;
//! - `try-activate/runtime/N`: build and tear down through the Supervisor;
//! - `plugin reload/counter`: reloading one counter plugin, with its state migrated.
//!
//! It ends with `RATIO` lines (protocol overhead = runtime / direct, target <= 1.3) and the
//! plugin reload median (target < 500 us).

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use swapvisor::config::{PluginSpec, process_env};
use swapvisor::engine::EngineSpec;
use swapvisor::{Config, Engine, ReloadOutcome, ReloadRequest, Runtime};
use tokio::time::Instant;

const SIZES: [usize; 3] = [10, 100, 1_000];

fn pair(modules: usize, mode: &str) -> [Arc<Config>; 2] {
    let runtime = format!("reload: {{ mode: {mode}, drainTimeout: 1s }}");
    [
        Arc::new(support::config(modules, "a", &runtime)),
        Arc::new(support::config(modules, "b", &runtime)),
    ]
}

async fn direct_swap(
    current: &mut Engine,
    next: &Arc<Config>,
    registry: &swapvisor::Registry,
    stop_first: bool,
) {
    let built = Engine::build_with(next.clone(), registry, &process_env)
        .await
        .expect("builds");
    let deadline = Instant::now() + Duration::from_secs(5);
    if stop_first {
        current.stop(deadline).await.expect("stops");
        built.start().await.expect("starts");
    } else {
        built.start().await.expect("starts");
        current.stop(deadline).await.expect("stops");
    }
    *current = built;
}

fn reload(c: &mut Criterion) {
    let rt = support::tokio_runtime();
    let registry = support::registry();
    for mode in ["start-first", "stop-first"] {
        let mut group = c.benchmark_group(format!("reload {mode}"));
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for modules in SIZES {
            let configs = pair(modules, mode);
            let runtime = rt
                .block_on(Runtime::start((*configs[0]).clone(), registry.clone()))
                .expect("starts");
            let mut flip = 0usize;
            group.bench_with_input(BenchmarkId::new("runtime", modules), &modules, |b, _| {
                b.to_async(&rt).iter(|| {
                    flip += 1;
                    let request = ReloadRequest::new(EngineSpec::Config(configs[flip % 2].clone()));
                    let runtime = &runtime;
                    async move {
                        let record = runtime.reload(request).await.expect("answers");
                        assert!(record.outcome.is_activated(), "{:?}", record.outcome);
                    }
                })
            });
            rt.block_on(runtime.shutdown()).expect("stops");

            let mut current = rt.block_on(async {
                let engine = Engine::build_with(configs[0].clone(), &registry, &process_env)
                    .await
                    .expect("builds");
                engine.start().await.expect("starts");
                engine
            });
            let stop_first = mode == "stop-first";
            group.bench_with_input(BenchmarkId::new("direct", modules), &modules, |b, _| {
                b.iter(|| {
                    flip += 1;
                    rt.block_on(direct_swap(
                        &mut current,
                        &configs[flip % 2],
                        &registry,
                        stop_first,
                    ));
                })
            });
            rt.block_on(current.stop_now()).expect("stops");
        }
        group.finish();
    }

    let mut group = c.benchmark_group("try-activate");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for modules in SIZES {
        let configs = pair(modules, "start-first");
        let runtime = rt
            .block_on(Runtime::start((*configs[0]).clone(), registry.clone()))
            .expect("starts");
        group.bench_with_input(BenchmarkId::new("runtime", modules), &modules, |b, _| {
            b.to_async(&rt).iter(|| async {
                let result = runtime
                    .try_activate(EngineSpec::Config(configs[1].clone()))
                    .await
                    .expect("answers");
                assert!(result.is_ok());
            })
        });
        group.bench_with_input(
            BenchmarkId::new("direct build", modules),
            &modules,
            |b, _| {
                b.to_async(&rt).iter(|| async {
                    Engine::build_with(configs[1].clone(), &registry, &process_env)
                        .await
                        .expect("builds")
                })
            },
        );
        rt.block_on(runtime.shutdown()).expect("stops");
    }
    group.finish();

    let mut group = c.benchmark_group("plugin reload");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let yaml = "plugins: [{ name: hits, type: counter }]\npipelines: {}\n";
    let runtime = rt
        .block_on(Runtime::start(
            Config::parse(yaml.as_bytes()).expect("valid"),
            registry.clone(),
        ))
        .expect("starts");
    rt.block_on(async {
        runtime
            .plugin("hits")
            .expect("runs")
            .call("increment", serde_json::json!({"by": 41}))
            .await
            .expect("answers")
    });
    let specs = [0, 1].map(|start| {
        PluginSpec::parse(
            format!("{{ name: hits, type: counter, config: {{ start: {start} }} }}").as_bytes(),
        )
        .expect("valid")
    });
    let mut flip = 0usize;
    group.bench_function("counter with state", |b| {
        b.to_async(&rt).iter(|| {
            flip += 1;
            let spec = specs[flip % 2].clone();
            let runtime = &runtime;
            async move {
                let outcome = runtime
                    .plugin("hits")
                    .expect("the plugin runs")
                    .reload(spec)
                    .await
                    .expect("answers")
                    .outcome;
                assert!(
                    matches!(outcome, ReloadOutcome::Activated { .. }),
                    "{outcome:?}"
                );
            }
        })
    });
    let count = rt.block_on(async {
        runtime
            .plugin("hits")
            .expect("runs")
            .call("get", serde_json::Value::Null)
            .await
            .expect("answers")
    });
    assert_eq!(count["count"], 41, "the state survived every reload");
    rt.block_on(runtime.shutdown()).expect("stops");
    group.finish();
}

fn report(_c: &mut Criterion) {
    for mode in ["start-first", "stop-first"] {
        let group = format!("reload {mode}");
        for modules in SIZES {
            support::print_ratio(
                &format!("{group}, {modules} modules: protocol overhead (runtime / direct)"),
                &group,
                &format!("runtime/{modules}"),
                &format!("direct/{modules}"),
                "<= 1.3",
            );
        }
        if let Some(ns) = support::estimate_ns(&group, "runtime/1000") {
            println!(
                "FIGURE {group}: reload of 1000 modules {:.2} ms (target < 50 ms)",
                ns / 1e6
            );
        }
    }
    for modules in SIZES {
        support::print_ratio(
            &format!("try-activate, {modules} modules: runtime / direct build"),
            "try-activate",
            &format!("runtime/{modules}"),
            &format!("direct build/{modules}"),
            "for information",
        );
    }
    if let Some(ns) = support::median_ns("plugin reload", "counter with state") {
        println!(
            "FIGURE plugin reload with state: median {:.0} us (target < 500 us)",
            ns / 1e3
        );
    }
}

criterion_group!(benches, reload, report);
criterion_main!(benches);
