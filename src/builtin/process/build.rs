//! Building a process plugin instance: its settings checked, its executable found and hashed
//! (or the pinned hash checked), its step types declared or remembered. A build runs nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::manifest::{self, TypesFrom};
use super::{ProcessPlugin, ProcessSettings, store};
use crate::config::{ConfigError, ConfigErrors, parse_duration, place};
use crate::extension::plugin::{Plugin, PluginBuild};
use crate::process::protocol;

/// The default `callTimeout`.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Settings {
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    call_timeout: Option<String>,
    #[serde(default)]
    watch: bool,
    max_line_bytes: Option<usize>,
    #[serde(default)]
    settings: Option<Value>,
    step_types: Option<Vec<String>>,
}

/// Builds an instance: checks the settings and pins the executable.
pub(in crate::builtin) fn build(build: &PluginBuild<'_>) -> Result<Box<dyn Plugin>, ConfigErrors> {
    let raw: Settings = build.settings()?;
    let at = |field: &str| place::field(build.place, field);
    let invalid =
        |field: &str, message: String| ConfigErrors::from(ConfigError::new(at(field), message));
    let Some(program) = raw.command.first() else {
        return Err(invalid(
            "command",
            "expected the executable and its arguments, such as [\"./plugins/enrich\", \"--region\", \"eu\"]; got an empty list".into(),
        ));
    };
    let call_timeout = match &raw.call_timeout {
        Some(text) => parse_duration(text).map_err(|e| invalid("callTimeout", e))?,
        None => DEFAULT_CALL_TIMEOUT,
    };
    let max_line_bytes = raw
        .max_line_bytes
        .unwrap_or(protocol::DEFAULT_MAX_LINE_BYTES);
    if max_line_bytes < 1024 {
        return Err(invalid(
            "maxLineBytes",
            format!("{max_line_bytes} is too small; expected at least 1024"),
        ));
    }
    let executable =
        resolve_executable(program, raw.cwd.as_deref()).map_err(|e| invalid("command", e))?;
    let (hash, source) = match build.code {
        Some(hash) => store::check_hash(hash).map(|()| (hash.to_owned(), None)),
        None => store::hash_of(&executable).map(|hash| (hash, Some(executable.clone()))),
    }
    .map_err(|e| invalid("command", e))?;
    let declared = match raw.step_types {
        Some(types) => Some(check_step_types(types).map_err(|e| invalid("stepTypes", e))?),
        None => None,
    };
    let mut plugin = ProcessPlugin {
        name: build.name.to_owned(),
        version: format!("sha256:{}", &hash[..12]),
        watched: raw.watch.then_some(executable),
        hash,
        source,
        arg0: program.clone(),
        step_types: None,
        manifest: None,
        process: None,
        settings: Arc::new(ProcessSettings {
            args: raw.command[1..].to_vec(),
            env: raw.env,
            cwd: raw.cwd,
            call_timeout,
            max_line_bytes,
            settings: raw.settings.unwrap_or_else(|| json!({})),
        }),
    };
    plugin.step_types = match declared {
        Some(types) => Some((types, TypesFrom::Declared)),
        None => manifest::learned(&plugin),
    };
    Ok(Box::new(plugin))
}

/// The declared step types, each a plain type name, none twice; sorted.
fn check_step_types(types: Vec<String>) -> Result<Vec<String>, String> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, name) in types.iter().enumerate() {
        let plain = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !plain {
            return Err(format!(
                "[{i}] {name:?} is not a step type name; expected letters, digits, '.', '_' or '-', such as \"counter.add\""
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(format!("[{i}] {name:?} is declared twice"));
        }
    }
    Ok(seen.into_iter().collect())
}

/// `command[0]` as a path: with a slash it is a path (relative to `cwd` when given), without
/// one it is looked up in `PATH`, as a shell would.
fn resolve_executable(program: &str, cwd: Option<&Path>) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = match cwd {
            Some(cwd) => cwd.join(program),
            None => PathBuf::from(program),
        };
        return std::path::absolute(&path).map_err(|e| format!("cannot resolve {program:?}: {e}"));
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&search)
        .map(|folder| folder.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| format!("{program:?} is not in PATH; give a path such as \"./{program}\""))
}
