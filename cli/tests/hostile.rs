//! Hostile documents: each is refused with a clear error within a second, and parsing it
//! allocates a bounded amount of memory. One test, so that nothing else in this process moves
//! the memory readings.

use std::time::{Duration, Instant};

use swapvisor::config::{Config, DocumentLimits, LoadError, process_env, read_file};
use swapvisor::{Engine, Registry};

/// Peak resident memory since the last reset, in bytes (Linux `VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn current_rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// Makes `peak_rss` start again from the current resident size. False only where the kernel
/// does not allow it and `SWAPVISOR_SKIP_MEMORY_CHECKS` is set: the memory bounds are then
/// reported as skipped, loudly. Without that variable a kernel that does not allow it fails
/// the test, so that the bounds are never passed without being measured.
fn reset_peak() -> bool {
    if std::fs::write("/proc/self/clear_refs", "5").is_ok() {
        return true;
    }
    let skip = std::env::var_os("SWAPVISOR_SKIP_MEMORY_CHECKS").is_some();
    assert!(
        skip,
        "cannot reset the peak resident size (/proc/self/clear_refs is not writable), so the \
         memory bounds cannot be measured; set SWAPVISOR_SKIP_MEMORY_CHECKS=1 to run without them"
    );
    eprintln!("MEMORY CHECKS SKIPPED: /proc/self/clear_refs is not writable");
    false
}

/// Parses `input`, and returns the error with how long it took and how much memory the parse
/// itself needed at its peak.
fn refuse(name: &str, input: &[u8]) -> (String, Duration, u64) {
    let measurable = reset_peak();
    let before = current_rss();
    let started = Instant::now();
    let result = Config::parse(input);
    let took = started.elapsed();
    let grew = if measurable {
        peak_rss().saturating_sub(before)
    } else {
        0
    };
    let error = match result {
        Ok(_) => panic!("{name}: a hostile document was accepted"),
        Err(error) => error.to_string(),
    };
    assert!(
        took < Duration::from_secs(1),
        "{name}: refused after {took:?}"
    );
    (error, took, grew)
}

const MIB: u64 = 1024 * 1024;

fn billion_laughs() -> String {
    let mut doc = String::from("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..10 {
        let previous = format!("*l{}", level - 1);
        let list = [previous.as_str(); 10].join(", ");
        doc.push_str(&format!("l{level}: &l{level} [{list}]\n"));
    }
    doc
}

