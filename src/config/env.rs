//! `${VAR}` expansion in the `config:` of modules, triggers, steps and plugins.
//!
//! Syntax, as in a POSIX shell: `${NAME}` is the variable's value and an unset `NAME` is an
//! error; `${NAME:-fallback}` uses `fallback` when `NAME` is unset or empty; `$$` is a literal
//! `$`. A lone `$` not followed by `{` or `$` is kept as it is, so prices and regexes need no
//! escaping. Expansion produces a new value; the parsed source keeps its `${...}` text.

use serde_json::Value;

use super::error::{ConfigErrors, place};

/// Where variable values come from. [`process_env`] in production; a map in tests.
pub type EnvLookup<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// An owned, shareable source of variable values, as runtimes keep one.
pub type SharedEnv = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Reads the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Expands every string inside `value`, reporting problems at their place under `at`.
pub(crate) fn expand_value(
    value: &Value,
    at: &str,
    env: EnvLookup<'_>,
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
    env: EnvLookup<'_>,
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
                match (env(name), fallback) {
                    (Some(value), Some(fallback)) if value.is_empty() => out.push_str(fallback),
                    (Some(value), _) => out.push_str(&value),
                    (None, Some(fallback)) => out.push_str(fallback),
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
        let out = expand_str(text, "here", &env, &mut errors);
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
    fn malformed_references_are_errors() {
        assert!(expand("${HOST").unwrap_err().contains("unterminated"));
        assert!(
            expand("${1A}")
                .unwrap_err()
                .contains("invalid variable name")
        );
    }
}
