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

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The top-level modules of the `swapvisor` crate, lowest first.
const LAYERS: &[&str] = &[
    "secret",
    "watch",
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

/// One crate's files, with what its facades re-export.
struct Crate {
    /// `(path shown, module path, stripped text)` of every file.
    files: Vec<(String, Vec<String>, String)>,
    root_modules: Vec<String>,
    /// Per facade module path: re-exported name -> the path it comes from.
    reexports: HashMap<Vec<String>, HashMap<String, Vec<String>>>,
}

impl Crate {
    fn read(src: &Path) -> Self {
        let mut paths = Vec::new();
        collect(src, &mut paths);
        paths.sort();
        let mut files = Vec::new();
        for path in paths {
            let relative = path
                .strip_prefix(src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            // The binaries are crates of their own, on top of everything.
            if relative == "main.rs" || relative.starts_with("bin/") {
                continue;
            }
            let module: Vec<String> = relative
                .trim_end_matches(".rs")
                .split('/')
                .filter(|s| *s != "mod" && *s != "lib")
                .map(str::to_owned)
                .collect();
            let text = strip(&std::fs::read_to_string(&path).unwrap());
            files.push((format!("src/{relative}"), module, text));
        }
        let mut root_modules = Vec::new();
        let mut reexports = HashMap::new();
        for (_, module, text) in &files {
            if module.is_empty() {
                root_modules = declared_modules(text);
            }
            if module.is_empty()
                || ORDERED_FOLDERS
                    .iter()
                    .any(|(f, _)| module == &[f.to_string()])
            {
                reexports.insert(module.clone(), facade(text, module));
            }
        }
        Crate {
            files,
            root_modules,
            reexports,
        }
    }

    /// Follows a re-export of the facade `at` (one level), if `path` names one.
    fn follow(&self, at: &[String], path: &[String]) -> Option<Vec<String>> {
        let name = path.get(at.len())?;
        let origin = self.reexports.get(at)?.get(name)?;
        Some(
            origin
                .iter()
                .chain(&path[at.len() + 1..])
                .cloned()
                .collect(),
        )
    }

    /// The top-level module `path` lands in; `None` for an outside crate re-exported at the
    /// root, `Err` for a name the check cannot place.
    fn top_level(&self, path: &[String]) -> Result<Option<String>, String> {
        let Some(first) = path.first() else {
            return Ok(None);
        };
        if self.root_modules.contains(first) {
            return Ok(Some(first.clone()));
        }
        match self.follow(&[], path) {
            Some(origin)
                if origin
                    .first()
                    .is_some_and(|o| self.root_modules.contains(o)) =>
            {
                Ok(Some(origin[0].clone()))
            }
            Some(_) => Ok(None),
            None => Err(format!("cannot place `crate::{}`", path.join("::"))),
        }
    }

    fn layer_violations(&self) -> Vec<String> {
        let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
        let mut violations = Vec::new();
        for (shown, module, text) in &self.files {
            let Some(from) = module.first() else { continue };
            for (line, path) in uses_in(text, module) {
                let to = match self.top_level(&path) {
                    Ok(Some(to)) => to,
                    Ok(None) => continue,
                    Err(why) => {
                        violations.push(format!("{shown}:{line}: {why}"));
                        continue;
                    }
                };
                if let (Some(a), Some(b)) = (rank(from), rank(&to))
                    && b > a
                {
                    let violation = format!("{shown}:{line}: {from} -> {to}");
                    // One line of a group may name the module several times.
                    if violations.last() != Some(&violation) {
                        violations.push(violation);
                    }
                }
            }
        }
        violations
    }

    fn files_of(&self, folder: &str) -> Vec<String> {
        self.files
            .iter()
            .filter(|(_, m, _)| m.len() == 2 && m[0] == folder)
            .map(|(_, m, _)| m[1].clone())
            .collect()
    }

    fn folder_violations(&self) -> Vec<String> {
        let mut violations = Vec::new();
        for (folder, order) in ORDERED_FOLDERS {
            let rank = |f: &str| order.iter().position(|o| *o == f);
            let at = vec![folder.to_string()];
            for (shown, module, text) in &self.files {
                if module.len() < 2 || module[0] != *folder {
                    continue;
                }
                let from = &module[1];
                for (line, path) in uses_in(text, module) {
                    if path.first() != Some(&at[0]) {
                        continue;
                    }
                    let path = self.follow(&at, &path).unwrap_or(path);
                    let Some(to) = path.get(1).filter(|_| path[0] == at[0]) else {
                        continue;
                    };
                    if let (Some(a), Some(b)) = (rank(from), rank(to))
                        && b > a
                    {
                        violations.push(format!(
                            "{shown}:{line}: {folder}::{from} -> {folder}::{to}"
                        ));
                    }
                }
            }
        }
        violations
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// True when the `r` at `i` may begin a raw string (`r"`, `br"`), not end an identifier.
fn raw_start(c: &[char], i: usize) -> bool {
    let ident = |ch: &char| ch.is_alphanumeric() || *ch == '_';
    match i.checked_sub(1).map(|p| c[p]) {
        None => true,
        Some('b') => i < 2 || !ident(&c[i - 2]),
        Some(before) => !ident(&before),
    }
}

/// `text` with comments blanked and string and char literals emptied; lines are kept.
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    // Skips to `end` (exclusive), keeping only newlines.
    let skip = |out: &mut String, from: usize, end: usize| {
        out.extend(c[from..end.min(c.len())].iter().filter(|ch| **ch == '\n'));
    };
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            let end = (i..c.len()).find(|j| c[*j] == '\n').unwrap_or(c.len());
            i = end;
        } else if c[i] == '/' && next == Some('*') {
            let (mut depth, mut j) = (0, i);
            while j < c.len() {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            skip(&mut out, i, j);
            i = j;
        } else if c[i] == 'r' && raw_start(&c, i) && matches!(next, Some('"' | '#')) {
            let hashes = c[i + 1..].iter().take_while(|ch| **ch == '#').count();
            if c.get(i + 1 + hashes) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let start = i + 2 + hashes;
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let rest: String = c[start..].iter().collect();
            let end = rest
                .find(&close)
                .map(|n| start + rest[..n].chars().count())
                .unwrap_or(c.len());
            out.push_str("\"\"");
            skip(&mut out, start, end);
            i = end + 1 + hashes;
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            skip(&mut out, i + 1, j);
            i = j + 1;
        } else if c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\'')) {
            // `'\''` and `'\\'`: an escape's closing quote is at least three on.
            let from = if next == Some('\\') { i + 3 } else { i + 2 };
            let end = (from..c.len()).find(|j| c[*j] == '\'').unwrap_or(c.len());
            out.push_str("' '");
            i = end + 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    Path,
    Punct(char),
}

/// The tokens of stripped text, each with its line.
fn tokens(text: &str) -> Vec<(usize, Token)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let c: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < c.len() {
            if c[i].is_alphanumeric() || c[i] == '_' {
                let end = (i..c.len())
                    .find(|j| !(c[*j].is_alphanumeric() || c[*j] == '_'))
                    .unwrap_or(c.len());
                out.push((n + 1, Token::Ident(c[i..end].iter().collect())));
                i = end;
            } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
                out.push((n + 1, Token::Path));
                i += 2;
            } else {
                if !c[i].is_whitespace() {
                    out.push((n + 1, Token::Punct(c[i])));
                }
                i += 1;
            }
        }
    }
    out
}

