//! Plugin state across processes: what a binary upgrade takes from the old process's
//! instances ([`PluginHost::export_all`]) and hands to the new process's
//! ([`PluginHost::import_all`]).
//!
//! Both go through the paths a reload uses, so that every plugin hands its state over, not
//! only those that checkpoint: the export is each running instance's `export_state` (or, for
//! an instance that crashed, its latest checkpoint), and the import is `migrate`, which decides
//! what it accepts. An instance that refuses keeps what it had; nothing is rolled back.

use std::time::Duration;

use serde::Serialize;
use swapvisor_actors::Unit;
use tokio::time::Instant;

use super::checkpoint::{Checkpoint, ImportCause};
use super::host::PluginHost;

/// What [`PluginHost::import_all`] did with one instance's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImportReport {
    /// The instance.
    pub(crate) instance: String,
    /// The checkpoint's sequence number, as the old process numbered it.
    pub(crate) sequence: u64,
    /// Imported, or why not.
    pub(crate) outcome: Result<(), String>,
}

impl PluginHost {
    /// Every running instance's current state, through its own export (`export_state`, a
    /// process plugin's `state/export`), in start order, taken within `timeout` together. An
    /// instance that has crashed gives its latest checkpoint; one with nothing to give (or
    /// whose export fails, which is logged) is left out. Take it once the process no longer
    /// serves calls: a call answered after an instance's export is not in it.
    pub(crate) async fn export_all(&self, timeout: Duration) -> Vec<(String, Checkpoint)> {
        let deadline = Instant::now() + timeout;
        let exports = self.slots_in_order().into_iter().map(|slot| async move {
            let name = slot.name().to_owned();
            let instance = slot.slot().current()?;
            match instance.export_state(deadline).await {
                Ok(Some(mut checkpoint)) => {
                    // It crosses to another process as a checkpoint: offered, not insisted on.
                    checkpoint.exported = false;
                    Some((name, checkpoint))
                }
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(plugin = %name, %error, "the plugin's state is not handed to the new process");
                    None
                }
            }
        });
        futures::future::join_all(exports)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Hands each checkpoint to the running instance of its name through `migrate`, within
    /// `timeout` together: only to an instance of the kind that took it, and `migrate`
    /// decides the rest. One report per checkpoint, in the order given. An import taken
    /// becomes the instance's latest checkpoint when the plugin takes checkpoints; a refusal
    /// is logged, counted in its status, and leaves the instance as it was. Call it before
    /// the new process serves calls.
    pub(crate) async fn import_all(
        &self,
        checkpoints: Vec<(String, Checkpoint)>,
        timeout: Duration,
    ) -> Vec<ImportReport> {
        let deadline = Instant::now() + timeout;
        let slots = self.slots_in_order();
        let imports = checkpoints.into_iter().map(|(name, checkpoint)| {
            let slot = slots.iter().find(|slot| slot.name() == name).cloned();
            async move {
                let sequence = checkpoint.sequence;
                let instance = slot.as_ref().and_then(|slot| slot.slot().current());
                let outcome = match (&slot, instance) {
                    (Some(slot), Some(instance)) => {
                        let kind = &instance.unit_spec().spec.kind;
                        if *kind != checkpoint.kind {
                            let why = format!(
                                "the checkpoint was taken by plugin kind {:?}; plugin {name:?} is of kind {kind:?}",
                                checkpoint.kind
                            );
                            slot.checkpoints().refuse(why.clone());
                            Err(why)
                        } else {
                            let identity = instance.identity();
                            let state = checkpoint.state.clone();
                            let offered = instance
                                .offer(vec![checkpoint], ImportCause::Upgrade, deadline)
                                .await;
                            if offered.is_ok() {
                                slot.checkpoints().exported(&identity, state);
                            }
                            offered.map(drop)
                        }
                    }
                    _ => Err(format!("no instance named {name:?} runs")),
                };
                if let Err(why) = &outcome {
                    tracing::warn!(plugin = %name, sequence, "the old process's state was not imported: {why}");
                }
                ImportReport {
                    instance: name,
                    sequence,
                    outcome,
                }
            }
        });
        futures::future::join_all(imports).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::config::{PluginSpec, resolve_plugin};
    use crate::plugin::{Attachment, Counter, PluginPlan, PluginUnitSpec};
    use crate::registry::Registry;

    const WAIT: Duration = Duration::from_secs(10);

    fn registry() -> Arc<Registry> {
        let mut registry = Registry::new();
        registry
            .register_plugin(Counter::KIND, Counter::build)
            .unwrap();
        Arc::new(registry)
    }

    /// A host running a counter for each `(name, config)`, as a process would after its start.
    async fn host(entries: &[(&str, &str)]) -> (PluginHost, Attachment) {
        let instances = entries
            .iter()
            .map(|(name, config)| {
                let yaml = format!("{{ name: {name}, type: counter, config: {config} }}");
                let parsed = PluginSpec::parse(yaml.as_bytes()).unwrap();
                let (spec, restart) = resolve_plugin(&parsed, &|_: &str| None).unwrap();
                Arc::new(PluginUnitSpec::new(spec, restart))
            })
            .collect();
        let plan = PluginPlan {
            instances,
            ..PluginPlan::default()
        };
        let host = PluginHost::new(Arc::new(|_: &str| None));
        let mut attachment = Attachment::default();
        host.attach(&plan, &registry(), &mut attachment)
            .await
            .unwrap();
        (host, attachment)
    }

    async fn call(host: &PluginHost, name: &str, op: &str) -> Value {
        host.get(name).unwrap().call(op, Value::Null).await.unwrap()
    }

    #[tokio::test]
    async fn export_all_takes_every_running_instance_state_even_without_checkpoints() {
        let (old, _attached) = host(&[("hits", "{}"), ("kept", "{ checkpoint: true }")]).await;
        for _ in 0..3 {
            call(&old, "hits", "increment").await;
        }
        call(&old, "kept", "increment").await;
        let exported = old.export_all(WAIT).await;
        let names: Vec<&str> = exported.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["hits", "kept"], "every instance, in start order");
        let (_, hits) = &exported[0];
        assert_eq!(hits.state, json!({"count": 3}));
        assert_eq!(
            (
                hits.kind.as_str(),
                hits.version.as_str(),
                hits.code.as_deref()
            ),
            ("counter", env!("CARGO_PKG_VERSION"), None)
        );
        assert!(
            !hits.exported,
            "offered to the new process, not insisted on"
        );
        // The checkpointing counter's export comes after its one checkpoint.
        let (_, kept) = &exported[1];
        assert_eq!(
            (kept.state.clone(), kept.sequence),
            (json!({"count": 1}), 2)
        );
        // It crosses to the new process as JSON.
        let text = serde_json::to_string(&exported).unwrap();
        let back: Vec<(String, Checkpoint)> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, exported);
        // Once stopped, nothing runs to export from.
        old.shutdown(Instant::now() + WAIT).await;
        assert!(old.export_all(WAIT).await.is_empty());
    }

    #[tokio::test]
    async fn import_all_hands_each_state_to_the_instance_of_its_name_through_migrate() {
        let (old, _old_attached) = host(&[("hits", "{}")]).await;
        call(&old, "hits", "increment").await;
        call(&old, "hits", "increment").await;
        let mut exported = old.export_all(WAIT).await;
        old.shutdown(Instant::now() + WAIT).await;

        let (new, _new_attached) = host(&[("hits", "{}"), ("other", "{}")]).await;
        let (_, hits) = exported.remove(0);
        let wrong_kind = Checkpoint {
            kind: "process".into(),
            ..hits.clone()
        };
        let unreadable = Checkpoint {
            state: json!({"total": 9}),
            ..hits.clone()
        };
        let reports = new
            .import_all(
                vec![
                    ("hits".into(), hits.clone()),
                    ("other".into(), wrong_kind),
                    ("ghost".into(), hits.clone()),
                    ("other".into(), unreadable),
                ],
                WAIT,
            )
            .await;
        let outcomes: Vec<(&str, bool)> = reports
            .iter()
            .map(|r| (r.instance.as_str(), r.outcome.is_ok()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("hits", true),
                ("other", false),
                ("ghost", false),
                ("other", false)
            ]
        );
        let why = |at: usize| reports[at].outcome.clone().unwrap_err();
        assert!(why(1).contains("kind \"process\""), "{}", why(1));
        assert!(why(2).contains("no instance named \"ghost\""), "{}", why(2));
        assert!(why(3).contains("expected {\"count\": n}"), "{}", why(3));
        // The imported count carries on; a refusal left the other instance as it was.
        assert_eq!(call(&new, "hits", "increment").await, json!({"count": 3}));
        assert_eq!(call(&new, "other", "get").await, json!({"count": 0}));
        let status = new.get("hits").unwrap().status().checkpoint.unwrap();
        let imported = status.imported.unwrap();
        assert_eq!(
            (imported.cause, imported.checkpoint.sequence),
            (ImportCause::Upgrade, hits.sequence)
        );
        let refused = new.get("other").unwrap().status().checkpoint.unwrap();
        assert_eq!(refused.refused, 2);
        new.shutdown(Instant::now() + WAIT).await;
    }
}
