//! The `swapvisor` command line.

fn main() {}
