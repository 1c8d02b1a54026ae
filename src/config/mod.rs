//! The config: from untrusted text to a typed, immutable [`Config`].
//!
//! A config goes through three steps, and each keeps its output separate from its input:
//!
//! 1. **Parse**: bytes become a value tree, within hard [`DocumentLimits`] that
//!    refuse huge, deeply nested or alias-bomb documents quickly.
//! 2. **Decode and check**: the tree becomes a typed [`Config`]; unknown fields, wrong types,
//!    duplicate names, unknown dependencies and dependency cycles are all collected into one
//!    [`ConfigErrors`], each naming its place (`modules[2] (name "db").dependsOn[0]`).
//! 3. **Resolve**: `${VAR}` references are expanded and defaults applied into a
//!    separate [`Resolved`] value. The [`Config`] itself is never changed.
//!
//! Checks that need the registry (known types, each type's own settings) happen when the engine
//! plans a build; see [`crate::engine`].
//!
//! ```
//! use swapvisor::config::Config;
//!
//! let config = Config::parse(br#"
//! modules:
//!   - name: web
//!     type: http.server
//!     config: { address: "127.0.0.1:0" }
//! "#).unwrap();
//! assert_eq!(config.modules[0].name, "web");
//!
//! let err = Config::parse(b"modules: [{name: a, type: t, dependsOn: [a]}]").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     r#"modules[0] (name "a").dependsOn: dependency cycle: a -> a"#
//! );
//! ```

mod bounded;
mod decode;
mod document;
mod env;
mod error;
mod fields;
mod model;
mod resolved;
mod scan;
mod validate;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub(crate) use decode::decode_steps;
pub use document::{DocumentError, DocumentLimits};
pub(crate) use document::{DuplicateKey, kind_of, parse_document};
pub use env::{EnvLookup, SharedEnv, process_env};
pub use error::{ConfigError, ConfigErrors};
pub use fields::parse_duration;
pub use model::{
    BackoffSpec, Config, ModuleSpec, PipelineSpec, PluginSpec, PluginsRuntimeSpec, ReloadSpec,
    RestartPolicy, RestartSpec, RestartStrategy, RuntimeSpec, StepSpec, TriggerSpec,
};
pub(crate) use resolved::resolve_collecting;
pub(crate) use resolved::resolve_plugin;
pub use resolved::{Resolved, RestartSettings, RuntimeSettings};
pub use swapvisor_actors::SwapMode;

pub(crate) use error::{list_or_none, place, unknown_name};
pub(crate) use validate::{module_place, start_order};

/// Why a config could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {}: {message}", path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// What the operating system said.
        message: String,
    },
    /// The bytes are not a YAML or JSON document within the limits.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The document is not a valid config; every problem found is listed.
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
}

impl Config {
    /// Parses and checks a YAML or JSON config with the default [`DocumentLimits`].
    pub fn parse(bytes: &[u8]) -> Result<Config, LoadError> {
        Self::parse_with_limits(bytes, &DocumentLimits::default())
    }

    /// Parses and checks a YAML or JSON config within `limits`.
    pub fn parse_with_limits(bytes: &[u8], limits: &DocumentLimits) -> Result<Config, LoadError> {
        let (config, errors) = Self::parse_collecting(bytes, limits)?;
        Ok(errors.into_result(config)?)
    }

