//! The swap protocol, driven through its public API with a scripted fake unit: every outcome
//! of the reload contract, in both swap modes, with no YAML and no HTTP. One module per
//! subject, in `protocol/`, all in this one test binary (named by `path`, since a test crate's
//! root looks for its modules beside it).

mod support;

#[path = "protocol/active.rs"]
mod active;
#[path = "protocol/builds.rs"]
mod builds;
#[path = "protocol/handover.rs"]
mod handover;
#[path = "protocol/hibernation.rs"]
mod hibernation;
#[path = "protocol/prepared.rs"]
mod prepared;
#[path = "protocol/queueing.rs"]
mod queueing;
#[path = "protocol/recovery.rs"]
mod recovery;
#[path = "protocol/rollback.rs"]
mod rollback;
#[path = "protocol/shutdown.rs"]
mod shutdown;
