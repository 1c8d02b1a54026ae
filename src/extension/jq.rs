//! jq programs (through jaq): the one expression language of `if:`, `step.switch` and
//! `step.transform`, compiled at build and run per request.
//!
//! A program sees an *input object* as `.`: `{"request": <the pipeline's input>, "<step>":
//! <its output>, ...}` for the steps it may read (the same names its templates may use), and
//! the same values as variables, `$request` and `$<step>` for each name that is a jq
//! identifier. Variables are checked at build: `$gret` for a step that does not exist (or
//! runs later) is a config error with its place; a path such as `.gret` is not (it is null).
//!
//! What a program may call is jaq's standard library less what reaches outside the request:
//! `env`, `halt`, `halt_error`, `debug`, `stderr`, `localtime`, `strflocaltime` and module
//! imports are not defined, so a program that names them does not compile.
//!
//! A program runs on tokio's blocking pool, so a slow one never holds an async worker and the
//! pipeline's time limit still ends the request on time (the evaluation itself cannot be cut
//! short: it finishes, or runs on, in the background). Its output is charged to the run's
//! render budget; the work inside the program is not bounded (a program is config, written by
//! the operator).

use std::sync::Arc;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data};
use jaq_json::{Num, Val};
use serde_json::{Map, Value};

use crate::config::ConfigError;

/// Native filters a program may not call: they read the process's environment, the local
/// time zone files, write to its stderr or log, or end the process.
const DENIED_FUNS: &[&str] = &[
    "env",
    "halt",
    "debug_empty",
    "stderr_empty",
    "localtime",
    "strflocaltime",
];
/// Definitions built on the denied natives.
const DENIED_DEFS: &[&str] = &["debug", "stderr", "halt", "halt_error"];

type Data = data::JustLut<Val>;

/// A compiled jq program and the names it reads.
pub(crate) struct JqProgram {
    filter: Arc<jaq_core::Filter<Data>>,
    /// For each global variable, in order, its key in the input object.
    vars: Vec<String>,
    /// The readable outputs: key of the input object and output position.
    names: Vec<(String, usize)>,
}