    /// Reads and parses the config file at `path`.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Config, LoadError> {
        let path = path.as_ref();
        Self::parse(&read_file(path)?)
    }

    /// Checks an already-parsed value tree (for configs built in code with `serde_json::json!`).
    pub fn from_value(value: &serde_json::Value) -> Result<Config, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let config = Self::decode_collecting(value, &[], &mut errors);
        errors.into_result(config)
    }

    /// Parses leniently: the config as far as it could be decoded, and every problem found.
    /// Only a document that cannot be read at all is an `Err`.
    pub(crate) fn parse_collecting(
        bytes: &[u8],
        limits: &DocumentLimits,
    ) -> Result<(Config, ConfigErrors), DocumentError> {
        let document = parse_document(bytes, limits)?;
        let mut errors = ConfigErrors::default();
        let config =
            Self::decode_collecting(&document.value, &document.duplicate_keys, &mut errors);
        Ok((config, errors))
    }

    fn decode_collecting(
        value: &serde_json::Value,
        duplicate_keys: &[DuplicateKey],
        errors: &mut ConfigErrors,
    ) -> Config {
        for duplicate in duplicate_keys {
            let message = match duplicate.mapping.as_str() {
                "pipelines" => format!(
                    "duplicate pipeline name {:?} (each pipeline name may appear once)",
                    duplicate.key
                ),
                "" => format!("duplicate top-level field {:?}", duplicate.key),
                _ => format!("duplicate key {:?} in the same mapping", duplicate.key),
            };
            errors.push(duplicate.place(), message);
        }
        let config = decode::decode(value, errors);
        validate::check_structure(&config, errors);
        config
    }

    /// A stable content hash of the config (hex SHA-256 of its canonical JSON), shown in status
    /// so operators can tell which config is live.
    pub fn hash(&self) -> String {
        // Serializing plain data to a Vec cannot fail: every map key is a string.
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&canonical);
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// The config as a document in the shape it is written in (`pipelines` a mapping by name,
    /// unset settings left out), with `${VAR}` references as written. Parsing it gives this
    /// config back, so it can be posted to a reload as it is.
    pub fn to_document(&self) -> serde_json::Value {
        use serde_json::Value;
        // Serializing plain data cannot fail: every map key is a string.
        let mut document = serde_json::to_value(self).unwrap_or_default();
        if let Some(Value::Array(pipelines)) = document.get_mut("pipelines").map(Value::take) {
            let by_name = pipelines
                .into_iter()
                .filter_map(|mut pipeline| {
                    let name = pipeline.as_object_mut()?.remove("name")?;
                    Some((name.as_str()?.to_owned(), pipeline))
                })
                .collect();
            document["pipelines"] = Value::Object(by_name);
        }
        if let Some(runtime) = document.get_mut("runtime") {
            drop_nulls(runtime);
        }
        document
    }

    /// The module named `name`.
    pub fn module(&self, name: &str) -> Option<&ModuleSpec> {
        self.modules.iter().find(|m| m.name == name)
    }

    /// The pipeline named `name`.
    pub fn pipeline(&self, name: &str) -> Option<&PipelineSpec> {
        self.pipelines.iter().find(|p| p.name == name)
    }
}

impl PluginSpec {
    /// Parses one `plugins:` entry (YAML or JSON), as a per-plugin reload carries it.
    pub fn parse(bytes: &[u8]) -> Result<PluginSpec, LoadError> {
        let document = parse_document(bytes, &DocumentLimits::default())?;
        let mut errors = ConfigErrors::default();
        for duplicate in &document.duplicate_keys {
            errors.push(
                duplicate.place(),
                format!("duplicate key {:?} in the same mapping", duplicate.key),
            );
        }
        let spec = decode::decode_plugin_at(&document.value, "plugin", &mut errors);
        match spec {
            Some(spec) if errors.is_empty() => Ok(spec),
            _ => Err(LoadError::Invalid(errors)),
        }
    }
}

/// Reads a config file, naming the file in the error. A file larger than the default
/// document limit is refused without being read into memory.
pub fn read_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let limit = DocumentLimits::default().max_bytes;
    let unreadable = |e: std::io::Error| LoadError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    // Read one byte past the limit: enough to know the file is too large, whatever its
    // metadata says (a pipe or a growing file has no reliable length).
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() > limit {
        let size = std::fs::metadata(path)
            .map(|m| m.len() as usize)
            .unwrap_or(bytes.len());
        return Err(LoadError::Document(DocumentError::TooLarge { size, limit }));
    }
    Ok(bytes)
}

/// Removes null fields, and objects left empty by that, below `value`.
fn drop_nulls(value: &mut serde_json::Value) {
    if let serde_json::Value::Object(fields) = value {
        for field in fields.values_mut() {
            drop_nulls(field);
        }
        fields.retain(|_, field| match field {
            serde_json::Value::Null => false,
            serde_json::Value::Object(inner) => !inner.is_empty(),
            _ => true,
        });
    }
}
