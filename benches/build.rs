//! How long a config takes to parse, validate and build, against its size.
//!
//! `cargo bench --bench build` prints, for 10, 100 and 1,000 modules (each depending on the
//! one before, so the dependency sort does real work) plus one routed pipeline per module:
//! - `parse`: bytes to a typed config, with every structural check;
//! - `build`: parse, then validate against the registry and construct every module, step and
//!   trigger (what `swapvisor validate` and try-activate do). Nothing is bound or started.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use swapvisor::config::{DocumentLimits, process_env};
use swapvisor::{Config, Engine, Registry};

/// A config with `modules` modules in a dependency chain, one http.server, and one routed
/// pipeline per module.
pub fn config_with_modules(modules: usize) -> String {
    let mut yaml = String::from(
        "modules:\n  - { name: web, type: http.server, config: { address: \"127.0.0.1:0\" } }\n",
    );
    for i in 0..modules {
        let depends = if i == 0 {
            "web".to_owned()
        } else {
            format!("m{}", i - 1)
        };
        yaml.push_str(&format!(
            "  - {{ name: m{i}, type: fault.inject, config: {{ failOn: stop }}, dependsOn: [{depends}] }}\n"
        ));
    }
    yaml.push_str("pipelines:\n");
    for i in 0..modules {
        yaml.push_str(&format!(
            "  p{i}:\n    trigger: {{ type: http, config: {{ server: web, path: /p{i} }} }}\n    steps:\n      - {{ name: s, type: step.set, config: {{ values: {{ n: \"{{{{ request.query.n }}}}\" }} }} }}\n      - {{ name: r, type: step.json_response, config: {{ body: {{ n: \"{{{{ s.n }}}}\" }} }} }}\n"
        ));
    }
    yaml
}

fn build(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let registry = Registry::with_builtins();
    let limits = DocumentLimits::default();
    let mut group = c.benchmark_group("config");
    group.sample_size(20);
    for size in [10, 100, 1_000] {
        let source = config_with_modules(size);
        group.bench_with_input(BenchmarkId::new("parse", size), &source, |b, source| {
            b.iter(|| Config::parse(black_box(source.as_bytes())).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("build", size), &source, |b, source| {
            b.to_async(&runtime).iter(|| async {
                Engine::build_from_source(source.as_bytes(), &limits, &registry, &process_env)
                    .await
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, build);
criterion_main!(benches);
