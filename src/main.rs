//! The `floe` binary: parses arguments, calls the library, maps errors to exit codes.

#[global_allocator]
static GLOBAL: floe::Allocator = floe::Allocator;

fn main() -> std::process::ExitCode {
    floe::cli::main()
}
