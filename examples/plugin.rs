//! A complete plugin: a key-value store that contributes its own step type, keeps its data
//! across reloads, and is restarted if it crashes.
//!
//! cargo run --example plugin

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use swapvisor::config::{ConfigErrors, PluginSpec};
use swapvisor::extension::{Step, StepBuild, StepContext, StepError};
use swapvisor::plugin::{Plugin, PluginBuild, PluginCall, PluginError};
use swapvisor::registry::RegistryError;
use swapvisor::{Config, Registry, Runtime};

/// The plugin: a map from keys to JSON values.
struct KvStore {
    entries: BTreeMap<String, Value>,
    /// From the instance's `config:`; a reload may change it.
    max_entries: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Settings {
    #[serde(default = "default_max")]
    max_entries: usize,
}

fn default_max() -> usize {
    1000
}

#[derive(Deserialize)]
struct Put {
    key: String,
    value: Value,
}

#[derive(Deserialize)]
struct Key {
    key: String,
}

impl Plugin for KvStore {
    fn kind(&self) -> &str {
        "kv"
    }

    fn version(&self) -> &str {
        "1.0.0"
    }

    /// Contributes the step type `kv.lookup {store, key}`, usable in any pipeline.
    fn register(&self, registry: &mut swapvisor::registry::Types) -> Result<(), RegistryError> {
        registry.register_step("kv.lookup", build_lookup)
    }

    fn handle(&mut self, call: PluginCall) -> BoxFuture<'_, Result<Value, PluginError>> {
        let result = match call.op.as_str() {
            "put" => call.args::<Put>().and_then(|put| {
                if !self.entries.contains_key(&put.key) && self.entries.len() >= self.max_entries {
                    return Err(PluginError::Failed(format!(
                        "the store is full ({} entries)",
                        self.max_entries
                    )));
                }
                Ok(json!({ "previous": self.entries.insert(put.key, put.value) }))
            }),
            "get" => call
                .args::<Key>()
                .map(|key| self.entries.get(&key.key).cloned().unwrap_or(Value::Null)),
            "len" => Ok(json!(self.entries.len())),
            other => Err(PluginError::unknown_op(other, &["put", "get", "len"])),
        };
        Box::pin(std::future::ready(result))
    }

    /// Called on the old instance after its last call.
    fn export_state(&mut self) -> BoxFuture<'_, Result<Option<Value>, PluginError>> {
        // Cloned, not taken: if the new instance refuses it, this one serves on with it.
        Box::pin(std::future::ready(Ok(Some(json!(self.entries)))))
    }

    /// Called on the new instance before its first call.
    fn migrate(&mut self, previous: Value) -> BoxFuture<'_, Result<(), PluginError>> {
        let migrated = serde_json::from_value(previous).map(|entries| self.entries = entries);
        Box::pin(std::future::ready(
            migrated.map_err(|e| PluginError::Failed(e.to_string())),
        ))
    }
}

/// The factory: builds an instance from its `config:`, with no outside effects.
fn build_store(build: &PluginBuild<'_>) -> Result<Box<dyn Plugin>, ConfigErrors> {
    let settings: Settings = build.settings()?;
    Ok(Box::new(KvStore {
        entries: BTreeMap::new(),
        max_entries: settings.max_entries,
    }))
}

/// The contributed step: looks a key up in a named store.
struct Lookup {
    store: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupSettings {
    store: String,
    key: String,
}

fn build_lookup(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    let settings: LookupSettings = build.settings()?;
    Ok(Box::new(Lookup {
        store: settings.store,
        key: settings.key,
    }))
}

impl Step for Lookup {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(async move {
            let plugins = context.services.plugins();
            let value = plugins
                .call(&self.store, "get", json!({ "key": self.key }))
                .await;
            value.map_err(StepError::new)
        })
    }
}

const CONFIG: &str = r#"
plugins:
  - name: store
    type: kv
    config: { maxEntries: 10 }
    restart: { policy: permanent, maxRestarts: 3, within: 10s }
pipelines:
  greeting:
    steps:
      - { name: found, type: kv.lookup, config: { store: store, key: greeting } }
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::with_builtins();
    registry.contributing("example", |r| r.register_plugin("kv", build_store))?;

    let runtime = Runtime::start(Config::parse(CONFIG.as_bytes())?, registry).await?;
    let store = runtime.plugin("store")?;
    store
        .call("put", json!({ "key": "greeting", "value": "hello" }))
        .await?;
    println!(
        "lookup -> {}",
        runtime.execute("greeting", json!({})).await?
    );

    // Reload the plugin alone with a new setting: the entries move to the new instance.
    let bigger = PluginSpec::parse(b"{ name: store, type: kv, config: { maxEntries: 100 } }")?;
    println!(
        "reload -> {:?}",
        runtime.plugin("store")?.reload(bigger).await?.outcome
    );
    println!(
        "after the reload, lookup -> {}",
        runtime.execute("greeting", json!({})).await?
    );

    let status = runtime.status().await?;
    println!("plugins: {}", serde_json::to_string(&status.plugins)?);
    runtime.shutdown().await?;
    Ok(())
}
