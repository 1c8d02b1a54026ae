//! `swapvisor validate CONFIG`: build without starting, print the verdict as JSON.

use std::path::Path;

use crate::actors::SwapSettings;
use crate::config::{DocumentLimits, process_env, read_file};
use crate::engine::BuildError;
use crate::{Engine, Registry, Stage, TryActivateResult};

use super::{EXIT_INVALID, EXIT_OK};

pub(super) async fn validate(registry: &Registry, path: &Path) -> u8 {
    let result = match read_file(path) {
        Err(error) => TryActivateResult::failed(&BuildError::from(error)),
        Ok(source) => {
            let limits = DocumentLimits::default();
            let build = Engine::build_from_source(&source, &limits, registry, &process_env);
            // Building has no outside effects, but a module may hang in it; bound the wait by
            // the default build timeout.
            let limit = SwapSettings::default().build_timeout;
            match tokio::time::timeout(limit, build).await {
                Ok(Ok(engine)) => TryActivateResult::ok(&engine),
                Ok(Err(error)) => TryActivateResult::failed(&error),
                Err(_) => TryActivateResult::BuildFailed {
                    error: format!(
                        "the build did not finish within {}",
                        humantime::format_duration(limit)
                    ),
                    stage: Stage::Build,
                },
            }
        }
    };
    println!("{}", result.to_json());
    match result {
        TryActivateResult::BuildOk { .. } => EXIT_OK,
        TryActivateResult::BuildFailed { error, .. } => {
            eprintln!("{}: {error}", path.display());
            EXIT_INVALID
        }
    }
}
