//! Fuzzes the config parser and validator: any bytes, as a file or an admin API body would
//! bring them. The properties: no panic, no hang, and an answer within the document limits
//! (the parser's own budget makes every input cheap to refuse).
//!
//! cargo +nightly fuzz run config fuzz/seeds/config -- -max_total_time=300

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use swapvisor::config::{Config, DocumentLimits, process_env};
use swapvisor::{Engine, Registry};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a runtime"))
}

/// The built-in types, without the two whose purpose is an outside effect during a build:
/// `fault.inject` (a build that hangs or panics on purpose) and the `process` plugin kind (a
/// build may run its executable to learn its step types).
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = Registry::with_builtins();
        registry.unregister("module", "fault.inject");
        registry.unregister("plugin", "process");
        registry
    })
}

fuzz_target!(|data: &[u8]| {
    // The strict parse and the full build (validation against the registry) both run on the
    // same bytes; building has no outside effects, so nothing is bound or spawned.
    let _ = Config::parse(data);
    let _ = runtime().block_on(Engine::build_from_source(
        data,
        &DocumentLimits::default(),
        registry(),
        &process_env,
    ));
});
