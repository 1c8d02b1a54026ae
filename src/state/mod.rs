//! The state folder: what the process keeps on disk so that its own restart, crash or upgrade
//! loses nothing it had accepted.
//!
//! A reload never leaves a running process worse off; the state folder carries that promise
//! across the process's life. It holds the last config that activated ([`LastGood`], which
//! `swapvisor run --resume` starts from) and the latest state checkpoint of each plugin
//! instance that takes them.
//!
//! Every file is written whole or not at all: into a temporary file beside it (mode 0600),
//! flushed to disk, renamed over the old one, and the folder flushed too, so a crash at any
//! moment leaves either the previous file or the new one. The folder itself must belong to the
//! user the process runs as and be writable by no one else: a state folder someone else can
//! write to could hand the process a config it never accepted, so [`StateDir::open`] refuses
//! it.

mod dir;
mod last_good;

pub use dir::{StateDir, StateError, default_path};
pub use last_good::LastGood;
