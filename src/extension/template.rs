//! `{{ path }}` templates in step configs, compiled once at build and rendered per request.
//!
//! A path starts at a *root*: `request` (the pipeline's input; for an http trigger its method,
//! path, query, headers, params and body) or the name of an earlier step (its output). The rest
//! of the path walks mappings by key and lists by index: `request.query.name`,
//! `lookup.items.0.id` or `lookup.items[0].id`.
//!
//! A string that is exactly one `{{ path }}` renders to the value found there, with its JSON
//! type kept (a number stays a number). A string with text around a template renders to text;
//! values that are not strings are written as JSON. A path that leads nowhere renders as null,
//! or as nothing inside text, so `hello {{ request.query.name }}` without a name is `hello `.
//!
//! References are checked at build: a misspelled step name or a step that runs later is a
//! config error with its place, not a surprise at request time.
//!
//! What templates produce is bounded twice. At build, each reference is noted in a
//! [`TemplateLog`], from which the engine computes how many times the request's size (or an
//! opaque step output's) a step's output can be at most, and refuses a chain whose factor
//! passes a limit, naming its steps: 40 steps that each write the previous output twice pass
//! a validate otherwise, and one request would then render 2^40 bytes. At request time every
//! rendered byte is charged to the run's [`RenderBudget`] *before* it is produced; past the
//! budget rendering stops, so memory stays bounded whatever the config does, and the request
//! fails (an HTTP request answers 500) while the process serves on.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Map, Value};

use crate::config::{ConfigError, place, unknown_name};

/// What templates may refer to: `request` and the steps before the current one.
pub struct TemplateScope<'a> {
    /// Names of the steps that run before the one being compiled, in order.
    pub earlier_steps: &'a [String],
    /// Names of the pipeline's later steps, only to explain a reference to one of them.
    pub later_steps: &'a [String],
    /// Where the engine notes every reference compiled, to bound what a chain of steps can
    /// render; `None` outside an engine build.
    pub log: Option<&'a TemplateLog>,
}

/// The references the templates of one step compiled, noted for the engine's static bound.
#[derive(Debug, Default)]
pub struct TemplateLog {
    /// One entry per `{{ path }}`: `None` for `request`, else the earlier step's position.
    references: Mutex<Vec<Option<usize>>>,
}

impl TemplateLog {
    fn note(&self, root: Root) {
        let root = match root {
            Root::Request => None,
            Root::Step(i) => Some(i),
        };
        self.references
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(root);
    }

    /// Every reference noted, in order: `None` for `request`, else an earlier step's position.
    pub fn references(&self) -> Vec<Option<usize>> {
        self.references
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// How many bytes one run of a pipeline may render across all its steps' templates
/// (`maxRenderBytes`).
///
/// Rendering charges each value before producing it. Once a charge would pass the limit the
/// budget is *exceeded*: [`Template::render`] renders null from then on and
/// [`Template::try_render`] fails, and the pipeline ends the run with an error.
#[derive(Debug)]
pub struct RenderBudget {
    limit: usize,
    used: AtomicUsize,
    exceeded: AtomicBool,
}

impl RenderBudget {
    /// The default `maxRenderBytes`: 16 MiB.
    pub const DEFAULT_LIMIT: usize = 16 * 1024 * 1024;

    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            exceeded: AtomicBool::new(false),
        }
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The bytes rendered so far (an approximation of their JSON size).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether a render was refused for passing the limit.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// `Ok` while nothing has been refused; the error once a render passed the limit.
    pub fn check(&self) -> Result<(), RenderBudgetExceeded> {
        match self.exceeded() {
            false => Ok(()),
            true => Err(RenderBudgetExceeded { limit: self.limit }),
        }
    }

    /// What is left, or `None` once exceeded.
    fn remaining(&self) -> Option<usize> {
        if self.exceeded() {
            return None;
        }
        Some(self.limit.saturating_sub(self.used()))
    }

    /// Takes `bytes` from the budget; `false` (and exceeded) when they do not fit.
    fn charge(&self, bytes: usize) -> bool {
        let fits = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let after = used.checked_add(bytes)?;
                (after <= self.limit).then_some(after)
            })
            .is_ok();
        if !fits {
            self.exceeded.store(true, Ordering::Relaxed);
        }
        fits
    }

    /// The JSON size of `value` when it fits what is left (walking it no further); else
    /// `None`, and exceeded.
    fn fitting_weight(&self, value: &Value) -> Option<usize> {
        let weight = self.remaining().and_then(|left| weight(value, left));
        if weight.is_none() {
            self.exceeded.store(true, Ordering::Relaxed);
        }
        weight
    }

    /// Charges the JSON size of `value`.
    fn charge_value(&self, value: &Value) -> bool {
        self.fitting_weight(value)
            .is_some_and(|bytes| self.charge(bytes))
    }
}

