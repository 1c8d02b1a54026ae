//! The generic swap protocol of swapvisor, on ractor.
//!
//! This crate knows nothing of YAML, modules, pipelines or HTTP. It swaps *units*: anything
//! that can be built without outside effects, started, and stopped.

mod mode;

pub use mode::SwapMode;
