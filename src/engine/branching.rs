//! Planning a pipeline's steps: the step tree (`if:`, `step.switch`, `onError:`), each step
//! built by its factory, the slot each output goes to, and what each step may read.
//!
//! What a step may read (in templates and jq): `request`, and the steps before it in its own
//! list and in the lists around it. A step nested in a switch is not readable outside its
//! branch; after the switch, the output it passed on is read by the switch's name. `onError:`
//! steps read the pipeline's top-level steps, `error`, and the `onError:` steps before them.
//! Step names are unique in the whole pipeline, nested and `onError:` steps included.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::Value;

use super::flow::{Node, NodeKind};
use super::pipeline::Slots;
use crate::config::{
    ConfigErrors, EnvLookup, PipelineSpec, StepSpec, decode_steps, place, unknown_name,
};
use crate::extension::jq::JqProgram;
use crate::extension::template::{TemplateLog, TemplateScope};
use crate::extension::{ModuleDirectory, StepBuild, decode_settings};
use crate::registry::Registry;

/// The step type the planner runs itself: its cases hold step entries of their own.
pub(crate) const SWITCH: &str = "step.switch";

/// The name `onError:` steps read the failure by.
const ERROR: &str = "error";

/// What planning a pipeline's steps needs from the engine's plan.
pub(super) struct StepsContext<'a> {
    pub(super) registry: &'a Registry,
    pub(super) plugin_names: &'a [String],
    /// The engine's modules, for steps that borrow one (`StepBuild::modules`).
    pub(super) modules: &'a ModuleDirectory<'a>,
    /// Where `${VAR}` values are read (`StepBuild::env`).
    pub(super) env: EnvLookup<'a>,
    /// The pipeline's fingerprint (`StepBuild::pipeline_fingerprint`).
    pub(super) pipeline_fingerprint: u64,
    /// True when a process plugin is configured (for the hint on unknown step types).
    pub(super) process_plugins: bool,
    /// Notes a type a plugin contributed: kind, type name and place.
    pub(super) note_use: &'a mut dyn FnMut(&'static str, &str, String),
    /// The step types the config uses.
    pub(super) used: &'a mut BTreeSet<String>,
    pub(super) errors: &'a mut ConfigErrors,
}

