//! Compiling a step's config into a [`Template`]: each `{{ path }}` parsed and checked against
//! what the step may refer to, and noted for the engine's bound on what a chain renders.

use std::sync::Mutex;

use serde_json::Value;

use super::{Path, Root, Segment, Template};
use crate::config::{ConfigError, place, unknown_name};

/// What templates may refer to: `request` and the steps before the current one.
#[derive(Debug)]
pub struct TemplateScope<'a> {
    /// Names of the steps that run before the one being compiled, by their position in the
    /// run's outputs (`RenderScope::outputs`); an empty name marks a position it may not read
    /// (a step nested in an earlier `step.switch`).
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
        // An empty name marks an output this step may not read (a step nested in a switch).
        let roots = std::iter::once("request").chain(
            scope
                .earlier_steps
                .iter()
                .map(String::as_str)
                .filter(|s| !s.is_empty()),
        );
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
    use serde_json::json;

    use super::super::tests::compile;
    use super::*;

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
