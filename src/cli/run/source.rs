//! Which config `run` starts from: an upgrade's hand-off, the last good config (`--resume`),
//! or the config file; and, when the file cannot start, the hint that a saved config could.

use crate::config::read_file;
use crate::state::{LastGood, StateDir};

use super::RunArgs;
use crate::cli::upgrade::Successor;

/// What the first engine is built from, and how to say so.
pub(super) struct FirstConfig {
    /// The document.
    pub(super) source: Vec<u8>,
    /// Where it came from, for an error: the file's path, or "the last good config".
    pub(super) from: String,
    /// Appended to a start error: where a last good config is and how to start from it.
    pub(super) hint: String,
}

/// Chooses the first config. An unreadable config file is the error, with its hint.
pub(super) fn choose(
    args: &RunArgs,
    state: Option<&StateDir>,
    successor: Option<&Successor>,
) -> Result<FirstConfig, String> {
    if let Some(successor) = successor {
        return Ok(FirstConfig {
            // Serializing a `Value` cannot fail: its keys are strings.
            source: serde_json::to_vec(&successor.config).unwrap_or_default(),
            from: format!("the config handed over by pid {}", successor.old_pid),
            hint: String::new(),
        });
    }
    let last_good = state.and_then(|dir| match LastGood::load(dir) {
        Ok(last_good) => last_good,
        Err(error) => {
            tracing::warn!(%error, "cannot read the last good config");
            None
        }
    });
    if args.resume {
        match &last_good {
            Some(saved) => {
                tracing::info!(generation = saved.generation, hash = %saved.hash, saved_at = %saved.saved_at, "--resume: starting from the last good config");
                return Ok(FirstConfig {
                    source: saved.source(),
                    from: "the last good config".into(),
                    hint: String::new(),
                });
            }
            None => {
                tracing::info!(config = %args.config.display(), "--resume: no last good config saved yet; starting from the config file")
            }
        }
    }
    let hint = match (&last_good, state) {
        (Some(saved), Some(dir)) if !args.resume => format!(
            "\nswapvisor: the last good config (generation {}, hash {}, saved {}) is in {}; start from it with: swapvisor run --resume {}",
            saved.generation,
            saved.hash,
            saved.saved_at,
            dir.path().join(LastGood::FILE).display(),
            args.config.display()
        ),
        _ => String::new(),
    };
    match read_file(&args.config) {
        Ok(source) => Ok(FirstConfig {
            source,
            from: args.config.display().to_string(),
            hint,
        }),
        Err(error) => Err(format!("{error}{hint}")),
    }
}