impl std::fmt::Debug for JqProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JqProgram")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// True for names jq can write as `$name`.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl JqProgram {
    /// Compiles `code`, found at `at`. `readable[k]` names the output at position `k`, or is
    /// empty when the program may not read it.
    pub(crate) fn compile(code: &str, readable: &[String], at: &str) -> Result<Self, ConfigError> {
        let names: Vec<(String, usize)> = readable
            .iter()
            .enumerate()
            .filter(|(_, name)| !name.is_empty())
            .map(|(k, name)| (name.clone(), k))
            .collect();
        let mut vars = vec!["request".to_owned()];
        for (name, _) in &names {
            if is_identifier(name) && !vars.contains(name) {
                vars.push(name.clone());
            }
        }
        let var_names: Vec<String> = vars.iter().map(|name| format!("${name}")).collect();
        let fail = |message: String| {
            let mut readable: Vec<&str> = var_names.iter().map(String::as_str).collect();
            readable.sort_unstable();
            ConfigError::new(
                at,
                format!(
                    "{message} in jq program {code:?} (variables: {})",
                    readable.join(", ")
                ),
            )
        };
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .filter(|d| !DENIED_DEFS.contains(&d.name));
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs())
            .filter(|(name, _, _)| !DENIED_FUNS.contains(name));
        let arena = Arena::default();
        let modules = Loader::new(defs)
            .load(&arena, File { code, path: () })
            .map_err(|errors| fail(load_message(code, errors)))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .with_global_vars(var_names.iter().map(String::as_str))
            .compile(modules)
            .map_err(|errors| {
                let undefined: Vec<String> = errors
                    .into_iter()
                    .flat_map(|(_, errors)| errors)
                    .map(|(name, what)| format!("undefined {} {name}", what.as_str()))
                    .collect();
                fail(undefined.join(", "))
            })?;
        Ok(Self {
            filter: Arc::new(filter),
            vars,
            names,
        })
    }

    /// The input object: `request` and every readable output, by name.
    pub(crate) fn input(&self, request: &Value, outputs: &[Value]) -> Val {
        let null = Value::Null;
        let mut map = jaq_json::Map::default();
        map.insert(Val::from("request".to_owned()), to_val(request));
        for (name, k) in &self.names {
            map.insert(
                Val::from(name.clone()),
                to_val(outputs.get(*k).unwrap_or(&null)),
            );
        }
        Val::obj(map)
    }

    /// Runs the program on `dot` with the variables taken from `object` (made by
    /// [`JqProgram::input`]): its first output (`None` when it has none), or every output.
    pub(crate) async fn run(&self, object: &Val, dot: Val, all: bool) -> Result<Outputs, String> {
        let values: Vec<Val> = self
            .vars
            .iter()
            .map(|key| match object {
                Val::Obj(map) => map
                    .get(&Val::from(key.clone()))
                    .cloned()
                    .unwrap_or(Val::Null),
                _ => Val::Null,
            })
            .collect();
        let filter = self.filter.clone();
        let evaluation = tokio::task::spawn_blocking(move || {
            let ctx = Ctx::<Data>::new(&filter.lut, Vars::new(values));
            let mut collected = Vec::new();
            for next in filter.id.run((ctx, dot)) {
                let value = next.map_err(|exception| match exception.get_err() {
                    // `error("text")` reads as the text; any other value as JSON.
                    Ok(error) => match from_val(&error.into_val()) {
                        Value::String(text) => text,
                        other => other.to_string(),
                    },
                    Err(_) => "the program stopped without a value".to_owned(),
                })?;
                collected.push(from_val(&value));
                if !all {
                    break;
                }
            }
            Ok::<_, String>(collected)
        });
        let collected = evaluation
            .await
            .map_err(|e| format!("the jq program panicked or was cancelled: {e}"))??;
        Ok(Outputs(collected))
    }

    /// Whether the program's first output on the input object is truthy (not false, not
    /// null); a program without output is false.
    pub(crate) async fn test(&self, request: &Value, outputs: &[Value]) -> Result<bool, String> {
        let object = self.input(request, outputs);
        let first = self.run(&object, object.clone(), false).await?;
        Ok(first
            .0
            .first()
            .is_some_and(|v| !matches!(v, Value::Null | Value::Bool(false))))
    }
}

/// What a program produced, in order.
#[derive(Debug)]
pub(crate) struct Outputs(pub(crate) Vec<Value>);

fn load_message(code: &str, errors: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let at = |part: &str| {
        let range = jaq_core::load::span(code, part);
        match part.is_empty() {
            true => format!("at the end (offset {})", range.start),
            false => format!("at offset {}: {:?}", range.start, truncate(part)),
        }
    };
    let mut messages = Vec::new();
    for (_, error) in errors {
        match error {
            Error::Io(errors) => {
                for (path, _) in errors {
                    messages.push(format!("modules cannot be loaded ({path:?})"));
                }
            }
            Error::Lex(errors) => {
                for (expected, found) in errors {
                    messages.push(format!(
                        "expected {} {}",
                        lex_expected(&expected),
                        at(found)
                    ));
                }
            }
            Error::Parse(errors) => {
                for (expected, found) in errors {
                    messages.push(format!("expected {} {}", expected.as_str(), at(found)));
                }
            }
        }
    }
    format!("syntax error: {}", messages.join("; "))
}

/// [`jaq_core::load::lex::Expect::as_str`] panics on a delimiter it does not know.
fn lex_expected(expected: &jaq_core::load::lex::Expect<&str>) -> String {
    use jaq_core::load::lex::Expect;
    match expected {
        Expect::Delim(d) if !["(", "[", "{", "\""].contains(d) => format!("a match for {d:?}"),
        other => other.as_str().to_owned(),
    }
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(20) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// A JSON value as a jq value.
pub(crate) fn to_val(value: &Value) -> Val {
    match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Val::Num(Num::from_integral(i)),
            (None, Some(u)) => Val::Num(Num::from_integral(u)),
            _ => Val::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Val::from(s.clone()),
        Value::Array(items) => items.iter().map(to_val).collect(),
        Value::Object(map) => Val::obj(
            map.iter()
                .map(|(k, v)| (Val::from(k.clone()), to_val(v)))
                .collect(),
        ),
    }
}

