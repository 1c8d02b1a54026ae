//! Steps: the units of work a pipeline runs in order.
//!
//! A step type is a [`StepFactory`]. Its factory compiles the step's `{{ templates }}` at build
//! (see [`StepBuild::template`]) so that a request only renders them.

use futures::future::BoxFuture;
use serde_json::Value;

use super::error::StepError;
use super::exchange::HttpExchange;
use super::module::ModuleDirectory;
use super::services::Services;
use super::template::{RenderBudget, RenderScope, Template, TemplateScope};
use super::transaction::RunTransaction;
use crate::config::{ConfigErrors, EnvLookup, place};

/// One step of a pipeline.
pub trait Step: Send + Sync + 'static {
    /// Runs the step. Its output is stored under the step's name for later steps.
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>>;

    /// True for steps whose output is the pipeline's HTTP response (`step.json_response`):
    /// an output of the shape `{"status": 200, "headers": {...}, "body": ...}`.
    fn is_response(&self) -> bool {
        false
    }

    /// True for steps that stream the request body elsewhere (`step.proxy`): a pipeline
    /// holding one does not read the body into `request.body` (it stays null) and lends it to
    /// the step through [`StepContext::http`] instead.
    fn takes_body(&self) -> bool {
        false
    }
}

/// What a step sees while it runs.
pub struct StepContext<'a> {
    /// The pipeline's name.
    pub pipeline: &'a str,
    /// The step's name.
    pub step: &'a str,
    /// The pipeline's input (`request` in templates).
    pub request: &'a Value,
    /// The outputs of the steps that ran before this one, in order.
    pub outputs: &'a [Value],
    /// Runtime services.
    pub services: &'a Services,
    /// What this run of the pipeline may still render (`maxRenderBytes`).
    pub budget: &'a RenderBudget,
    /// The HTTP exchange the run serves: none for a run that no HTTP request started
    /// (`execute`, a schedule).
    pub http: Option<&'a HttpExchange>,
    /// The run's transaction, when its pipeline names one (`transaction:`): a step that works
    /// on [`RunTransaction::module`] does its work inside it.
    pub transaction: Option<&'a RunTransaction>,
}

impl std::fmt::Debug for StepContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext")
            .field("pipeline", &self.pipeline)
            .field("step", &self.step)
            .field("outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

impl StepContext<'_> {
    /// The scope templates render against.
    pub fn scope(&self) -> RenderScope<'_> {
        RenderScope {
            request: self.request,
            outputs: self.outputs,
            budget: self.budget,
        }
    }
}

/// What a factory gets to build one step.
pub struct StepBuild<'a> {
    /// The pipeline the step belongs to.
    pub pipeline: &'a str,
    /// The step's name.
    pub name: &'a str,
    /// A digest of the whole pipeline's spec (trigger, steps, limits): equal in two builds
    /// exactly when the pipeline is unchanged (barring a collision), so that a step can tell
    /// a reload that kept its route from one that changed it.
    pub pipeline_fingerprint: u64,
    /// The step's type, as registered.
    pub type_name: &'a str,
    /// What the step's templates may refer to.
    pub templates: TemplateScope<'a>,
    /// The names of the plugin instances the config declares.
    pub plugins: &'a [String],
    /// The engine's modules, for a step that uses one (an upstream, a store): see
    /// [`ModuleDirectory::lend`].
    pub modules: &'a ModuleDirectory<'a>,
    /// The entry's `config:`, with `${VAR}` already expanded.
    pub config: &'a serde_json::Value,
    /// The place of `config` in the document, for errors.
    pub place: &'a str,
    /// Where the engine reads `${VAR}` values (the runtime's environment), for a setting that
    /// names a variable to read at build, such as `step.jwt`'s `secretEnv`.
    pub env: EnvLookup<'a>,
}

impl std::fmt::Debug for StepBuild<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment is a closure: named, not shown.
        f.debug_struct("StepBuild")
            .field("pipeline", &self.pipeline)
            .field("name", &self.name)
            .field("type_name", &self.type_name)
            .field("templates", &self.templates)
            .field("plugins", &self.plugins)
            .field("config", &self.config)
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

/// Builds steps of one type. Closures `Fn(&StepBuild) -> Result<Box<dyn Step>, _>` are
/// factories.
pub trait StepFactory: Send + Sync + 'static {
    /// Builds what `build` describes, or explains with places what is wrong with its
    /// config. No outside effects.
    fn build(&self, build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors>;
}

super::settings::factory_impls!(StepBuild, StepFactory, Box<dyn Step>);

impl StepBuild<'_> {
    /// Compiles the templates in `value`, found at `field` under this step's config.
    pub fn template(&self, field: &str, value: &Value) -> Result<Template, ConfigErrors> {
        Template::compile(value, &place::field(self.place, field), &self.templates)
            .map_err(Into::into)
    }
}
