//! The crate as the check sees it: each file's module and stripped text, what its facades
//! re-export, and the paths that point the wrong way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::lex::strip;
use crate::paths::{declared_modules, facade, uses_in};
use crate::{LAYERS, ORDERED_FOLDERS};

/// One crate's files, with what its facades re-export.
pub(crate) struct Crate {
    /// `(path shown, module path, stripped text)` of every file.
    files: Vec<(String, Vec<String>, String)>,
    pub(crate) root_modules: Vec<String>,
    /// Per facade module path: re-exported name -> the path it comes from.
    reexports: HashMap<Vec<String>, HashMap<String, Vec<String>>>,
}

impl Crate {
    pub(crate) fn read(src: &Path) -> Self {
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
    pub(crate) fn follow(&self, at: &[String], path: &[String]) -> Option<Vec<String>> {
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
    pub(crate) fn top_level(&self, path: &[String]) -> Result<Option<String>, String> {
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

    pub(crate) fn layer_violations(&self) -> Vec<String> {
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

    pub(crate) fn files_of(&self, folder: &str) -> Vec<String> {
        self.files
            .iter()
            .filter(|(_, m, _)| m.len() == 2 && m[0] == folder)
            .map(|(_, m, _)| m[1].clone())
            .collect()
    }

    pub(crate) fn folder_violations(&self) -> Vec<String> {
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

pub(crate) fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