fn is_ident(t: Option<&(usize, Token)>, word: &str) -> bool {
    matches!(t, Some((_, Token::Ident(w))) if w == word)
}

/// Every path starting `crate::` or `super::` in `text` (the file of `module`), resolved to a
/// path from the crate root, with its line. A `{...}` group gives one path per item (the
/// first segment of each).
fn uses_in(text: &str, module: &[String]) -> Vec<(usize, Vec<String>)> {
    let tokens = tokens(text);
    let mut found = Vec::new();
    // Inline modules: (name, brace depth inside them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let (line, token) = &tokens[i];
        match token {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            Token::Ident(w) if w == "mod" => {
                if let (Some((_, Token::Ident(name))), Some((_, Token::Punct('{')))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    inline.push((name.clone(), depth + 1));
                }
            }
            Token::Ident(w)
                if (w == "crate" || w == "super")
                    && tokens.get(i + 1).map(|t| &t.1) == Some(&Token::Path) =>
            {
                let after_path = i > 0 && tokens[i - 1].1 == Token::Path;
                if !after_path {
                    let mut base: Vec<String> = if w == "crate" {
                        Vec::new()
                    } else {
                        module
                            .iter()
                            .cloned()
                            .chain(inline.iter().map(|(n, _)| n.clone()))
                            .collect()
                    };
                    let mut j = i;
                    // `super::super::...`
                    if w == "super" {
                        base.pop();
                        j += 2;
                        while is_ident(tokens.get(j), "super")
                            && tokens.get(j + 1).map(|t| &t.1) == Some(&Token::Path)
                        {
                            base.pop();
                            j += 2;
                        }
                    } else {
                        j += 2;
                    }
                    for tail in path_tails(&tokens, j) {
                        found.push((*line, base.iter().cloned().chain(tail).collect()));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The segments from `at`: `a::b::C` -> one path; `a::{b::X, c}` -> `a::b` and `a::c`.
fn path_tails(tokens: &[(usize, Token)], mut at: usize) -> Vec<Vec<String>> {
    let mut prefix = Vec::new();
    loop {
        match tokens.get(at).map(|t| &t.1) {
            Some(Token::Ident(segment)) => {
                prefix.push(segment.clone());
                if tokens.get(at + 1).map(|t| &t.1) != Some(&Token::Path) {
                    return vec![prefix];
                }
                at += 2;
            }
            Some(Token::Punct('{')) => {
                let mut tails = Vec::new();
                let (mut depth, mut item_start) = (0, true);
                for (_, token) in &tokens[at + 1..] {
                    match token {
                        Token::Punct('{') => depth += 1,
                        Token::Punct('}') if depth == 0 => break,
                        Token::Punct('}') => depth -= 1,
                        Token::Punct(',') if depth == 0 => item_start = true,
                        Token::Ident(segment) if item_start => {
                            item_start = false;
                            let mut tail = prefix.clone();
                            if segment != "self" {
                                tail.push(segment.clone());
                            }
                            tails.push(tail);
                        }
                        _ => {}
                    }
                }
                return tails;
            }
            _ => return vec![prefix],
        }
    }
}

/// The modules `text` (the crate root) declares: `mod x;` and `pub mod x;`.
fn declared_modules(text: &str) -> Vec<String> {
    let tokens = tokens(text);
    let mut modules = Vec::new();
    for (i, (_, token)) in tokens.iter().enumerate() {
        if matches!(token, Token::Ident(w) if w == "mod")
            && let (Some((_, Token::Ident(name))), Some((_, Token::Punct(';')))) =
                (tokens.get(i + 1), tokens.get(i + 2))
        {
            modules.push(name.clone());
        }
    }
    modules
}

/// What the facade module `at` (the crate root, or a folder's `mod.rs`) re-exports: each name
/// (or alias) -> the path, from the crate root, it comes from (an outside crate's path starts
/// with that crate's name).
fn facade(text: &str, at: &[String]) -> HashMap<String, Vec<String>> {
    let tokens = tokens(text);
    let children = declared_modules(text);
    let mut names = HashMap::new();
    let mut i = 0;
    while i < tokens.len() {
        if is_ident(tokens.get(i), "use") {
            let end = (i..tokens.len())
                .find(|j| tokens[*j].1 == Token::Punct(';'))
                .unwrap_or(tokens.len());
            let statement = &tokens[i + 1..end];
            use_tree(statement, &mut Vec::new(), &mut |path, alias| {
                let path: Vec<String> = match path.first().map(String::as_str) {
                    Some("crate") => path[1..].to_vec(),
                    Some(first) if children.iter().any(|c| c == first) => {
                        at.iter().cloned().chain(path.iter().cloned()).collect()
                    }
                    _ => path.to_vec(),
                };
                names.insert(alias.to_owned(), path);
            });
            i = end;
        }
        i += 1;
    }
    names
}

/// Walks one use tree, calling `leaf(path, name it is known by)` for each imported item.
fn use_tree(
    tokens: &[(usize, Token)],
    prefix: &mut Vec<String>,
    leaf: &mut dyn FnMut(&[String], &str),
) {
    let mut i = 0;
    let depth_at_start = prefix.len();
    while i < tokens.len() {
        match &tokens[i].1 {
            Token::Ident(segment) => {
                if tokens.get(i + 1).map(|t| &t.1) == Some(&Token::Path) {
                    prefix.push(segment.clone());
                    i += 2;
                    continue;
                }
                let alias = match (tokens.get(i + 1), tokens.get(i + 2)) {
                    (Some((_, Token::Ident(kw))), Some((_, Token::Ident(alias)))) if kw == "as" => {
                        alias.clone()
                    }
                    _ => segment.clone(),
                };
                let mut path = prefix.clone();
                path.push(segment.clone());
                leaf(&path, &alias);
                break;
            }
            Token::Punct('{') => {
                let mut depth = 0;
                let mut start = i + 1;
                for j in i + 1..tokens.len() {
                    match tokens[j].1 {
                        Token::Punct('{') => depth += 1,
                        Token::Punct('}') if depth > 0 => depth -= 1,
                        Token::Punct(',') | Token::Punct('}') if depth == 0 => {
                            use_tree(&tokens[start..j], prefix, leaf);
                            start = j + 1;
                            if tokens[j].1 == Token::Punct('}') {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                break;
            }
            _ => i += 1,
        }
    }
    prefix.truncate(depth_at_start);
}
