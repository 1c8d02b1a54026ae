//! Upgraded connections (WebSockets) through an upstream, and when a reload closes them.
//!
//! A tunnel belongs to the route that opened it: the pipeline, by its fingerprint. Each built
//! `step.proxy` *claims* its pipeline's fingerprint on its upstream for as long as the step
//! lives. A reload that keeps the pipeline and the upstream unchanged builds a new step that
//! claims the same fingerprint on the same (carried) upstream before the old engine's step is
//! dropped, so the route never loses its last claim and its tunnels carry on, however many
//! reloads pass. A reload that changes the pipeline leaves the old fingerprint without claims
//! once the old engine is gone (after its drain): its tunnels are closed then, and counted. A
//! changed or removed upstream is stopped with the old engine, and closes its tunnels at the
//! stop deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::net::lock;

/// The tunnels of one upstream.
pub(crate) struct Tunnels {
    routes: Mutex<HashMap<u64, Route>>,
    /// Set when the upstream stops: every tunnel closes.
    all_closed: watch::Sender<bool>,
    /// Told each time a tunnel ends (what the upstream's stop waits for).
    pub(super) ended: tokio::sync::Notify,
    pub(super) open: AtomicU64,
    pub(super) opened: AtomicU64,
    /// Closed because their route changed or their upstream stopped.
    pub(super) closed_by_reload: AtomicU64,
}

impl Default for Tunnels {
    fn default() -> Self {
        Self {
            routes: Mutex::default(),
            all_closed: watch::Sender::new(false),
            ended: tokio::sync::Notify::new(),
            open: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            closed_by_reload: AtomicU64::new(0),
        }
    }
}

struct Route {
    claims: usize,
    closed: watch::Sender<bool>,
}

/// A step's claim on its route: while one lives, the route's tunnels stay open.
pub(crate) struct RouteClaim {
    tunnels: Arc<super::UpstreamPool>,
    fingerprint: u64,
}

impl std::fmt::Debug for RouteClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteClaim")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl RouteClaim {
    /// Claims route `fingerprint` on `pool`.
    pub(crate) fn new(pool: &Arc<super::UpstreamPool>, fingerprint: u64) -> Self {
        lock(&pool.tunnels.routes)
            .entry(fingerprint)
            .or_insert_with(|| Route {
                claims: 0,
                closed: watch::Sender::new(false),
            })
            .claims += 1;
        Self {
            tunnels: pool.clone(),
            fingerprint,
        }
    }

    /// Carries the two upgraded sides of a connection into each other until either ends, the
    /// route loses its last claim, or the upstream stops.
    pub(crate) fn open(&self, client: OnUpgrade, backend: OnUpgrade) {
        let tunnels = &self.tunnels.tunnels;
        let Some(mut route_closed) = lock(&tunnels.routes)
            .get(&self.fingerprint)
            .map(|r| r.closed.subscribe())
        else {
            return;
        };
        let mut all_closed = tunnels.all_closed.subscribe();
        let pool = self.tunnels.clone();
        tokio::spawn(async move {
            let (client, backend) = match tokio::try_join!(client, backend) {
                Ok(both) => both,
                Err(error) => {
                    tracing::debug!(upstream = %pool.name, %error, "an upgrade did not complete");
                    return;
                }
            };
            let tunnels = &pool.tunnels;
            tunnels.open.fetch_add(1, Ordering::Relaxed);
            tunnels.opened.fetch_add(1, Ordering::Relaxed);
            let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut backend) => {}
                _ = route_closed.wait_for(|closed| *closed) => {
                    tunnels.closed_by_reload.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(upstream = %pool.name, "a tunnel's route changed; closed");
                }
                _ = all_closed.wait_for(|closed| *closed) => {
                    tunnels.closed_by_reload.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(upstream = %pool.name, "a tunnel's upstream stopped; closed");
                }
            }
            tunnels.open.fetch_sub(1, Ordering::Relaxed);
            tunnels.ended.notify_waiters();
        });
    }
}

impl Drop for RouteClaim {
    fn drop(&mut self) {
        let mut routes = lock(&self.tunnels.tunnels.routes);
        let Some(route) = routes.get_mut(&self.fingerprint) else {
            return;
        };
        route.claims -= 1;
        if route.claims == 0 {
            let _ = route.closed.send(true);
            routes.remove(&self.fingerprint);
        }
    }
}

impl Tunnels {
    /// Closes every tunnel (the upstream stops).
    pub(super) fn close_all(&self) {
        let _ = self.all_closed.send(true);
    }
}