#[test]
fn hostile_documents_are_refused_quickly_with_bounded_memory() {
    // 10^10 values once expanded: stopped by the value budget or serde_yaml's own guard.
    let (error, took, grew) = refuse("alias bomb", billion_laughs().as_bytes());
    assert!(
        error.contains(
            "document has more than 500000 values (after expanding aliases); refusing it"
        ) || error
            .contains("document expands its aliases too many times (an alias bomb?); refusing it"),
        "{error}"
    );
    // Measured: about 20 MiB (docs/RELIABILITY.md).
    assert!(grew < 32 * MIB, "the alias bomb took {} MiB", grew / MIB);
    eprintln!("alias bomb: {took:?}, {} KiB", grew / 1024);

    // 10,000 levels of nesting, in YAML flow and JSON form; block-style YAML needs one more
    // space per level, so 2,000 levels (2 MB) stand in for it below the size limit.
    let flow = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let block: String = (0..2_000)
        .map(|depth| format!("{}k:\n", " ".repeat(depth)))
        .collect();
    let json = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    for (name, doc) in [
        ("flow nesting", flow),
        ("block nesting", block),
        ("JSON nesting", json),
    ] {
        let (error, took, grew) = refuse(name, doc.as_bytes());
        assert!(
            error.contains("nesting is deeper than 64 levels")
                || error.contains("nesting is too deep"),
            "{name}: {error}"
        );
        // Measured: 0.3 MiB at most.
        assert!(grew < 4 * MIB, "{name} took {} MiB", grew / MIB);
        eprintln!("{name}: {took:?}, {} KiB", grew / 1024);
    }

    // 100 MB: refused by size before any parsing.
    let huge = vec![b'#'; 100 * 1024 * 1024];
    let (error, took, _) = refuse("100 MB document", &huge);
    assert_eq!(
        error,
        "document is 104857600 bytes, over the limit of 8388608 bytes"
    );
    eprintln!("100 MB document: {took:?}");
    drop(huge);
    // ... and from a file, without reading it into memory first.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(100 * 1024 * 1024).unwrap();
    let measurable = reset_peak();
    let before = current_rss();
    let started = Instant::now();
    let error = read_file(&path).unwrap_err();
    assert!(matches!(error, LoadError::Document(_)), "{error}");
    assert_eq!(
        error.to_string(),
        "document is 104857600 bytes, over the limit of 8388608 bytes"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    let grew = if measurable {
        peak_rss().saturating_sub(before)
    } else {
        0
    };
    // At most the size limit (8 MiB) and one byte are read.
    assert!(
        grew < 12 * MIB,
        "reading the huge file took {} MiB",
        grew / MIB
    );
    eprintln!("100 MB file: {} KiB", grew / 1024);

    // Bytes that are not UTF-8 text.
    let (error, ..) = refuse("non-UTF-8", b"modules:\n  - name: \xff\xfe\xfd\n");
    assert_eq!(
        error,
        "document is not UTF-8 text (invalid byte at offset 19)"
    );

    // Binary junk: deterministic pseudo-random bytes of several sizes.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for size in [16usize, 1_000, 100_000, 4_000_000] {
        let junk: Vec<u8> = (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        let (error, took, grew) = refuse(&format!("{size} bytes of junk"), &junk);
        assert!(!error.is_empty());
        assert!(
            grew < 4 * MIB,
            "{size} bytes of junk took {} MiB",
            grew / MIB
        );
        eprintln!(
            "{size} bytes of junk: {took:?}, {} KiB: {error}",
            grew / 1024
        );
        // The same junk as printable text (with YAML's punctuation and line breaks), which
        // gets past the UTF-8 check into the parser.
        let text: String = junk
            .iter()
            .map(|b| {
                if b % 16 == 0 {
                    '\n'
                } else {
                    char::from(32 + b % 95)
                }
            })
            .collect();
        let (error, took, grew) = refuse(&format!("{size} bytes of text junk"), text.as_bytes());
        eprintln!("{size} bytes of text junk: {} KiB", grew / 1024);
        assert!(
            grew < 4 * MIB,
            "{size} bytes of text junk took {} MiB",
            grew / MIB
        );
        eprintln!(
            "{size} bytes of text junk: {took:?}: {}",
            error.lines().next().unwrap_or("")
        );
    }
}

/// The fuzz target's registry: the built-ins without `fault.inject` and the `process` plugin
/// kind, whose purpose is an outside effect during a build.
fn fuzz_registry() -> Registry {
    let mut registry = Registry::with_builtins();
    registry.unregister("module", "fault.inject");
    registry.unregister("plugin", "process");
    registry
}

/// Replays what the fuzzer keeps: the seeds (`fuzz/seeds/config`), the minimized corpus of the
/// latest long run (`fuzz/seeds/corpus`) and the inputs it found (`fuzz/seeds/regressions`),
/// through the fuzz target's two steps. Each input parses or is refused with a message, and
/// builds or is refused with a message, each within a second: never a panic, a hang or an
/// empty error.
#[tokio::test]
async fn the_fuzz_corpus_parses_or_is_refused_with_a_message() {
    let registry = fuzz_registry();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let mut replayed = 0;
    for folder in ["config", "corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder)) else {
            continue;
        };
        for entry in entries.flatten() {
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
    }
    assert!(replayed >= 9, "the seeds are there: {replayed} replayed");
}
