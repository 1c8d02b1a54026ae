//! `step.transform {program, input, all}`: a jq program's output, and the `step.switch` entry
//! in the registry (the engine plans and runs switches itself, since their cases hold steps).

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;

use crate::config::{ConfigError, ConfigErrors, place};
use crate::extension::jq::{JqProgram, to_val};
use crate::extension::template::Template;
use crate::extension::{Step, StepBuild, StepContext, StepError};
use crate::registry::{Registry, RegistryError};

pub(super) fn register(registry: &mut Registry) -> Result<(), RegistryError> {
    registry.register_step("step.transform", build_transform)?;
    registry.register_step(crate::engine::SWITCH, build_switch)
}

/// Never called by the engine, which plans `step.switch` entries before it looks for a
/// factory: registered so that `swapvisor types` and the list of step types show it.
fn build_switch(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    Err(ConfigError::new(
        build.place,
        "step.switch is planned by the engine, not built by a factory",
    )
    .into())
}

/// `step.transform`: runs `program` on `input` (default: the input object `if:` sees).
struct Transform {
    program: JqProgram,
    input: Option<Template>,
    all: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransformSettings {
    program: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    all: bool,
}

fn build_transform(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    let settings: TransformSettings = build.settings()?;
    let program = JqProgram::compile(
        &settings.program,
        build.templates.earlier_steps,
        &place::field(build.place, "program"),
    )?;
    let input = match &settings.input {
        Some(input) => Some(build.template("input", input)?),
        None => None,
    };
    Ok(Box::new(Transform {
        program,
        input,
        all: settings.all,
    }))
}

impl Step for Transform {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(async move {
            let object = self.program.input(context.request, context.outputs);
            let dot = match &self.input {
                Some(input) => to_val(&input.try_render(&context.scope())?),
                None => object.clone(),
            };
            let mut outputs = self
                .program
                .run(&object, dot, self.all)
                .await
                .map_err(|e| StepError::new(format!("jq: {e}")))?
                .0;
            let output = match self.all {
                true => Value::Array(outputs),
                false => outputs.drain(..).next().unwrap_or(Value::Null),
            };
            context.budget.charge_output(&output)?;
            Ok(output)
        })
    }
}