/// A copy of `value` when its size fits the budget, else null.
fn charged_clone(budget: &RenderBudget, value: &Value) -> Value {
    if budget.charge_value(value) {
        value.clone()
    } else {
        Value::Null
    }
}

/// About the size of `value` as JSON, or `None` as soon as it passes `cap`.
fn weight(value: &Value, cap: usize) -> Option<usize> {
    let mut total = 0usize;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        total += match value {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 24,
            Value::String(s) => s.len() + 2,
            Value::Array(items) => {
                stack.extend(items);
                2 + items.len()
            }
            Value::Object(map) => {
                stack.extend(map.values());
                2 + map.keys().map(|k| k.len() + 4).sum::<usize>()
            }
        };
        if total > cap {
            return None;
        }
    }
    Some(total)
}

/// A render that passed its run's [`RenderBudget`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "its templates would render more than the pipeline's maxRenderBytes ({limit} bytes) for this run"
)]
pub struct RenderBudgetExceeded {
    /// The budget's limit, in bytes.
    pub limit: usize,
}

/// The values a template renders against.
pub struct RenderScope<'a> {
    /// The pipeline's input.
    pub request: &'a Value,
    /// Outputs of the steps that have run, by position.
    pub outputs: &'a [Value],
    /// What the run may still render.
    pub budget: &'a RenderBudget,
}

/// A compiled template tree: literals are kept as they are, templates are pre-parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// A value without templates, rendered as-is.
    Literal(Value),
    /// A string that is exactly one `{{ path }}`: renders to the value at the path.
    Whole(Path),
    /// A string mixing text and `{{ path }}`s.
    Text(Vec<Segment>),
    /// A list holding templates.
    List(Vec<Template>),
    /// A mapping holding templates.
    Mapping(Vec<(String, Template)>),
}

/// A piece of a [`Template::Text`].
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// Plain text.
    Text(String),
    /// A `{{ path }}` to substitute.
    Ref(Path),
}

/// A checked reference: a root and the keys or indices below it.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    root: Root,
    steps: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Root {
    Request,
    Step(usize),
}

impl Template {
    /// Compiles `value`, reporting the first problem with its place under `at`.
    pub fn compile(
        value: &Value,
        at: &str,
        scope: &TemplateScope<'_>,
    ) -> Result<Template, ConfigError> {
        Ok(match value {
            Value::String(s) => compile_string(s, at, scope)?,
            Value::Array(items) => {
                let compiled = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Template::compile(item, &place::index(at, i), scope))
                    .collect::<Result<Vec<_>, _>>()?;
                if compiled.iter().all(|t| matches!(t, Template::Literal(_))) {
                    Template::Literal(value.clone())
                } else {
                    Template::List(compiled)
                }
            }
            Value::Object(map) => {
                let compiled = map
                    .iter()
                    .map(|(key, item)| {
                        Template::compile(item, &place::key(at, key), scope)
                            .map(|t| (key.clone(), t))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if compiled
                    .iter()
                    .all(|(_, t)| matches!(t, Template::Literal(_)))
                {
                    Template::Literal(value.clone())
                } else {
                    Template::Mapping(compiled)
                }
            }
            other => Template::Literal(other.clone()),
        })
    }

    /// Renders against `scope`, charging its budget; renders null once the budget is
    /// exceeded (see [`Template::try_render`]).
    pub fn render(&self, scope: &RenderScope<'_>) -> Value {
        let budget = scope.budget;
        if budget.exceeded() {
            return Value::Null;
        }
        match self {
            Template::Literal(value) => charged_clone(budget, value),
            Template::Whole(path) => {
                charged_clone(budget, path.lookup(scope).unwrap_or(&Value::Null))
            }
            Template::Text(segments) => {
                let mut out = String::new();
                for segment in segments {
                    let piece = match segment {
                        Segment::Text(text) => std::borrow::Cow::Borrowed(text.as_str()),
                        Segment::Ref(path) => match path.lookup(scope) {
                            None | Some(Value::Null) => continue,
                            Some(Value::String(s)) => std::borrow::Cow::Borrowed(s.as_str()),
                            // Written as JSON, and charged below for what that writes: the
                            // weight only keeps a value past the budget from being written.
                            Some(other) => match budget.fitting_weight(other) {
                                Some(_) => std::borrow::Cow::Owned(other.to_string()),
                                None => return Value::Null,
                            },
                        },
                    };
                    if !budget.charge(piece.len()) {
                        return Value::Null;
                    }
                    out.push_str(&piece);
                }
                Value::String(out)
            }
            Template::List(items) => Value::Array(items.iter().map(|t| t.render(scope)).collect()),
            Template::Mapping(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(key, t)| (key.clone(), t.render(scope)))
                    .collect::<Map<_, _>>(),
            ),
        }
    }

