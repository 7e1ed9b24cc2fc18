//! `floe inspect PATH [--json]`: an offline view of a checkpoint or savepoint (its directory or
//! `_metadata`), or of a job's checkpoint directory (the retained checkpoints). Reads files only;
//! needs no running job. PATH may be local (a path or `file://`) or on S3 (`s3://bucket/...`,
//! reached with the `s3.*` keys of the configuration and the AWS environment).

use super::{print_error, GlobalArgs, EXIT_FAILURE};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A checkpoint or savepoint directory, its `_metadata`, or a job's directory
    /// (`<state.checkpoints.dir>/<job-id>`); local or s3://bucket/prefix/...
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// A configuration key=value, e.g. -D s3.endpoint=http://127.0.0.1:8333 (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = super::parse_dynamic)]
    pub dynamic: Vec<String>,
}

/// Loads the configuration (`--conf-dir`, `FLOE_*`, `-D`) for what the offline commands need of
/// it: how `s3://` paths are reached (`s3.*`). On a configuration error, prints it and returns
/// the exit code.
pub(super) fn configure_storage(global: &GlobalArgs, dynamic: &[String]) -> Result<(), u8> {
    let loaded = super::load_conf(global, dynamic)?;
    crate::checkpoint::storage::configure(&loaded.config.s3);
    Ok(())
}

pub fn inspect(global: &GlobalArgs, args: InspectArgs) -> u8 {
    if let Err(code) = configure_storage(global, &args.dynamic) {
        return code;
    }
    match crate::checkpoint::inspect::inspect(&args.path) {
        Ok(report) => {
            if args.json {
                let json = crate::checkpoint::inspect::render_json(&report);
                crate::outln!(
                    "{}",
                    serde_json::to_string_pretty(&json).unwrap_or_default()
                );
            } else {
                crate::stdio::out(&crate::checkpoint::inspect::render_text(&report));
            }
            0
        }
        Err(e) => {
            print_error(&e);
            EXIT_FAILURE
        }
    }
}
