//! `step.validate {schema, target}`: checks a part of the request against a JSON Schema
//! (draft 2020-12) compiled at build. A request that fails is answered 400 with every failing
//! place (its JSON pointer) and why, and the pipeline stops there.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{ConfigError, ConfigErrors, place};
use crate::extension::template::Template;
use crate::extension::{Step, StepBuild, StepContext, StepError};

/// The most failures one answer lists: a body with thousands of bad items gets the first ones.
pub(super) const MAX_ERRORS: usize = 100;

struct Validate {
    validator: jsonschema::Validator,
    target: Target,
    /// `{{ request.<target> }}`: the output, rendered (and charged to the run's budget).
    output: Template,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    schema: Value,
    #[serde(default)]
    target: Target,
}

/// The part of the request the schema describes.
#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum Target {
    #[default]
    Body,
    Query,
    Headers,
    Params,
}

impl Target {
    fn field(self) -> &'static str {
        match self {
            Target::Body => "body",
            Target::Query => "query",
            Target::Headers => "headers",
            Target::Params => "params",
        }
    }
}

pub(super) fn build(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    let settings: Settings = build.settings()?;
    let schema_at = place::field(build.place, "schema");
    if !settings.schema.is_object() {
        return Err(ConfigError::new(
            schema_at,
            format!(
                "the schema is {}; expected a mapping (a JSON Schema, draft 2020-12, such as {{type: object, required: [name]}})",
                crate::config::kind_of(&settings.schema)
            ),
        )
        .into());
    }
    // Without the crate's HTTP and file resolving, a `$ref` outside the schema is refused here
    // rather than fetched.
    let validator = jsonschema::draft202012::new(&settings.schema).map_err(|error| {
        let pointer = error.instance_path().as_str();
        let within = if pointer.is_empty() {
            String::new()
        } else {
            format!(" at {pointer}")
        };
        ConfigError::new(
            schema_at.clone(),
            format!("not a valid JSON Schema (draft 2020-12){within}: {error}"),
        )
    })?;
    let path = format!("{{{{ request.{} }}}}", settings.target.field());
    Ok(Box::new(Validate {
        validator,
        target: settings.target,
        output: build.template("target", &Value::String(path))?,
    }))
}

impl Step for Validate {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        let instance = context
            .request
            .get(self.target.field())
            .unwrap_or(&Value::Null);
        // Messages leave the value out ("value is not of type ..."): the pointer says where it
        // is, and an answer stays small whatever the request held.
        let errors: Vec<Value> = self
            .validator
            .iter_errors(instance)
            .take(MAX_ERRORS)
            .map(|error| {
                json!({
                    "pointer": error.instance_path().as_str(),
                    "message": error.masked().to_string(),
                })
            })
            .collect();
        let result = if errors.is_empty() {
            self.output
                .try_render(&context.scope())
                .map_err(StepError::from)
        } else {
            tracing::debug!(
                pipeline = context.pipeline,
                step = context.step,
                failures = errors.len(),
                "request refused by step.validate"
            );
            Err(StepError::respond(
                400,
                [],
                json!({"error": "validation failed", "errors": errors}),
            ))
        };
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(schema: Value) -> jsonschema::Validator {
        jsonschema::draft202012::new(&schema).unwrap()
    }

    #[test]
    fn every_failure_is_listed_with_its_pointer_and_no_value() {
        let validator = compile(json!({
            "type": "object",
            "required": ["name"],
            "properties": {"age": {"type": "integer", "minimum": 0}, "tags": {"items": {"type": "string"}}}
        }));
        let failures: Vec<(String, String)> = validator
            .iter_errors(&json!({"age": -1, "tags": ["a", 7]}))
            .map(|e| {
                (
                    e.instance_path().as_str().to_owned(),
                    e.masked().to_string(),
                )
            })
            .collect();
        let pointers: Vec<&str> = failures.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(pointers, ["", "/age", "/tags/1"], "{failures:?}");
        assert!(failures[0].1.contains("\"name\""), "{failures:?}");
        assert!(!failures[1].1.contains("-1"), "{failures:?}");
    }

    #[test]
    fn format_is_an_annotation_as_the_draft_says() {
        let validator = compile(json!({"type": "string", "format": "email"}));
        assert!(validator.is_valid(&json!("not an address")));
    }

    #[test]
    fn an_external_ref_is_refused_at_compile_not_fetched() {
        let compiled = jsonschema::draft202012::new(&json!({"$ref": "https://example.com/s.json"}));
        let Err(error) = compiled else {
            panic!("an unresolvable $ref compiled");
        };
        assert!(error.to_string().contains("example.com"), "{error}");
    }
}