/// A jq value as JSON: non-finite numbers become null (as jq writes them), byte strings and
/// text are read as UTF-8 (lossily), and keys that are not strings are written as JSON.
pub(crate) fn from_val(value: &Val) -> Value {
    match value {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => number(n),
        Val::TStr(bytes) | Val::BStr(bytes) => {
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        Val::Arr(items) => Value::Array(items.iter().map(from_val).collect()),
        Val::Obj(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Val::TStr(bytes) | Val::BStr(bytes) => {
                            String::from_utf8_lossy(bytes).into_owned()
                        }
                        other => from_val(other).to_string(),
                    };
                    (key, from_val(v))
                })
                .collect::<Map<_, _>>(),
        ),
    }
}

fn number(n: &Num) -> Value {
    let float = |f: f64| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    match n {
        Num::Int(i) => Value::from(*i as i64),
        Num::BigInt(big) => {
            let text = big.to_string();
            text.parse::<i64>()
                .map(Value::from)
                .or_else(|_| text.parse::<u64>().map(Value::from))
                .unwrap_or_else(|_| float(text.parse::<f64>().unwrap_or(f64::NAN)))
        }
        Num::Float(f) => float(*f),
        Num::Dec(text) => {
            let text: &str = text;
            text.parse::<serde_json::Number>()
                .map(Value::Number)
                .unwrap_or_else(|_| float(text.parse::<f64>().unwrap_or(f64::NAN)))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn programs_read_the_request_and_outputs_by_name_and_variable() {
        let p = JqProgram::compile(
            r#"[.request.q, $greet.message, .greet.message, .["my-step"]]"#,
            &names(&["greet", "", "my-step"]),
            "cfg",
        )
        .unwrap();
        let outputs = [json!({"message": "hi"}), json!("hidden"), json!(3)];
        let request = json!({"q": "x"});
        let object = p.input(&request, &outputs);
        let out = p.run(&object, object.clone(), false).await.unwrap();
        assert_eq!(out.0, vec![json!(["x", "hi", "hi", 3])]);
        assert!(p.test(&request, &outputs).await.unwrap());
    }

    #[tokio::test]
    async fn truthiness_and_all_outputs() {
        let p = |code: &str| JqProgram::compile(code, &[], "cfg").unwrap();
        for (code, expected) in [
            ("null", false),
            ("false", false),
            ("0", true),
            ("empty", false),
        ] {
            assert_eq!(
                p(code).test(&json!({}), &[]).await.unwrap(),
                expected,
                "{code}"
            );
        }
        let object = Val::Null;
        let program = p(".[]");
        let all = program.run(&object, to_val(&json!([1, 2.5, "a", {"k": null}])), true);
        assert_eq!(
            all.await.unwrap().0,
            vec![json!(1), json!(2.5), json!("a"), json!({"k": null})]
        );
        let error = p("error(\"no\")").test(&json!({}), &[]).await.unwrap_err();
        assert_eq!(error, "no");
    }

    #[test]
    fn syntax_errors_and_unknown_variables_are_config_errors() {
        let err = JqProgram::compile(".a ==", &names(&["a"]), "cfg").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cfg: syntax error: expected term at the end (offset 5) in jq program ".a ==" (variables: $a, $request)"#
        );
        let err = JqProgram::compile("$gret", &names(&["greet"]), "cfg").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cfg: undefined variable $gret in jq program "$gret" (variables: $greet, $request)"#
        );
        for denied in [
            "env",
            "halt",
            "debug",
            "$ENV",
            "localtime",
            "import \"a\" as a; 1",
        ] {
            assert!(JqProgram::compile(denied, &[], "cfg").is_err(), "{denied}");
        }
    }
}
