//! The built-in types, contributed to every [`Registry::with_builtins`] by `core`. Their settings are documented in docs/CONFIG.md.
//!
//! | kind | type | settings |
//! |---|---|---|
//! | module | `http.server` | `address` |
//! | module | `fault.inject` | `failOn`, `mode`, `message` |
//! | module | `http.upstream` | `targets`, `balance`, `connectTimeout`, `requestTimeout`, `idleTimeout`, `maxIdlePerTarget`, `healthCheck`, `passive`, `retries` |
//! | trigger | `http` | `server`, `method`, `path` |
//! | trigger | `schedule` | `every` |
//! | step | `step.set` | `values` |
//! | step | `step.log` | `message`, `level` |
//! | step | `step.json_response` | `status`, `body`, `headers` |
//! | step | `step.delay` | `duration` |
//! | step | `step.fail` | `message` |
//! | step | `step.plugin_call` | `plugin`, `op`, `args` |
//! | step | `step.proxy` | `upstream`, `path`, `headers`, `timeout` |
//! | step | `step.http_call` | `method`, `upstream` and `path` or `url`, `headers`, `body`, `timeout`, `maxResponseBytes` |
//! | step | `step.validate` | `schema`, `target` |
//! | step | `step.jwt` | `algorithm`, `secretEnv`, `secretFile`, `publicKeyFile`, `jwksFile`, `issuer`, `audience`, `leeway` |
//! | step | `step.rate_limit` | `key`, `rate`, `burst`, `maxKeys` |
//! | step | `step.transform` | `program`, `input`, `all` |
//! | step | `step.switch` | `cases` (`when`, `steps`), `default`; planned by the engine |
//! | step | `step.static` | `root`, `path`, `index`, `cacheControl` |
//! | module | `storage.sqlite` (feature `storage`) | `path`, `maxConnections`, `minConnections`, `busyTimeout`, `acquireTimeout`, `migrations` |
//! | module | `storage.postgres` (feature `storage`) | `urlEnv` or `urlFile`, `maxConnections`, `minConnections`, `statementTimeout`, `acquireTimeout`, `applicationName`, `tls` (`mode`, `rootCert`), `migrations` |
//! | step | `step.db_query` (feature `storage`) | `store`, `sql`, `params`, `one`, `notFound`, `maxRows` |
//! | step | `step.db_exec` (feature `storage`) | `store`, `sql`, `params` |
//! | plugin | `counter` | `start` |
//! | plugin | `process` | `command`, `env`, `cwd`, `callTimeout`, `watch`, `maxLineBytes`, `settings`, `stepTypes` |

#[cfg(feature = "runtime")]
mod fault;
#[cfg(feature = "runtime")]
mod http_call;
#[cfg(feature = "runtime")]
mod http_server;
#[cfg(feature = "runtime")]
mod jwt;
#[cfg(feature = "runtime")]
mod log_text;
#[cfg(feature = "runtime")]
mod process;
#[cfg(feature = "runtime")]
mod proxy;
#[cfg(feature = "runtime")]
mod rate_limit;
#[cfg(feature = "runtime")]
mod schedule;
#[cfg(feature = "runtime")]
mod static_files;
#[cfg(feature = "runtime")]
pub(crate) mod steps;
#[cfg(feature = "storage")]
mod storage;
#[cfg(feature = "runtime")]
mod transform;
#[cfg(feature = "runtime")]
mod upstream;
#[cfg(feature = "runtime")]
mod validate;

#[cfg(feature = "cli")]
pub(crate) use process::allow_describe;
#[cfg(feature = "admin")]
pub(crate) use process::code_refused;

#[cfg(feature = "runtime")]
use crate::plugin::Counter;
#[cfg(feature = "runtime")]
use crate::registry::{Registry, RegistryError};

/// The contributor name of the built-in types.
#[cfg(feature = "runtime")]
const CONTRIBUTOR: &str = "core";

#[cfg(feature = "runtime")]
impl Registry {
    /// A registry holding the built-in types and the `counter` plugin kind, contributed by
    /// `core`.
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        registry
            .contributing(CONTRIBUTOR, register)
            // The built-in names are distinct constants, and the registry starts empty.
            .expect("built-in type names are unique");
        registry
    }
}

/// Registers every built-in type.
#[cfg(feature = "runtime")]
fn register(registry: &mut Registry) -> Result<(), RegistryError> {
    registry.register_module("http.server", http_server::build_server)?;
    registry.register_module("fault.inject", fault::build)?;
    registry.register_module(upstream::TYPE, upstream::build)?;
    registry.register_step("step.proxy", proxy::build)?;
    registry.register_step("step.http_call", http_call::build)?;
    registry.register_step("step.static", static_files::build)?;
    registry.register_trigger("http", http_server::build_trigger)?;
    registry.register_trigger("schedule", schedule::build)?;
    registry.register_plugin(Counter::KIND, Counter::build)?;
    registry.register_plugin(process::KIND, process::build)?;
    registry.register_step("step.validate", validate::build)?;
    registry.register_step("step.jwt", jwt::build)?;
    // A struct, not a function: it keeps each step's buckets across reloads.
    registry.register_step("step.rate_limit", rate_limit::RateLimitFactory::default())?;
    #[cfg(feature = "storage")]
    {
        registry.register_module(storage::SQLITE, storage::build_sqlite)?;
        registry.register_module(storage::POSTGRES, storage::build_postgres)?;
        registry.register_step(storage::DB_QUERY, storage::build_query)?;
        registry.register_step(storage::DB_EXEC, storage::build_exec)?;
    }
    steps::register(registry)?;
    transform::register(registry)
}
