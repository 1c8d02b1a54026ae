//! Sockets that outlive the engines that use them.
//!
//! The [`ListenerPool`] owns every bound listener and its accept loop. Engines borrow listeners
//! by address; an address kept across a reload hands the very same socket to the new engine, so
//! no connection is refused while configs change. Each request is routed, at the moment it
//! arrives, to whatever [`HttpDispatch`] the pool was given; in a runtime that is the live
//! engine, so even requests on an old keep-alive connection reach the new config.

mod body;
#[cfg(feature = "cli")]
mod descriptors;
mod listener_pool;

pub(crate) use body::{BodyError, linger, read_limited};
#[cfg(feature = "cli")]
pub(crate) use descriptors::raise_open_file_limit;

pub(crate) use listener_pool::{HttpDispatch, HttpRequest, HttpResponse};
pub use listener_pool::{ListenerKey, ListenerLease, ListenerPool};
