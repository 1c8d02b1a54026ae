//! Hostile documents: each is refused with a clear error within a second, and parsing it
//! allocates a bounded amount of memory. One test, so that nothing else in this process moves
//! the memory readings.

use std::time::{Duration, Instant};

use swapvisor::config::{Config, LoadError, read_file};

/// Peak resident memory since the last reset, in bytes (Linux `VmHWM`); `None` when the kernel
/// does not report it.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Resident memory now, in bytes; `None` when the kernel does not report it.
fn current_rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages = statm.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(pages * 4096)
}

/// The resident size now, with the peak made to start again from it: `None` only where the
/// kernel does not allow a reset or does not report the sizes, and `SWAPVISOR_SKIP_MEMORY_CHECKS`
/// is set: the memory bounds are then reported as skipped, loudly. Without that variable such
/// a kernel fails the test, so that the bounds are never passed without being measured.
fn reset_peak() -> Option<u64> {
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let sizes = current_rss().zip(peak_rss());
    let why = match (reset, sizes) {
        (true, Some((now, _))) => return Some(now),
        (false, _) => "/proc/self/clear_refs is not writable",
        (true, None) => "/proc/self/status or /proc/self/statm does not report VmHWM or VmRSS",
    };
    let skip = std::env::var_os("SWAPVISOR_SKIP_MEMORY_CHECKS").is_some();
    assert!(
        skip,
        "cannot measure the peak resident size ({why}), so the memory bounds cannot be checked; \
         set SWAPVISOR_SKIP_MEMORY_CHECKS=1 to run without them"
    );
    eprintln!("MEMORY CHECKS SKIPPED: {why}");
    None
}

/// How much the peak resident size rose above `before` (from [`reset_peak`]); 0 when the
/// checks are skipped.
fn peak_growth(before: Option<u64>) -> u64 {
    before.map_or(0, |before| {
        // reset_peak saw VmHWM reported a moment ago.
        let peak = peak_rss().expect("VmHWM was readable at the reset");
        peak.saturating_sub(before)
    })
}

/// Parses `input`, and returns the error with how long it took and how much memory the parse
/// itself needed at its peak.
fn refuse(name: &str, input: &[u8]) -> (String, Duration, u64) {
    let before = reset_peak();
    let started = Instant::now();
    let result = Config::parse(input);
    let took = started.elapsed();
    let grew = peak_growth(before);
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
    let before = reset_peak();
    let started = Instant::now();
    let error = read_file(&path).unwrap_err();
    assert!(matches!(error, LoadError::Document(_)), "{error}");
    assert_eq!(
        error.to_string(),
        "document is 104857600 bytes, over the limit of 8388608 bytes"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    let grew = peak_growth(before);
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
