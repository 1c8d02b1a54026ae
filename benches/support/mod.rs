//! Shared by the bench binaries: a no-op module type, config builders, a two-worker runtime,
//! and reading criterion's estimates back to print ratios against a baseline from the same run.
#![allow(dead_code)]

use std::path::PathBuf;

use futures::future::BoxFuture;
use swapvisor::config::ConfigErrors;
use swapvisor::extension::{Module, ModuleBuild, ModuleContext, ModuleError};
use swapvisor::{Config, Registry};
use tokio::time::Instant;

/// A module that does nothing: the unit of "N modules" in the reload benches.
pub(crate) struct Noop;

impl Module for Noop {
    fn start<'a>(&'a self, _context: &'a ModuleContext) -> BoxFuture<'a, Result<(), ModuleError>> {
        Box::pin(async { Ok(()) })
    }

    fn stop(&self, _deadline: Instant) -> BoxFuture<'_, Result<(), ModuleError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The built-in registry plus `bench.noop`.
pub(crate) fn registry() -> Registry {
    let mut registry = Registry::with_builtins();
    registry
        .contributing("bench", |r| {
            r.register_module("bench.noop", |_: &ModuleBuild<'_>| {
                Ok::<Box<dyn Module>, ConfigErrors>(Box::new(Noop))
            })
        })
        .expect("bench.noop is new");
    registry
}

/// `modules` no-op modules, a 3-step pipeline answering `version`, and `runtime` settings.
/// Every module's config names the version, so two versions differ in every module and a
/// reload between them rebuilds all of them.
pub(crate) fn config(modules: usize, version: &str, runtime: &str) -> Config {
    config_with(modules, |_| version, version, runtime)
}

/// Like [`config`], with module `i`'s config naming `module_version(i)`.
pub(crate) fn config_with<'a>(
    modules: usize,
    module_version: impl Fn(usize) -> &'a str,
    version: &str,
    runtime: &str,
) -> Config {
    let mut yaml = String::from("modules:\n");
    for i in 0..modules {
        let v = module_version(i);
        yaml.push_str(&format!(
            "  - {{ name: m{i}, type: bench.noop, config: {{ v: {v} }} }}\n"
        ));
    }
    if modules == 0 {
        yaml = String::from("modules: []\n");
    }
    yaml.push_str(&format!(
        r#"pipelines:
  hello:
    steps:
      - {{ name: greet, type: step.set, config: {{ values: {{ message: "hello {{{{ request.query.name }}}}" }} }} }}
      - {{ name: shape, type: step.set, config: {{ values: {{ text: "{{{{ greet.message }}}}", n: 1 }} }} }}
      - {{ name: respond, type: step.json_response, config: {{ status: 200, body: {{ message: "{{{{ shape.text }}}}", version: "{version}" }} }} }}
runtime: {{ {runtime} }}
"#
    ));
    Config::parse(yaml.as_bytes()).expect("bench config is valid")
}

/// A multi-thread tokio runtime with two workers, like the machine (`BENCH_WORKERS` overrides).
pub(crate) fn tokio_runtime() -> tokio::runtime::Runtime {
    let workers = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Criterion's mean estimate, in nanoseconds, for `group/bench`, from this run's output.
pub(crate) fn estimate_ns(group: &str, bench: &str) -> Option<f64> {
    estimate(group, bench, "mean")
}

/// Criterion's median estimate, in nanoseconds.
pub(crate) fn median_ns(group: &str, bench: &str) -> Option<f64> {
    estimate(group, bench, "median")
}

fn estimate(group: &str, bench: &str, statistic: &str) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    // Criterion keeps ids as directories, with '/' splitting function and parameter; in a
    // group's name it writes '/' as '_'.
    let path = dir
        .join("criterion")
        .join(group.replace('/', "_"))
        .join(bench)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json[statistic]["point_estimate"].as_f64()
}

/// Prints `numerator / denominator` of two benches of this run, with the target.
pub(crate) fn print_ratio(
    label: &str,
    group: &str,
    numerator: &str,
    denominator: &str,
    target: &str,
) {
    match (
        estimate_ns(group, numerator),
        estimate_ns(group, denominator),
    ) {
        (Some(n), Some(d)) => println!(
            "RATIO {label}: {n:.0} ns / {d:.0} ns = {:.3} (target {target})",
            n / d
        ),
        _ => println!(
            "RATIO {label}: no estimates found for {group}/{numerator} and {group}/{denominator}"
        ),
    }
}

/// This process's resident set size, in bytes.
pub(crate) fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A numeric knob from the environment, or `default`.
pub(crate) fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p`th percentile of latencies in microseconds, sorted, in milliseconds.
pub(crate) fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.saturating_sub(1).min(sorted.len() - 1)]) / 1000.0
}
