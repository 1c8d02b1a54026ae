//! The layering of `src/`, checked: each top-level module uses only the modules below it, and
//! the files of a folder that documents an order (`src/plugin/`) use only the files before them.
//!
//! The check reads the source as text. It blanks out comments, doc comments and string
//! literals (so an intra-doc link or a message naming `crate::x` is no dependency), then finds
//! every path that starts with `crate::` or `super::` (in `use` statements, with their
//! `{...}` groups, and in code), resolves it against the module the file (or the inline `mod`
//! around it) declares, and maps it to the top-level module, or the folder's file, it names.
//! A name the crate root (or `plugin/mod.rs`) re-exports is followed to where it comes from.
//! The orders below are also the ones docs/ARCHITECTURE.md and `src/plugin/mod.rs` state; the
//! test compares them, so the prose cannot drift from what is checked.
//!
//! `lex` blanks comments and strings and cuts tokens, `paths` finds and resolves the paths,
//! `source` reads the crate and judges each path against the orders.

mod lex;
mod paths;
mod source;

use std::path::{Path, PathBuf};

use lex::strip;
use paths::uses_in;
use source::Crate;

/// The top-level modules of the `swapvisor` crate, lowest first.
const LAYERS: &[&str] = &[
    "secret",
    "state",
    "watch",
    "metrics",
    "net",
    "config",
    "extension",
    "process",
    "registry",
    "plugin",
    "engine",
    "builtin",
    "runtime",
    "fleet",
    "admin",
    "cli",
];

/// Folders whose files go in a documented order, lowest first; `mod.rs` (which declares and
/// re-exports them) may use any of them.
const ORDERED_FOLDERS: &[(&str, &[&str])] = &[(
    "plugin",
    &[
        "counter",
        "spec",
        "checkpoint",
        "checkpoints",
        "history",
        "messages",
        "core",
        "status",
        "link",
        "actor",
        "instance",
        "slot",
        "reference",
        "groups",
        "restart",
        "changes",
        "host",
        "upgrade",
    ],
)];

/// Where docs/ARCHITECTURE.md states the layer order.
const DOC_MARKER: &str = "Layers, lowest first:";

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn each_layer_uses_only_the_layers_below_it() {
    let crate_ = Crate::read(&src());
    let declared: Vec<&str> = crate_.root_modules.iter().map(String::as_str).collect();
    let mut unplaced: Vec<&str> = declared
        .iter()
        .copied()
        .filter(|m| !LAYERS.contains(m))
        .collect();
    unplaced.sort_unstable();
    assert!(unplaced.is_empty(), "modules with no layer: {unplaced:?}");
    let violations = crate_.layer_violations();
    assert!(
        violations.is_empty(),
        "a layer uses one above it (order, lowest first: {}):\n{}",
        LAYERS.join(", "),
        violations.join("\n")
    );
}

#[test]
fn ordered_folders_use_only_the_files_before_them() {
    let crate_ = Crate::read(&src());
    for (folder, order) in ORDERED_FOLDERS {
        let mut files = crate_.files_of(folder);
        files.sort_unstable();
        let mut listed: Vec<String> = order.iter().map(|f| f.to_string()).collect();
        listed.sort_unstable();
        assert_eq!(
            files, listed,
            "src/{folder}/: the order must list every file"
        );
    }
    let violations = crate_.folder_violations();
    assert!(
        violations.is_empty(),
        "a file uses one after it in its folder's order:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_docs_state_the_orders_checked_here() {
    let doc = std::fs::read_to_string(src().join("../docs/ARCHITECTURE.md")).unwrap();
    let line = doc
        .lines()
        .find(|line| line.starts_with(DOC_MARKER))
        .unwrap_or_else(|| panic!("docs/ARCHITECTURE.md has no line starting {DOC_MARKER:?}"));
    assert_eq!(backticked(line), LAYERS, "docs/ARCHITECTURE.md: {line}");
    for (folder, order) in ORDERED_FOLDERS {
        let text = std::fs::read_to_string(src().join(folder).join("mod.rs")).unwrap();
        let docs: String = text
            .lines()
            .filter_map(|line| line.strip_prefix("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        let paragraph = docs
            .split("\n\n")
            .find(|p| p.contains("lowest first"))
            .unwrap_or_else(|| panic!("src/{folder}/mod.rs states no order \"lowest first\""));
        assert_eq!(
            &backticked(paragraph),
            order,
            "src/{folder}/mod.rs: {paragraph}"
        );
    }
}

/// The words between backticks, in order.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

#[test]
fn the_check_sees_wrong_way_paths() {
    // A grouped use, a path in code, and `super::` out of an inline module; comments and
    // strings are no dependency.
    let text = "use crate::{net::X, admin::Y};\n// crate::cli::Z\nfn f() { let _ = \"crate::cli\"; crate::cli::go(); }\nmod tests { use super::super::fleet::W; }\n";
    let uses = uses_in(&strip(text), &["config".to_owned()]);
    let found: Vec<(usize, String)> = uses
        .into_iter()
        .map(|(line, p)| (line, p[0].clone()))
        .collect();
    let expected = [(1, "net"), (1, "admin"), (3, "cli"), (4, "fleet")];
    let expected: Vec<(usize, String)> =
        expected.iter().map(|(l, m)| (*l, m.to_string())).collect();
    assert_eq!(found, expected);
}

/// Source files of every package over this many lines say why in their first lines.
const LONG_FILE: usize = 450;
/// What such a file's first lines hold.
const LONG_FILE_REASON: &str = "Longer than 450 lines on purpose:";

#[test]
fn no_source_file_is_over_450_lines_without_a_reason_at_its_top() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for folder in [
        "src",
        "actors/src",
        "actors/tests",
        "cli",
        "tests",
        "benches",
        "examples",
    ] {
        source::collect(&root.join(folder), &mut files);
    }
    assert!(
        files.len() > 100,
        "the walk found the sources: {}",
        files.len()
    );
    let unexplained: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let lines = text.lines().count();
            let explained = text.lines().take(5).any(|l| l.contains(LONG_FILE_REASON));
            (lines > LONG_FILE && !explained).then(|| {
                let shown = path.strip_prefix(root).unwrap_or(path).display();
                format!("{shown}: {lines} lines")
            })
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "over {LONG_FILE} lines without `// {LONG_FILE_REASON} <why>` at the top (split it, or \
         say why):\n{}",
        unexplained.join("\n")
    );
}
