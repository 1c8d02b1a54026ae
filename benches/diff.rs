//! What a reload costs when it changes little: one module of 1,000, against a full rebuild.
//!
//! `cargo bench --bench diff` reloads a runtime of 1,000 no-op modules between two configs
//! (parsed beforehand: the figure is the reload, without the parse), in start-first mode, and
//! measures until the old engine has retired (drained and stopped), so that everything a reload
//! does is on the clock:
//! - `diff reload/one module changed`: the two configs differ in module `m0` only, so the reload
//!   carries the other 999 over;
//! - `diff reload/every module changed`: the two configs differ in every module, so the reload
//!   builds, starts and stops all 1,000 (what every reload cost before diff reload).
//!
//! It ends with the `RATIO` of the two (target <= 0.05).

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use swapvisor::engine::EngineSpec;
use swapvisor::{Config, ReloadRequest, Runtime};
use tokio::time::Instant;

const MODULES: usize = 1_000;
const GROUP: &str = "diff reload";
const SETTINGS: &str = "reload: { mode: start-first, drainTimeout: 1s }";

/// Two configs of 1,000 modules; `m0` differs always, the others only when `every`.
fn pair(every: bool) -> [Arc<Config>; 2] {
    ["a", "b"].map(|version| {
        let module_version = |i: usize| if every || i == 0 { version } else { "same" };
        Arc::new(support::config_with(
            MODULES,
            module_version,
            version,
            SETTINGS,
        ))
    })
}

/// One reload, timed until the old engine has retired.
async fn reload(runtime: &Runtime, next: &Arc<Config>) -> Duration {
    let retired = runtime.observe().retirements().retired;
    let began = Instant::now();
    let request = ReloadRequest::new(EngineSpec::Config(next.clone()));
    let record = runtime.reload(request).await.expect("answers");
    assert!(record.outcome.is_activated(), "{:?}", record.outcome);
    while runtime.observe().retirements().retired == retired {
        tokio::task::yield_now().await;
    }
    began.elapsed()
}

fn diff_reload(c: &mut Criterion) {
    let rt = support::tokio_runtime();
    let registry = support::registry();
    let mut group = c.benchmark_group(GROUP);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, every) in [
        ("one module changed", false),
        ("every module changed", true),
    ] {
        let configs = pair(every);
        let runtime = rt
            .block_on(Runtime::start((*configs[0]).clone(), registry.clone()))
            .expect("starts");
        let mut flip = 0usize;
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        flip += 1;
                        total += reload(&runtime, &configs[flip % 2]).await;
                    }
                    total
                })
            })
        });
        rt.block_on(runtime.shutdown()).expect("stops");
    }
    group.finish();
}

fn report(_c: &mut Criterion) {
    support::print_ratio(
        "reload changing 1 module of 1000 / full rebuild of 1000",
        GROUP,
        "one module changed",
        "every module changed",
        "<= 0.05",
    );
}

criterion_group!(benches, diff_reload, report);
criterion_main!(benches);
