//! Sockets that outlive the engines that use them, and the limits that keep any one of them
//! from starving the process.
//!
//! The [`ListenerPool`] owns every bound listener and its accept
//! loop. Engines borrow listeners by address; an address kept across a reload hands the very
//! same socket to the new engine, so no connection is refused while configs change. Each
//! request is routed, at the moment it arrives, to whatever dispatcher the pool was given; in a
//! runtime that is the live engine, so even requests on an old keep-alive connection reach the
//! new config.
//!
//! Every server of the process, the pool's listeners and the admin API alike, accepts through
//! the same gate: a connection cap drawn from the process's descriptor budget
//! ([`DescriptorBudget`]) and header, idle and body timeouts
//! ([`ConnectionLimits`]). What an extension author uses is public
//! here: [`listeners`] (what a server module binds through) and [`limits`]; the serving
//! machinery is internal:
//!
//! - `gate`: which connections a listener admits, and which it closes to make room;
//! - `clock` and `stream`: each connection's phase and since when, in one atomic word, started
//!   by the connection's own reads;
//! - `accept` and `connection`: the accept loop, and serving one connection under the watchdog
//!   that enforces its head and idle timeouts;
//! - `request_body`: the body's deadline and minimum rate;
//! - `bind`: a deep backlog, and dual-stack for `[::]`;
//! - `handoff`: sockets inherited at start (systemd, an upgrade), and the accept switch that
//!   pauses and drains every accept loop while the process hands over to a new one;
//! - `gate_metrics`: every gate of the process, read for `/metrics` by [`crate::metrics`];
//! - `workers`: the connection threads, one single-threaded runtime per core, where each
//!   accepted connection is served until it closes.

mod accept;
mod bind;
mod body;
mod clock;
mod connection;
mod descriptors;
mod early;
mod gate;
mod gate_metrics;
// Inherited sockets and the accept switch's settings are the binary's (`cli`): systemd and
// upgrades. The accept loops follow the switch in every build.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) mod handoff;
pub mod limits;
pub mod listeners;
mod request_body;
mod stream;
mod workers;

pub(crate) use body::{BodyError, linger, read_limited};
pub(crate) use gate_metrics::ListenerCollector;
pub use limits::{ConnectionLimits, DescriptorBudget};
#[cfg(feature = "admin")]
pub(crate) use {accept::serve_listener, bind::bind, gate::Gate};

pub(crate) use gate::lock;
pub use listeners::{BoxError, StreamBody};
pub(crate) use listeners::{HttpDispatch, HttpRequest, HttpResponse, whole};
pub use listeners::{ListenerKey, ListenerLease, ListenerPool};
pub(crate) use request_body::RequestBody;