    /// Renders against `scope`, or fails once the run's budget is exceeded.
    pub fn try_render(&self, scope: &RenderScope<'_>) -> Result<Value, RenderBudgetExceeded> {
        let value = self.render(scope);
        scope.budget.check().map(|()| value)
    }

    /// Renders to a string: strings as they are, anything else as JSON text.
    pub fn render_string(&self, scope: &RenderScope<'_>) -> String {
        match self.render(scope) {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
}

impl Path {
    fn lookup<'v>(&self, scope: &RenderScope<'v>) -> Option<&'v Value> {
        let mut current = match self.root {
            Root::Request => scope.request,
            Root::Step(i) => scope.outputs.get(i)?,
        };
        for key in &self.steps {
            current = match current {
                Value::Object(map) => map.get(key)?,
                Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(current)
    }
}

fn compile_string(
    text: &str,
    at: &str,
    scope: &TemplateScope<'_>,
) -> Result<Template, ConfigError> {
    if !text.contains("{{") {
        return Ok(Template::Literal(Value::String(text.to_owned())));
    }
    let mut segments = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            segments.push(Segment::Text(rest[..open].to_owned()));
        }
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(ConfigError::new(
                at,
                format!("unterminated \"{{{{\" in template {text:?} (close it with \"}}}}\")"),
            ));
        };
        segments.push(Segment::Ref(compile_path(
            after[..close].trim(),
            at,
            scope,
        )?));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Text(rest.to_owned()));
    }
    Ok(match segments.as_slice() {
        [Segment::Ref(path)] => Template::Whole(path.clone()),
        _ => Template::Text(segments),
    })
}

