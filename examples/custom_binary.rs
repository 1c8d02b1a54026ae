//! A swapvisor binary of your own: the whole command line (`run` with `--watch`, SIGHUP and the
//! admin API; `validate`; `types`; the admin client) with one step type of its own,
//! `shout.upper`, which renders a template and upper-cases it.
//!
//! cargo run --example custom_binary -- run examples/custom.yaml

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use swapvisor::Registry;
use swapvisor::config::ConfigErrors;
use swapvisor::extension::template::Template;
use swapvisor::extension::{Step, StepBuild, StepContext, StepError};

/// `shout.upper {text}`: `{"text": "<the rendered text, upper-cased>"}`.
struct Upper {
    text: Template,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    text: String,
}

fn build_upper(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    let settings: Settings = build.settings()?;
    Ok(Box::new(Upper {
        text: build.template("text", &Value::String(settings.text))?,
    }))
}

impl Step for Upper {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        let text = self.text.render_string(&context.scope()).to_uppercase();
        Box::pin(std::future::ready(Ok(json!({ "text": text }))))
    }
}

fn main() -> std::process::ExitCode {
    let mut registry = Registry::with_builtins();
    // `contributing` names who registered the type in `types` and in config errors.
    if let Err(error) = registry.contributing("custom_binary", |r| {
        r.register_step("shout.upper", build_upper)
    }) {
        eprintln!("cannot register shout.upper: {error}");
        return std::process::ExitCode::from(2);
    }
    swapvisor::cli::main(registry)
}
