//! The built-in `counter` plugin kind as a process plugin executable: the same `Plugin`
//! implementation the runtime runs in-process, served over stdin and stdout.
//!
//! ```yaml
//! plugins:
//!   - name: visits
//!     type: process
//!     config:
//!       command: ["./target/debug/swapvisor-counter-plugin"]
//!       settings: { start: 10 }
//! ```
//!
//! A plugin author's own crate depends on `swapvisor` with `default-features = false,
//! features = ["serve"]` and writes the same two lines.

fn main() -> std::process::ExitCode {
    swapvisor::plugin::serve_with(|init| swapvisor::plugin::Counter::from_settings(&init.config))
}
