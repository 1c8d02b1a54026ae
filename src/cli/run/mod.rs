//! `swapvisor run CONFIG`: serve until asked to stop, reloading on file changes, SIGHUP or the
//! admin API, then stop gracefully.
//!
//! Its flags are in `args`, the signals it listens for in `signals`.

use std::sync::Arc;

use crate::admin::{self, AdminState};
use crate::config::read_file;
use crate::extension::DescriptorBudget;
use crate::state::LastGood;
use crate::{Origin, Registry, Reload, Runtime};

use self::args::AdminAddress;
pub(super) use self::args::RunArgs;
pub(super) use self::args::{TokenArgs, parse_address};
use self::signals::{Event, Signals};
use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE, watch};

mod args;
mod signals;

/// Runs the config of `args` with `registry`'s types until a shutdown signal; the exit code.
pub(super) async fn run(args: RunArgs, registry: Registry) -> u8 {
    // Listen for signals before anything else, so that a signal sent as soon as the service
    // reports itself up is never met by the default action (termination without cleanup).
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("swapvisor: cannot install signal handlers: {error}");
            return EXIT_USAGE;
        }
    };
    // Every connection takes a descriptor from one per-process budget: make it the budget the
    // operator set (the hard limit), not the soft default.
    match DescriptorBudget::raise_open_file_limit() {
        Ok((before, after)) if after > before => {
            tracing::info!(
                before,
                after,
                "raised the open-file limit to the hard limit"
            )
        }
        Ok((_, after)) => tracing::debug!(limit = after, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit; keeping it"),
    }
    let token = match args.token.read() {
        Ok(token) => token,
        Err(error) => {
            eprintln!("swapvisor: {error}");
            return EXIT_USAGE;
        }
    };
    // The admin API serves before the engine starts, so probes are answered during a slow
    // start (`/readyz` says `starting`), and a refused admin setup starts nothing.
    let admin_state = AdminState::new(
        Some(args.config.clone()),
        token.as_deref(),
        args.admin_max_body,
    );
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut admin_address = "off".to_owned();
    let admin_task = match args.admin {
        AdminAddress::Off => None,
        AdminAddress::At(address) => match admin::bind(address, token.as_deref()).await {
            Ok(listener) => {
                if let Ok(local) = listener.local_addr() {
                    admin_address = format!("http://{local}");
                }
                tracing::info!(admin = %admin_address, "the admin API is up");
                Some(tokio::spawn(admin::serve(
                    listener,
                    admin_state.clone(),
                    args.admin_limits.limits(),
                    async {
                        let _ = admin_stopped.await;
                    },
                )))
            }
            Err(error) => {
                eprintln!("swapvisor: {error}");
                return EXIT_USAGE;
            }
        },
    };
    let stop_admin = || async {
        let _ = admin_stop.send(());
        if let Some(task) = admin_task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
    };
    let state = match args.state() {
        Ok(state) => state,
        Err(error) => {
            eprintln!("swapvisor: {error}");
            stop_admin().await;
            return EXIT_USAGE;
        }
    };
    let last_good = match &state {
        Some(dir) => match LastGood::load(dir) {
            Ok(last_good) => last_good,
            Err(error) => {
                tracing::warn!(%error, "cannot read the last good config");
                None
            }
        },
        None => None,
    };
    let resumed = match (&last_good, args.resume) {
        (Some(saved), true) => {
            tracing::info!(generation = saved.generation, hash = %saved.hash, saved_at = %saved.saved_at, "--resume: starting from the last good config");
            Some(saved.source())
        }
        (None, true) => {
            tracing::info!(config = %args.config.display(), "--resume: no last good config saved yet; starting from the config file");
            None
        }
        (_, false) => None,
    };
    // Without --resume, a config file that cannot start says that a saved one could.
    let hint = match (&last_good, &state, args.resume) {
        (Some(saved), Some(dir), false) => format!(
            "\nswapvisor: the last good config (generation {}, hash {}, saved {}) is in {}; start from it with: swapvisor run --resume {}",
            saved.generation,
            saved.hash,
            saved.saved_at,
            dir.path().join(LastGood::FILE).display(),
            args.config.display()
        ),
        _ => String::new(),
    };
    let source = match resumed {
        Some(source) => source,
        None => match read_file(&args.config) {
            Ok(source) => source,
            Err(error) => {
                eprintln!("swapvisor: {error}{hint}");
                stop_admin().await;
                return EXIT_INVALID;
            }
        },
    };
    let mut builder = Runtime::builder(registry).observer(admin_state.metrics.clone());
    if let Some(dir) = state {
        builder = builder.state_dir(dir);
    }
    let started = builder.start(source);
    // A shutdown signal during a slow start ends the start instead of waiting for it.
    let started = tokio::select! {
        started = started => started,
        event = signals.shutdown() => {
            tracing::info!(signal = event, "shutting down before the first engine started");
            stop_admin().await;
            return EXIT_OK;
        }
    };
    let runtime = match started {
        Ok(runtime) => Arc::new(runtime),
        Err(error) => {
            let from = match args.resume && last_good.is_some() {
                true => "the last good config".to_owned(),
                false => args.config.display().to_string(),
            };
            eprintln!("swapvisor: {from}: {error}{hint}");
            stop_admin().await;
            return EXIT_INVALID;
        }
    };
    admin_state.attach(runtime.clone());
    #[cfg(feature = "fleet")]
    let _fleet = match args.cluster.settings() {
        Ok(None) => None,
        Ok(Some(settings)) => match crate::fleet::Fleet::join(runtime.clone(), settings).await {
            Ok(fleet) => {
                let fleet = Arc::new(fleet);
                admin_state.attach_fleet(fleet.clone());
                tokio::spawn(catch_up(fleet.clone()));
                Some(fleet)
            }
            Err(error) => {
                eprintln!("swapvisor: {error}");
                let _ = runtime.shutdown().await;
                stop_admin().await;
                return EXIT_USAGE;
            }
        },
        Err(error) => {
            eprintln!("swapvisor: {error}");
            let _ = runtime.shutdown().await;
            stop_admin().await;
            return EXIT_USAGE;
        }
    };
    let watcher = if args.watch {
        match watch::watch(&args.config, runtime.clone()) {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::error!(%error, "cannot watch the config file; continuing without --watch");
                None
            }
        }
    } else {
        None
    };

    let serving: Vec<String> = runtime
        .status()
        .await
        .map(|status| status.listening())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, address)| format!("{name}=http://{address}"))
        .collect();
    tracing::info!(
        config = %args.config.display(),
        serving = %serving.join(" "),
        admin = %admin_address,
        "swapvisor is up"
    );

    loop {
        match signals.next().await {
            Event::Reload => {
                tracing::info!("SIGHUP: reloading the config file");
                match read_file(&args.config) {
                    Ok(source) => {
                        let runtime = runtime.clone();
                        // Not awaited here, so that a slow reload never delays a shutdown signal.
                        tokio::spawn(async move {
                            let request = Reload::new(source).from(Origin::Signal);
                            let _ = runtime.reload(request).await;
                        });
                    }
                    Err(error) => {
                        tracing::error!(%error, "SIGHUP: cannot read the config file; keeping the current config")
                    }
                }
            }
            Event::Shutdown(name) => {
                tracing::info!(signal = name, "shutting down");
                break;
            }
        }
    }
    drop(watcher);
    if let Err(error) = runtime.shutdown().await {
        tracing::warn!(%error, "shutdown was not clean");
    }
    stop_admin().await;
    tracing::info!("stopped");
    EXIT_OK
}

/// A node that (re)joins a fleet which moved on while it was away reloads to the fleet's
/// config.
#[cfg(feature = "fleet")]
async fn catch_up(fleet: Arc<crate::fleet::Fleet>) {
    use crate::fleet::CatchUp;
    match fleet.catch_up(std::time::Duration::from_secs(10)).await {
        CatchUp::Alone => tracing::info!("no other fleet node is up yet"),
        CatchUp::Current => tracing::info!("this node is on the fleet's config"),
        CatchUp::Reloaded {
            from,
            fleet_generation,
            answer,
        } => tracing::info!(
            %from,
            fleet_generation,
            outcome = %answer.outcome,
            "caught up with the fleet"
        ),
        CatchUp::Failed(error) => {
            tracing::error!(%error, "cannot catch up with the fleet; this node is diverged")
        }
    }
}
