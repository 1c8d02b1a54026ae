//! `swapvisor run CONFIG`: serve until asked to stop, reloading on file changes, SIGHUP or the
//! admin API, then stop gracefully.
//!
//! Its flags are in `args`, the signals it listens for in `signals`, and the choice of the first
//! config (an upgrade's, the last good one, or the file's) in `source`.

use std::sync::Arc;

use std::os::fd::AsFd;

use crate::admin::{self, AdminState, ProcessControl};
use crate::config::read_file;
use crate::extension::DescriptorBudget;
use crate::{Origin, Registry, Reload, Runtime};

use self::args::AdminAddress;
pub(super) use self::args::RunArgs;
pub(super) use self::args::{TokenArgs, parse_address};
use self::signals::{Event, Signals};
use super::upgrade::{Successor, Upgrader};
use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE, systemd, watch};

mod args;
mod signals;
mod source;

/// Runs the config of `args` with `registry`'s types until a shutdown signal (or until a new
/// process took over in an upgrade); the exit code.
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
    // Started by an upgrade: the old process's sockets and config, before anything binds.
    // Otherwise the sockets systemd may have passed.
    let successor = match Successor::join().await {
        Some(Ok(successor)) => Some(successor),
        Some(Err(error)) => {
            eprintln!("swapvisor: {error}");
            return EXIT_USAGE;
        }
        None => {
            let offered = systemd::offer_listen_fds();
            if offered > 0 {
                tracing::info!(
                    sockets = offered,
                    "socket activation: sockets passed by systemd"
                );
            }
            None
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
    let mut admin_socket = None;
    let admin_task = match args.admin {
        AdminAddress::Off => None,
        AdminAddress::At(address) => match admin::bind(address, token.as_deref()).await {
            Ok(listener) => {
                if let Ok(local) = listener.local_addr() {
                    admin_address = format!("http://{local}");
                }
                // Kept for an upgrade's hand-off.
                admin_socket = listener.as_fd().try_clone_to_owned().ok();
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
    let first = match source::choose(&args, state.as_ref(), successor.as_ref()) {
        Ok(first) => first,
        Err(error) => {
            eprintln!("swapvisor: {error}");
            if let Some(successor) = successor {
                successor.failed(&error).await;
            }
            stop_admin().await;
            return EXIT_INVALID;
        }
    };
    let mut builder = Runtime::builder(registry).observer(admin_state.metrics.clone());
    if let Some(dir) = state {
        builder = builder.state_dir(dir);
    }
    let started = builder.start(first.source);
    // A shutdown signal during a slow start ends the start instead of waiting for it.
    let started = tokio::select! {
        started = started => started,
        event = signals.shutdown() => {
            tracing::info!(signal = event, "shutting down before the first engine started");
            if let Some(successor) = successor {
                successor.failed("stopped by a signal before it started").await;
            }
            stop_admin().await;
            return EXIT_OK;
        }
    };
    let runtime = match started {
        Ok(runtime) => Arc::new(runtime),
        Err(error) => {
            eprintln!("swapvisor: {}: {error}{}", first.from, first.hint);
            if let Some(successor) = successor {
                successor.failed(&error.to_string()).await;
            }
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

    // An upgrade's new process takes over here: the old one drains and hands over its plugins'
    // state, which is imported before the first connection is accepted.
    let upgraded_from = match successor {
        Some(successor) => {
            let old_pid = successor.old_pid;
            let (states, takeover) = successor.started(args.upgrade_drain).await;
            let imported = runtime.import_plugins(states, args.upgrade_drain).await;
            takeover.go().await;
            tracing::info!(
                old_pid,
                new_pid = std::process::id(),
                plugins = imported,
                "upgrade: took over from the old process"
            );
            systemd::took_over(&format!("serving; upgraded from pid {old_pid}"));
            Some(old_pid)
        }
        None => {
            systemd::ready("serving generation 1");
            None
        }
    };
    let untaken = crate::net::handoff::untaken();
    if !untaken.is_empty() {
        tracing::warn!(sockets = ?untaken, "inherited sockets no listener uses (kept for a reload that does)");
    }
    let upgrader = Arc::new(Upgrader::new(
        runtime.clone(),
        admin_socket,
        (args.upgrade_timeout, args.upgrade_drain),
        upgraded_from,
    ));
    admin_state.attach_process(Arc::new(UpgradeControl(upgrader.clone())));
    let mut handed_over = upgrader.handed_over.subscribe();

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
        pid = std::process::id(),
        "swapvisor is up"
    );

    loop {
        let event = tokio::select! {
            event = signals.next() => event,
            _ = handed_over.wait_for(|done| *done) => break,
        };
        match event {
            Event::Reload => {
                tracing::info!("SIGHUP: reloading the config file");
                match read_file(&args.config) {
                    Ok(source) => {
                        let runtime = runtime.clone();
                        // Not awaited here, so that a slow reload never delays a shutdown signal.
                        tokio::spawn(async move {
                            let request = Reload::new(source).from(Origin::Signal);
                            let _ = systemd::reload(&runtime, request).await;
                        });
                    }
                    Err(error) => {
                        tracing::error!(%error, "SIGHUP: cannot read the config file; keeping the current config")
                    }
                }
            }
            Event::Upgrade => {
                tracing::info!("SIGUSR2: upgrading the binary");
                let upgrader = upgrader.clone();
                tokio::spawn(async move { upgrader.upgrade(None).await });
            }
            Event::Shutdown(name) => {
                tracing::info!(signal = name, "shutting down");
                break;
            }
        }
    }
    // After a hand-off the new process is what systemd watches: it is not told this one stops.
    if !*handed_over.borrow() {
        systemd::stopping();
    }
    drop(watcher);
    if let Err(error) = runtime.shutdown().await {
        tracing::warn!(%error, "shutdown was not clean");
    }
    stop_admin().await;
    tracing::info!(pid = std::process::id(), "stopped");
    EXIT_OK
}

/// The admin API's view of the upgrader.
struct UpgradeControl(Arc<Upgrader>);

impl ProcessControl for UpgradeControl {
    fn describe(&self) -> serde_json::Value {
        self.0.describe()
    }

    fn upgrade(
        &self,
        binary: Option<std::path::PathBuf>,
    ) -> futures::future::BoxFuture<'static, (bool, serde_json::Value)> {
        let upgrader = self.0.clone();
        Box::pin(async move {
            let report = upgrader.upgrade(binary).await;
            let upgraded = report.status == "upgraded";
            (upgraded, serde_json::to_value(report).unwrap_or_default())
        })
    }
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
