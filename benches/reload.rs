//! How long reloads take, against a baseline of the same work without actors.
//!
//! `cargo bench --bench reload` measures, for 10, 100 and 1,000 no-op modules, start-first
//! and stop-first, two moments of a reload, each against the same work done directly with no
//! actors:
//! - `reload <mode>/serving/runtime/N`: from `Runtime::reload` to its answer, when the new
//!   config serves; `.../serving/direct/N`: build + start (start-first) or stop + build +
//!   start (stop-first), the old engine's stop left out of the clock in start-first mode;
//! - `reload <mode>/retired/runtime/N`: until the old engine has also drained and stopped (in
//!   start-first mode that happens after the answer; the clock stops when
//!   `Runtime::retirements` counts the retirement, read in a loop); `.../retired/direct/N`:
//!   build + start + stop;
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

/// One direct swap to `next`, with no actors: returns how long until the new engine served,
/// and until the old one had stopped too.
async fn direct_swap(
    current: &mut Engine,
    next: &Arc<Config>,
    registry: &swapvisor::Registry,
    stop_first: bool,
) -> (Duration, Duration) {
    let began = Instant::now();
    let deadline = began + Duration::from_secs(5);
    if stop_first {
        current.stop(deadline).await.expect("stops");
    }
    let built = Engine::build_with(next.clone(), registry, &process_env)
        .await
        .expect("builds");
    built.start().await.expect("starts");
    let serving = began.elapsed();
    if !stop_first {
        current.stop(deadline).await.expect("stops");
    }
    *current = built;
    (serving, began.elapsed())
}

/// One reload through the runtime: returns how long until it answered (the new config
/// serves), and until status counted the old engine's retirement.
async fn runtime_swap(runtime: &Runtime, next: &Arc<Config>) -> (Duration, Duration) {
    let retired = runtime.observe().retirements().retired;
    let began = Instant::now();
    let request = ReloadRequest::new(EngineSpec::Config(next.clone()));
    let record = runtime.reload(request).await.expect("answers");
    let serving = began.elapsed();
    assert!(record.outcome.is_activated(), "{:?}", record.outcome);
    while runtime.observe().retirements().retired == retired {
        tokio::task::yield_now().await;
    }
    (serving, began.elapsed())
}

/// Which of the two moments a measurement keeps.
#[derive(Clone, Copy)]
enum Moment {
    Serving,
    Retired,
}

impl Moment {
    fn name(self) -> &'static str {
        match self {
            Moment::Serving => "serving",
            Moment::Retired => "retired",
        }
    }

    fn of(self, (serving, retired): (Duration, Duration)) -> Duration {
        match self {
            Moment::Serving => serving,
            Moment::Retired => retired,
        }
    }
}

fn reload(c: &mut Criterion) {
    let rt = support::tokio_runtime();
    let registry = support::registry();
    for mode in ["start-first", "stop-first"] {
        let stop_first = mode == "stop-first";
        for moment in [Moment::Serving, Moment::Retired] {
            let mut group = c.benchmark_group(format!("reload {mode}/{}", moment.name()));
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
                    b.iter_custom(|iterations| {
                        rt.block_on(async {
                            let mut total = Duration::ZERO;
                            for _ in 0..iterations {
                                flip += 1;
                                let taken = runtime_swap(&runtime, &configs[flip % 2]).await;
                                total += moment.of(taken);
                            }
                            total
                        })
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
                group.bench_with_input(BenchmarkId::new("direct", modules), &modules, |b, _| {
                    b.iter_custom(|iterations| {
                        rt.block_on(async {
                            let mut total = Duration::ZERO;
                            for _ in 0..iterations {
                                flip += 1;
                                let next = &configs[flip % 2];
                                let taken =
                                    direct_swap(&mut current, next, &registry, stop_first).await;
                                total += moment.of(taken);
                            }
                            total
                        })
                    })
                });
                rt.block_on(current.stop_now()).expect("stops");
            }
            group.finish();
        }
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
        for moment in ["serving", "retired"] {
            let group = format!("reload {mode}/{moment}");
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
