//! The `swapvisor` binary: the command line of [`swapvisor::cli`] with the built-in types.

fn main() -> std::process::ExitCode {
    swapvisor::cli::main(swapvisor::Registry::with_builtins())
}
