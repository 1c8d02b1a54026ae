//! A store's families on `/metrics`, each sample labelled `module` (the store): its pool read
//! at scrape time, and a histogram of statement durations.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use prometheus::proto::MetricFamily;

use super::Database;
use crate::extension::ModuleError;
use crate::extension::metrics::MetricsHandle;
use crate::metrics::{Family, ScrapeFn};

/// Registers `database`'s families with `metrics`.
pub(super) fn register(
    database: &Arc<Database>,
    metrics: &MetricsHandle,
) -> Result<(), ModuleError> {
    metrics.scrape(scrape(database));
    let durations = metrics
        .histogram(
            "swapvisor_store_statement_duration_seconds",
            "How long a store's statements took, waiting for a connection included.",
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        )
        .map_err(|e| ModuleError(e.to_string()))?;
    let _ = database.durations.set(durations);
    Ok(())
}

fn scrape(database: &Arc<Database>) -> ScrapeFn {
    let database: Weak<Database> = Arc::downgrade(database);
    Arc::new(move |owner| match database.upgrade() {
        Some(database) => families(&database, (owner.0, owner.1.as_str())),
        None => Vec::new(),
    })
}

fn families(database: &Database, owner: (&str, &str)) -> Vec<MetricFamily> {
    let (size, idle) = database.pool().map_or((0, 0), |p| p.usage());
    let counters = &database.counters;
    let mut connections = Family::gauge(
        "swapvisor_store_connections",
        "A store's open connections, by state (idle, in_use).",
    );
    connections.push(&[owner, ("state", "idle")], idle as f64);
    let in_use = (size as usize).saturating_sub(idle);
    connections.push(&[owner, ("state", "in_use")], in_use as f64);
    let mut statements = Family::counter(
        "swapvisor_store_statements_total",
        "Statements a store ran, by outcome (ok, failed).",
    );
    let (run, failed) = (
        counters.statements.load(Ordering::Relaxed),
        counters.failed.load(Ordering::Relaxed),
    );
    statements.push(
        &[owner, ("outcome", "ok")],
        run.saturating_sub(failed) as f64,
    );
    statements.push(&[owner, ("outcome", "failed")], failed as f64);
    vec![
        connections.build(),
        Family::gauge(
            "swapvisor_store_max_connections",
            "The most connections a store's pool opens.",
        )
        .sample(&[owner], f64::from(database.max_connections))
        .build(),
        Family::counter(
            "swapvisor_store_connections_opened_total",
            "Connections a store's pool opened (each a new connection on the server).",
        )
        .sample(&[owner], counters.opened.load(Ordering::Relaxed) as f64)
        .build(),
        Family::counter(
            "swapvisor_store_acquire_waits_total",
            "Times a store's statement or transaction found every connection in use and waited.",
        )
        .sample(&[owner], counters.waits.load(Ordering::Relaxed) as f64)
        .build(),
        statements.build(),
    ]
}