fn compile_path(
    expression: &str,
    at: &str,
    scope: &TemplateScope<'_>,
) -> Result<Path, ConfigError> {
    let mut parts = Vec::new();
    for dotted in expression.split('.') {
        // `items[0][1]` is `items`, `0`, `1`.
        let mut piece = dotted;
        let head_end = piece.find('[').unwrap_or(piece.len());
        parts.push(piece[..head_end].to_owned());
        piece = &piece[head_end..];
        while let Some(inner) = piece.strip_prefix('[') {
            let Some(close) = inner.find(']') else {
                return Err(ConfigError::new(
                    at,
                    format!("unclosed \"[\" in template path {expression:?}"),
                ));
            };
            parts.push(inner[..close].trim().to_owned());
            piece = &inner[close + 1..];
        }
        if !piece.is_empty() {
            return Err(ConfigError::new(
                at,
                format!("unexpected {piece:?} in template path {expression:?}"),
            ));
        }
    }
    if parts.iter().any(String::is_empty) {
        return Err(ConfigError::new(
            at,
            format!(
                "empty name in template path {expression:?} (write {{{{ request.query.name }}}} or {{{{ step.field }}}})"
            ),
        ));
    }
    let root_name = parts.remove(0);
    let root = if root_name == "request" {
        Root::Request
    } else if let Some(i) = scope.earlier_steps.iter().position(|s| *s == root_name) {
        Root::Step(i)
    } else if scope.later_steps.contains(&root_name) {
        return Err(ConfigError::new(
            at,
            format!(
                "template refers to step {root_name:?}, which runs after this one; only request and earlier steps can be used"
            ),
        ));
    } else {
        let roots =
            std::iter::once("request").chain(scope.earlier_steps.iter().map(String::as_str));
        return Err(ConfigError::new(
            at,
            unknown_name("template reference", &root_name, "available", roots),
        ));
    };
    if let Some(log) = scope.log {
        log.note(root);
    }
    Ok(Path { root, steps: parts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(value: Value, earlier: &[&str]) -> Result<Template, ConfigError> {
        let earlier: Vec<String> = earlier.iter().map(|s| (*s).to_owned()).collect();
        let later = vec!["after".to_owned()];
        Template::compile(
            &value,
            "cfg",
            &TemplateScope {
                earlier_steps: &earlier,
                later_steps: &later,
                log: None,
            },
        )
    }

    fn render(t: &Template, request: Value, outputs: &[Value]) -> Value {
        t.render(&RenderScope {
            request: &request,
            outputs,
            budget: &RenderBudget::new(RenderBudget::DEFAULT_LIMIT),
        })
    }

    #[test]
    fn rendering_stops_at_the_budget_before_producing_the_value() {
        let t = compile(json!({"a": "{{ request.s }}{{ request.s }}"}), &[]).unwrap();
        let request = json!({"s": "x".repeat(1000)});
        let roomy = RenderBudget::new(4096);
        let scope = RenderScope {
            request: &request,
            outputs: &[],
            budget: &roomy,
        };
        assert_eq!(
            t.try_render(&scope).unwrap()["a"].as_str().unwrap().len(),
            2000
        );
        assert_eq!(roomy.used(), 2000);
        let tight = RenderBudget::new(1500);
        let scope = RenderScope {
            request: &request,
            outputs: &[],
            budget: &tight,
        };
        assert_eq!(
            t.try_render(&scope),
            Err(RenderBudgetExceeded { limit: 1500 })
        );
        assert!(tight.exceeded());
        assert!(
            tight.used() <= 1500,
            "charged {} past the limit",
            tight.used()
        );
        // Once exceeded, every later render of the run is null.
        assert_eq!(t.render(&scope), Value::Null);
    }

    #[test]
    fn the_log_notes_each_reference() {
        let earlier = vec!["a".to_owned(), "b".to_owned()];
        let log = TemplateLog::default();
        Template::compile(
            &json!({"x": "{{ b.x }}{{ b.x }}", "y": "{{ request.q }}", "z": "{{ a }}"}),
            "cfg",
            &TemplateScope {
                earlier_steps: &earlier,
                later_steps: &[],
                log: Some(&log),
            },
        )
        .unwrap();
        let mut refs = log.references();
        refs.sort();
        assert_eq!(refs, vec![None, Some(0), Some(1), Some(1)]);
    }

    #[test]
    fn whole_templates_keep_the_json_type() {
        let t = compile(
            json!({"n": "{{ calc.n }}", "list": "{{request.items}}"}),
            &["calc"],
        )
        .unwrap();
        let out = render(&t, json!({"items": [1, 2]}), &[json!({"n": 42})]);
        assert_eq!(out, json!({"n": 42, "list": [1, 2]}));
    }

    #[test]
    fn text_templates_interpolate_and_missing_is_empty() {
        let t = compile(json!("hello {{ request.query.name }}!"), &[]).unwrap();
        assert_eq!(
            render(&t, json!({"query": {"name": "ada"}}), &[]),
            json!("hello ada!")
        );
        assert_eq!(render(&t, json!({"query": {}}), &[]), json!("hello !"));
        let whole = compile(json!("{{ request.nope }}"), &[]).unwrap();
        assert_eq!(render(&whole, json!({}), &[]), Value::Null);
    }

    #[test]
    fn indexes_walk_lists() {
        let t = compile(json!("{{ s.items[1].id }}/{{ s.items.0.id }}"), &["s"]).unwrap();
        let out = render(
            &t,
            json!({}),
            &[json!({"items": [{"id": "a"}, {"id": "b"}]})],
        );
        assert_eq!(out, json!("b/a"));
    }

    #[test]
    fn literals_stay_literal() {
        assert_eq!(
            compile(json!({"a": [1, "x"]}), &[]).unwrap(),
            Template::Literal(json!({"a": [1, "x"]}))
        );
    }

    #[test]
    fn bad_references_are_config_errors() {
        let err = compile(json!({"m": "{{ gret.message }}"}), &["greet"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cfg.m: unknown template reference "gret" (did you mean "greet"?; available: request, greet)"#
        );
        let err = compile(json!("{{ after.x }}"), &[]).unwrap_err();
        assert!(err.message.contains("runs after this one"), "{err}");
        let err = compile(json!("{{ request.x"), &[]).unwrap_err();
        assert!(err.message.contains("unterminated"), "{err}");
        let err = compile(json!("{{ }}"), &[]).unwrap_err();
        assert!(err.message.contains("empty name"), "{err}");
    }
}
