//! Sockets that outlive the engines that use them, and the limits that keep any one of them
//! from starving the process.
//!
//! The [`ListenerPool`] owns every bound listener and its accept loop. Engines borrow listeners
//! by address; an address kept across a reload hands the very same socket to the new engine, so
//! no connection is refused while configs change. Each request is routed, at the moment it
//! arrives, to whatever [`HttpDispatch`] the pool was given; in a runtime that is the live
//! engine, so even requests on an old keep-alive connection reach the new config.
//!
//! Every server of the process, the pool's listeners and the admin API alike, accepts through
//! the same gate (`server`): a connection cap drawn from the process's descriptor budget
//! ([`DescriptorBudget`]) and header, idle and body timeouts ([`ConnectionLimits`]).

mod body;
mod descriptors;
mod early;
mod limits;
mod listener_pool;
mod server;

pub(crate) use body::{BodyError, linger, read_limited};
pub use limits::{ConnectionLimits, DescriptorBudget};
#[cfg(feature = "admin")]
pub(crate) use server::write_prometheus;
#[cfg(feature = "admin")]
pub(crate) use server::{Gate, bind, serve_listener};

pub(crate) use listener_pool::{HttpDispatch, HttpRequest, HttpResponse};
pub use listener_pool::{ListenerKey, ListenerLease, ListenerPool};