/// A pipeline's planned steps: the main list, the `onError:` list and their slots.
pub(super) struct PlannedSteps {
    pub(super) steps: (Vec<Node>, Vec<Node>),
    pub(super) slots: Slots,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchSettings {
    cases: Vec<CaseSettings>,
    #[serde(default)]
    default: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSettings {
    when: String,
    steps: Vec<Value>,
}

/// One pipeline's planning state.
struct Planner<'c, 'a> {
    cx: &'c mut StepsContext<'a>,
    pipeline: &'c PipelineSpec,
    /// By slot: each step's name, place, template references and whether its output is one
    /// of its references' (a switch).
    names: Vec<String>,
    places: Vec<String>,
    references: Vec<Vec<Option<usize>>>,
    alternatives: Vec<bool>,
    /// Each name's first place, and whether that is a top-level step of the main list.
    seen: HashMap<String, (String, bool)>,
}

/// Plans `spec`'s steps; `broken(on_error, i)` tells a top-level entry whose `config:` could
/// not be expanded (already reported).
pub(super) fn plan_steps(
    cx: &mut StepsContext<'_>,
    spec: &PipelineSpec,
    broken: impl Fn(bool, usize) -> bool,
) -> PlannedSteps {
    let at = place::key("pipelines", &spec.name);
    let mut planner = Planner {
        cx,
        pipeline: spec,
        names: Vec::new(),
        places: Vec::new(),
        references: Vec::new(),
        alternatives: Vec::new(),
        seen: HashMap::new(),
    };
    let mut readable = Vec::new();
    let steps_at = place::field(&at, "steps");
    let steps = planner.list(&spec.steps, &steps_at, &mut readable, &[], true, &|i| {
        broken(false, i)
    });
    let last = steps.last().map(|n| n.slot);
    let (mut on_error, mut last_on_error, mut error) = (Vec::new(), None, None);
    if !spec.on_error.is_empty() {
        let slot = planner.slot(ERROR, place::field(&at, "onError"), Vec::new(), false);
        readable.resize(slot, String::new());
        readable.push(ERROR.to_owned());
        error = Some(slot);
        let list_at = place::field(&at, "onError");
        on_error = planner.list(&spec.on_error, &list_at, &mut readable, &[], false, &|i| {
            broken(true, i)
        });
        last_on_error = on_error.last().map(|n| n.slot);
    }
    if let Some((i, why)) =
        super::amplification::check(&planner.names, &planner.references, &planner.alternatives)
    {
        planner.cx.errors.push(planner.places[i].clone(), why);
    }
    PlannedSteps {
        slots: Slots {
            count: planner.names.len(),
            last,
            last_on_error,
            error,
        },
        steps: (steps, on_error),
    }
}

impl Planner<'_, '_> {
    /// Takes the next slot for `name`.
    fn slot(&mut self, name: &str, at: String, refs: Vec<Option<usize>>, alt: bool) -> usize {
        self.names.push(name.to_owned());
        self.places.push(at);
        self.references.push(refs);
        self.alternatives.push(alt);
        self.names.len() - 1
    }

    /// Plans the entries of one list found at `list_at`. `readable[k]` names slot `k` when the
    /// list's steps may read it (else it is empty); each planned step becomes readable to the
    /// ones after it. `later` names the steps after the list, for errors; `top` is true for
    /// the pipeline's own `steps:`.
    fn list(
        &mut self,
        entries: &[StepSpec],
        list_at: &str,
        readable: &mut Vec<String>,
        later: &[String],
        top: bool,
        broken: &dyn Fn(usize) -> bool,
    ) -> Vec<Node> {
        let mut nodes = Vec::new();
        for (j, entry) in entries.iter().enumerate() {
            let step_at = place::named_item(list_at, j, Some(&entry.name));
            self.check_name(entry, &step_at, top);
            let mut after: Vec<String> = entries[j + 1..].iter().map(|e| e.name.clone()).collect();
            after.extend_from_slice(later);
            let condition = match &entry.condition {
                None => Ok(None),
                Some(code) => JqProgram::compile(code, readable, &place::field(&step_at, "if"))
                    .map(Some)
                    .map_err(|e| self.cx.errors.0.push(e)),
            };
            self.cx.used.insert(entry.type_name.clone());
            let planned = match entry.type_name.as_str() {
                SWITCH if broken(j) => None,
                SWITCH => self.switch(entry, &step_at, readable, &after),
                _ => self.step(entry, &step_at, readable, &after, broken(j)),
            };
            let slot = match &planned {
                Some((_, slot)) => *slot,
                None => self.slot(&entry.name, step_at, Vec::new(), false),
            };
            readable.resize(slot, String::new());
            readable.push(entry.name.clone());
            if let (Some((kind, slot)), Ok(condition)) = (planned, condition) {
                nodes.push(Node {
                    name: entry.name.clone(),
                    slot,
                    condition,
                    kind,
                });
            }
        }
        nodes
    }

    /// Reports a name used before in the pipeline (two top-level steps of the main list are
    /// reported by the config's own checks), or the reserved `error` beside `onError:`.
    fn check_name(&mut self, entry: &StepSpec, step_at: &str, top: bool) {
        let name_at = place::field(step_at, "name");
        if entry.name == ERROR && !self.pipeline.on_error.is_empty() {
            self.cx.errors.push(
                name_at.clone(),
                "the step name \"error\" is reserved in a pipeline with onError: (its steps read the failure by it); choose another name",
            );
        }
        let at = step_at.rsplit_once(" (name ").map_or(step_at, |(at, _)| at);
        match self.seen.get(&entry.name) {
            Some((_, true)) if top => {}
            Some((first, _)) => self.cx.errors.push(
                name_at,
                format!("duplicate step name {:?} (first used at {first}); step names are unique in the whole pipeline, nested and onError steps included", entry.name),
            ),
            None => {
                self.seen.insert(entry.name.clone(), (at.to_owned(), top));
            }
        }
    }

    /// Builds one step by its type's factory, reading `readable`; its node and slot. Of a
    /// `broken` entry only the type is checked.
    fn step(
        &mut self,
        entry: &StepSpec,
        step_at: &str,
        readable: &[String],
        later: &[String],
        broken: bool,
    ) -> Option<(NodeKind, usize)> {
        let registry = self.cx.registry;
        let Some(factory) = registry.step_factory(&entry.type_name) else {
            let mut message = unknown_name(
                "step type",
                &entry.type_name,
                "registered",
                registry.step_types(),
            );
            if self.cx.process_plugins {
                // A build never runs a plugin to ask what it offers.
                message.push_str("; a step type a process plugin offers must be declared in its config (stepTypes: [...])");
            }
            self.cx.errors.push(place::field(step_at, "type"), message);
            return None;
        };
        if broken {
            return None;
        }
        (self.cx.note_use)("step", &entry.type_name, step_at.to_owned());
        let config_at = place::field(step_at, "config");
        let log = TemplateLog::default();
        let slot = self.names.len();
        let mut earlier = readable.to_vec();
        earlier.resize(slot, String::new());
        let build = StepBuild {
            pipeline: &self.pipeline.name,
            name: &entry.name,
            type_name: &entry.type_name,
            config: &entry.config,
            place: &config_at,
            templates: TemplateScope {
                earlier_steps: &earlier,
                later_steps: later,
                log: Some(&log),
            },
            plugins: self.cx.plugin_names,
            modules: self.cx.modules,
            env: self.cx.env,
            pipeline_fingerprint: self.cx.pipeline_fingerprint,
        };
        let built = super::plan::guarded(&config_at, || factory.build(&build));
        let slot = self.slot(&entry.name, step_at.to_owned(), log.references(), false);
        match built {
            Ok(step) => Some((NodeKind::Step(step), slot)),
            Err(e) => {
                self.cx.errors.0.extend(e.0);
                None
            }
        }
    }

    /// Plans a `step.switch`: its cases' conditions and steps, then its own slot.
    fn switch(
        &mut self,
        entry: &StepSpec,
        step_at: &str,
        readable: &[String],
        later: &[String],
    ) -> Option<(NodeKind, usize)> {
        let config_at = place::field(step_at, "config");
        let settings: SwitchSettings = match decode_settings(&entry.config, &config_at) {
            Ok(settings) => settings,
            Err(e) => {
                self.cx.errors.0.extend(e.0);
                return None;
            }
        };
        let mut ok = true;
        let mut branch_slots = Vec::new();
        let mut branch = |planner: &mut Self, items: &[Value], at: String| {
            let entries = decode_steps(items, &at, planner.cx.errors);
            let mut inner = readable.to_vec();
            let nodes = planner.list(&entries, &at, &mut inner, later, false, &|_| false);
            ok &= nodes.len() == items.len();
            branch_slots.extend(nodes.iter().map(|n| Some(n.slot)));
            nodes
        };
        let cases_at = place::field(&config_at, "cases");
        let mut cases = Vec::with_capacity(settings.cases.len());
        for (i, case) in settings.cases.iter().enumerate() {
            let case_at = place::index(&cases_at, i);
            let when = JqProgram::compile(&case.when, readable, &place::field(&case_at, "when"));
            let steps = branch(self, &case.steps, place::field(&case_at, "steps"));
            match when {
                Ok(when) => cases.push((when, steps)),
                Err(e) => self.cx.errors.0.push(e),
            }
        }
        let default = branch(self, &settings.default, place::field(&config_at, "default"));
        let slot = self.slot(&entry.name, step_at.to_owned(), branch_slots, true);
        (ok && cases.len() == settings.cases.len())
            .then_some((NodeKind::Switch { cases, default }, slot))
    }
}
