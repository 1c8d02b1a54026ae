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
//!
//! This file is the compiled tree and its rendering; `compile` turns a config into one (and
//! holds the [`TemplateScope`] and [`TemplateLog`] it checks against), and `budget` is the
//! [`RenderBudget`] rendering charges.

mod budget;
mod compile;

use serde_json::{Map, Value};

pub use budget::{RenderBudget, RenderBudgetExceeded};
pub use compile::{TemplateLog, TemplateScope};

use budget::charged_clone;

/// The values a template renders against.
#[derive(Debug)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use serde_json::json;

    pub(super) fn compile(value: Value, earlier: &[&str]) -> Result<Template, ConfigError> {
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

    pub(super) fn render(t: &Template, request: Value, outputs: &[Value]) -> Value {
        t.render(&RenderScope {
            request: &request,
            outputs,
            budget: &RenderBudget::new(RenderBudget::DEFAULT_LIMIT),
        })
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
}
