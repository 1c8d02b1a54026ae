//! `${VAR}` expansion in the `config:` of modules, triggers, steps and plugins.
//!
//! Syntax, as in a POSIX shell: `${NAME}` is the variable's value and an unset `NAME` is an
//! error; `${NAME:-fallback}` uses `fallback` when `NAME` is unset or empty; `$$` is a literal
//! `$`. A lone `$` not followed by `{` or `$` is kept as it is, so prices and regexes need no
//! escaping. Expansion produces a new value; the parsed source keeps its `${...}` text.
//!
//! What expansion may add is bounded: the values substituted into one config (or one plugin
//! entry) come to at most [`MAX_EXPANSION_BYTES`] in all. Past that, the reference that
//! crossed the bound is an error at its place and nothing more is substituted, so a large
//! variable referenced many times cannot make a small document into a huge config.

use serde_json::Value;

use super::error::{ConfigErrors, place};

/// Where variable values come from. [`process_env`] in production; a map in tests.
pub type EnvLookup<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// An owned, shareable source of variable values, as runtimes keep one.
pub type SharedEnv = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The most bytes `${VAR}` values (and defaults) may add to one config, all references
/// together: far above any real use (a certificate referenced a few times is some KiB), far
/// below what would hurt the process.
pub(super) const MAX_EXPANSION_BYTES: usize = 4 * 1024 * 1024;

/// Expands references against one source of values, within one budget for a whole config.
pub(crate) struct Expander<'e> {
    env: EnvLookup<'e>,
    left: usize,
    /// Set once a reference crossed the budget; later ones are skipped without a new error.
    exhausted: bool,
}

impl<'e> Expander<'e> {
    /// An expander with the whole [`MAX_EXPANSION_BYTES`] to spend.
    pub(crate) fn new(env: EnvLookup<'e>) -> Self {
        Self {
            env,
            left: MAX_EXPANSION_BYTES,
            exhausted: false,
        }
    }

    /// Appends `value` (what `reference` expands to) to `out` if the budget allows.
    fn substitute(
        &mut self,
        out: &mut String,
        value: &str,
        reference: &str,
        at: &str,
        errors: &mut ConfigErrors,
    ) {
        if self.exhausted {
            return;
        }
        match self.left.checked_sub(value.len()) {
            Some(left) => {
                self.left = left;
                out.push_str(value);
            }
            None => {
                self.exhausted = true;
                errors.push(
                    at,
                    format!(
                        "\"${{{reference}}}\" ({} bytes) would take the config's ${{VAR}} expansions past {} MiB in all; refer to large values fewer times (or read them in the plugin or module itself)",
                        value.len(),
                        MAX_EXPANSION_BYTES >> 20
                    ),
                );
            }
        }
    }
}

/// Reads the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Expands every string inside `value`, reporting problems at their place under `at`.
pub(crate) fn expand_value(
    value: &Value,
    at: &str,
    env: &mut Expander<'_>,
    errors: &mut ConfigErrors,
) -> Value {
    match value {
        Value::String(s) => Value::String(expand_str(s, at, env, errors)),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| expand_value(item, &place::index(at, i), env, errors))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| {
                    let expanded = expand_value(item, &place::key(at, key), env, errors);
                    (key.clone(), expanded)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// True when some string in `value` has a `$`, so that expanding it may change it (a `${VAR}`
/// reference or a `$$` escape); a value without one expands to itself.
pub(crate) fn mentions_env(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('$'),
        Value::Array(items) => items.iter().any(mentions_env),
        Value::Object(map) => map.values().any(mentions_env),
        _ => false,
    }
}

/// Expands one string.
pub(crate) fn expand_str(
    text: &str,
    at: &str,
    expander: &mut Expander<'_>,
    errors: &mut ConfigErrors,
) -> String {
    if !text.contains('$') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(close) = body.find('}') else {
                errors.push(
                    at,
                    format!(
                        "unterminated \"${{\" in {text:?} (write ${{NAME}}, or $$ for a literal $)"
                    ),
                );
                return text.to_owned();
            };
            let reference = &body[..close];
            let (name, fallback) = match reference.split_once(":-") {
                Some((name, fallback)) => (name, Some(fallback)),
                None => (reference, None),
            };
            if !is_var_name(name) {
                errors.push(at, format!("invalid variable name {name:?} in \"${{{reference}}}\" (use letters, digits and _, not starting with a digit)"));
            } else {
                let value = (expander.env)(name);
                match (value.as_deref(), fallback) {
                    (Some(""), Some(fallback)) | (None, Some(fallback)) => {
                        expander.substitute(&mut out, fallback, reference, at, errors)
                    }
                    (Some(value), _) => expander.substitute(&mut out, value, reference, at, errors),
                    (None, None) => errors.push(
                        at,
                        format!("environment variable {name:?} is not set (set it, or give a default with ${{{name}:-default}})"),
                    ),
                }
            }
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(text: &str) -> Result<String, String> {
        let env = |name: &str| match name {
            "HOST" => Some("127.0.0.1".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let mut errors = ConfigErrors::default();
        let out = expand_str(text, "here", &mut Expander::new(&env), &mut errors);
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors.to_string())
        }
    }

    #[test]
    fn expands_set_variables_and_defaults() {
        assert_eq!(expand("${HOST}:8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(expand("${PORT:-9090}").unwrap(), "9090");
        assert_eq!(expand("${EMPTY:-x}").unwrap(), "x");
        assert_eq!(expand("${EMPTY}").unwrap(), "");
        assert_eq!(
            expand("cost $5 and $${HOST}").unwrap(),
            "cost $5 and ${HOST}"
        );
    }

    #[test]
    fn unset_variable_names_the_variable_and_place() {
        assert_eq!(
            expand("${NOPE}").unwrap_err(),
            "here: environment variable \"NOPE\" is not set (set it, or give a default with ${NOPE:-default})"
        );
    }

    #[test]
    fn expansion_past_the_budget_is_refused_at_its_place_once() {
        let big = "x".repeat(100_000);
        let env = |name: &str| (name == "BIG").then(|| big.clone());
        let mut expander = Expander::new(&env);
        let mut errors = ConfigErrors::default();
        let references = serde_json::json!(vec!["${BIG}"; 1_000]);
        let expanded = expand_value(&references, "modules[0].config", &mut expander, &mut errors);
        assert_eq!(errors.len(), 1, "{errors}");
        let error = errors.to_string();
        assert!(
            error.starts_with("modules[0].config[41]: \"${BIG}\" (100000 bytes) would take the config's ${VAR} expansions past 4 MiB in all"),
            "{error}"
        );
        let total: usize = expanded
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().len())
            .sum();
        assert!(total <= MAX_EXPANSION_BYTES);
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(expand("${HOST").unwrap_err().contains("unterminated"));
        assert!(
            expand("${1A}")
                .unwrap_err()
                .contains("invalid variable name")
        );
    }
}
