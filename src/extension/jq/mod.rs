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
//! A program compiles and runs on a thread with a large stack (`pool`), so a slow one never
//! holds an async worker and the pipeline's time limit still ends the request on time (the
//! evaluation itself cannot be cut short: it finishes, or runs on, in the background). Its
//! output is charged to the run's render budget and may nest at most 128 levels;
//! the work inside the program is not bounded (a program is config, written by the operator).

mod convert;
mod pool;

use std::sync::Arc;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data};
use jaq_json::Val;
use serde_json::Value;

pub(crate) use convert::{from_val, to_val};
pub(crate) use pool::MAX_PROGRAM_BYTES;

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
            // `request` is the pipeline's input, as in templates, whatever a step is called.
            .filter(|(_, name)| !name.is_empty() && *name != "request")
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
                    "{message} in jq program {:?} (variables: {})",
                    truncate(code, 80),
                    readable.join(", ")
                ),
            )
        };
        if code.len() > MAX_PROGRAM_BYTES {
            return Err(ConfigError::new(
                at,
                format!(
                    "the jq program is {} bytes long; at most {MAX_PROGRAM_BYTES} are allowed (a larger transformation belongs in a plugin)",
                    code.len()
                ),
            ));
        }
        let filter =
            pool::run_scoped(|| compile_here(code, &var_names).map_err(fail)).map_err(|e| {
                ConfigError::new(at, format!("the jq program could not be compiled: {e}"))
            })??;
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
        let evaluation = pool::run(move || {
            let ctx = Ctx::<Data>::new(&filter.lut, Vars::new(values));
            let mut collected = Vec::new();
            for next in filter.id.run((ctx, dot)) {
                let value = next.map_err(|exception| match exception.get_err() {
                    // `error("text")` reads as the text; any other value as JSON.
                    Ok(error) => match from_val(&error.into_val()) {
                        Ok(Value::String(text)) => text,
                        Ok(other) => other.to_string(),
                        Err(deep) => format!("an error whose value: {deep}"),
                    },
                    Err(_) => "the program stopped without a value".to_owned(),
                })?;
                collected.push(from_val(&value)?);
                if !all {
                    break;
                }
            }
            Ok::<_, String>(collected)
        });
        let collected = evaluation
            .await
            .map_err(|e| format!("the jq program {e}"))??;
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

/// Compiles `code` with the global variables `vars` on this thread (one with a large stack).
fn compile_here(code: &str, vars: &[String]) -> Result<jaq_core::Filter<Data>, String> {
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
        .map_err(|errors| load_message(code, errors))?;
    Compiler::default()
        .with_funs(funs)
        .with_global_vars(vars.iter().map(String::as_str))
        .compile(modules)
        .map_err(|errors| {
            let undefined: Vec<String> = errors
                .into_iter()
                .flat_map(|(_, errors)| errors)
                .map(|(name, what)| format!("undefined {} {name}", what.as_str()))
                .collect();
            first_few(undefined, ", ")
        })
}

/// What a program produced, in order.
#[derive(Debug)]
pub(crate) struct Outputs(pub(crate) Vec<Value>);

fn load_message(code: &str, errors: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let at = |part: &str| {
        // jaq's errors point into `code`; its own `span` would underflow on one that did not.
        let offset = (part.as_ptr() as usize)
            .checked_sub(code.as_ptr() as usize)
            .filter(|offset| *offset <= code.len());
        match (offset, part.is_empty()) {
            (Some(offset), true) => format!("at the end (offset {offset})"),
            (Some(offset), false) => format!("at offset {offset}: {:?}", truncate(part, 20)),
            (None, _) => format!("at {:?}", truncate(part, 20)),
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
    format!("syntax error: {}", first_few(messages, "; "))
}

/// [`jaq_core::load::lex::Expect::as_str`] panics on a delimiter it does not know.
fn lex_expected(expected: &jaq_core::load::lex::Expect<&str>) -> String {
    use jaq_core::load::lex::Expect;
    match expected {
        Expect::Delim(d) if !["(", "[", "{", "\""].contains(d) => format!("a match for {d:?}"),
        other => other.as_str().to_owned(),
    }
}

/// The first three of `messages`, and how many more there are.
fn first_few(mut messages: Vec<String>, separator: &str) -> String {
    let more = messages.len().saturating_sub(3);
    messages.truncate(3);
    if more > 0 {
        messages.push(format!("(and {more} more)"));
    }
    messages.join(separator)
}

fn truncate(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn deep_programs_compile_and_run_and_deep_outputs_are_refused() {
        // Each of these overflowed a 2 MiB stack at a few hundred levels.
        for (open, close) in [("(", ")"), ("[", "]"), (".|", ""), ("1+", ""), ("-", "")] {
            let depth = (MAX_PROGRAM_BYTES - 3) / (open.len() + close.len());
            let code = format!("{}1{}|1", open.repeat(depth), close.repeat(depth));
            let program = JqProgram::compile(&code, &[], "cfg").unwrap();
            assert!(program.test(&json!({}), &[]).await.unwrap(), "{open}");
        }
        let code = "(".repeat(MAX_PROGRAM_BYTES + 1);
        let err = JqProgram::compile(&code, &[], "cfg").unwrap_err();
        assert!(
            err.message
                .starts_with("the jq program is 4097 bytes long; at most 4096"),
            "{err}"
        );
        // Many errors of an unbalanced program: the first few, and the program shortened.
        let code = "(".repeat(MAX_PROGRAM_BYTES);
        let err = JqProgram::compile(&code, &[], "cfg").unwrap_err();
        assert!(err.message.len() < 400, "{err}");
        assert!(err.message.ends_with("(and 4093 more) in jq program \"((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((...\" (variables: $request)"), "{err}");
        let deep = JqProgram::compile("reduce range(200) as $i (0; [.])", &[], "cfg").unwrap();
        let error = deep.test(&json!({}), &[]).await.unwrap_err();
        assert_eq!(error, "its output nests deeper than 128 levels");
    }

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
