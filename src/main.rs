//! The `floe` binary: parses arguments, calls the library, maps errors to exit codes.

fn main() -> std::process::ExitCode {
    floe::cli::main()
}
