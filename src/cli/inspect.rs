//! `floe inspect PATH [--json]`: an offline view of a checkpoint or savepoint (its directory or
//! `_metadata`), or of a job's checkpoint directory (the retained checkpoints). Reads files only;
//! needs no running job.

use super::{print_error, EXIT_FAILURE};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A checkpoint or savepoint directory, its `_metadata`, or a job's directory
    /// (`<state.checkpoints.dir>/<job-id>`).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn inspect(args: InspectArgs) -> u8 {
    match crate::checkpoint::inspect::inspect(&args.path) {
        Ok(report) => {
            if args.json {
                let json = crate::checkpoint::inspect::render_json(&report);
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json).unwrap_or_default()
                );
            } else {
                print!("{}", crate::checkpoint::inspect::render_text(&report));
            }
            0
        }
        Err(e) => {
            print_error(&e);
            EXIT_FAILURE
        }
    }
}
