//! Process exit codes, shared by the CLI and the service (which reports why a job could not
//! start with the code `floe run` would exit with).

/// Exit code for configuration and pipeline errors (sysexits' `EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code for any other failure.
pub const EXIT_FAILURE: u8 = 1;
