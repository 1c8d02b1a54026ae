//! The fuzzer's inputs replayed on every run: each parses or is refused with a message, and
//! builds or is refused with a message, within a second. Its own test binary, apart from
//! `hostile.rs`, whose memory readings are of the whole process: building three thousand
//! configs beside them moved the alias bomb's reading from about 23 MiB past its 32 MiB bound.

use std::time::{Duration, Instant};

use swapvisor::config::{Config, DocumentLimits, process_env};
use swapvisor::{Engine, Registry};

/// The fuzz target's registry: the built-ins without `fault.inject` and the `process` plugin
/// kind, whose purpose is an outside effect during a build.
fn fuzz_registry() -> Registry {
    let mut registry = Registry::with_builtins();
    registry.unregister("module", "fault.inject");
    registry.unregister("plugin", "process");
    registry
}

/// How many inputs each folder of `fuzz/seeds` holds in git.
const COMMITTED_FUZZ_INPUTS: [(&str, usize); 3] =
    [("config", 7), ("corpus", 2999), ("regressions", 2)];

/// Replays what the fuzzer keeps: the seeds (`fuzz/seeds/config`), the minimized corpus of the
/// latest long run (`fuzz/seeds/corpus`) and the inputs it found (`fuzz/seeds/regressions`),
/// through the fuzz target's two steps. Each input parses or is refused with a message, and
/// builds or is refused with a message, each within a second: never a panic, a hang or an
/// empty error.
#[tokio::test]
async fn the_fuzz_corpus_parses_or_is_refused_with_a_message() {
    let registry = fuzz_registry();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    for (folder, committed) in COMMITTED_FUZZ_INPUTS {
        let entries = std::fs::read_dir(root.join(folder))
            .unwrap_or_else(|e| panic!("{}: {e}", root.join(folder).display()));
        let mut replayed = 0;
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            let input = std::fs::read(&path).unwrap();
            let started = Instant::now();
            if let Err(error) = Config::parse(&input) {
                assert!(!error.to_string().is_empty(), "{}", path.display());
            }
            let built = Engine::build_from_source(
                &input,
                &DocumentLimits::default(),
                &registry,
                &process_env,
            )
            .await;
            if let Err(error) = built {
                assert!(!error.to_string().is_empty(), "{}", path.display());
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{} took {:?}",
                path.display(),
                started.elapsed()
            );
            replayed += 1;
        }
        assert_eq!(
            replayed, committed,
            "fuzz/seeds/{folder} holds {replayed} inputs, {committed} are committed: a missing \
             input is lost coverage; after adding some, raise COMMITTED_FUZZ_INPUTS"
        );
    }
}
