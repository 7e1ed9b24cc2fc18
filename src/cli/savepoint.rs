//! `floe savepoint <jobId> [targetDir]`: trigger a savepoint of a running job through the REST
//! API (`POST /jobs/:id/savepoints`), wait for it, print its path as `flink savepoint` does.
//!
//! `floe savepoint -d <path>` disposes of a savepoint. Unlike Flink, which asks the cluster,
//! floe disposes offline, through [`crate::checkpoint::savepoint::dispose`]: no running floe is
//! needed, and the same checks apply (the path must be a floe savepoint; only its files go).

use super::remote::{self, RemoteArgs};
use super::{GlobalArgs, EXIT_FAILURE};
use crate::checkpoint::savepoint::dispose_given;
use clap::Args;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct SavepointArgs {
    /// The job to take a savepoint of (32 hex characters; see `floe list`).
    #[arg(value_name = "JOB_ID")]
    pub job_id: Option<String>,
    /// Where to write the savepoint (default: execution.checkpointing.savepoint-dir of the
    /// running job).
    #[arg(value_name = "TARGET_DIR")]
    pub target: Option<String>,
    #[arg(value_name = "IGNORED", hide = true)]
    pub extra: Vec<String>,
    /// Dispose of the savepoint at PATH (its directory or its _metadata); works offline.
    #[arg(short = 'd', long = "dispose", value_name = "PATH", num_args = 0..=1)]
    pub dispose: Option<Option<String>>,
    /// Trigger and return, printing the trigger id (also -detached, as Flink).
    #[arg(long = "detached")]
    pub detached: bool,
    /// Savepoint format: canonical (the only one floe writes) or native (also -type).
    #[arg(long = "type", value_name = "canonical|native")]
    pub format: Option<String>,
    /// Give up waiting after this long (e.g. 10min); default: wait until the job answers.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn savepoint(global: &GlobalArgs, args: SavepointArgs) -> u8 {
    if let Some(path) = &args.dispose {
        if args.job_id.is_some() {
            crate::errln!("Provided more arguments than required. Ignoring not needed arguments.");
        }
        return match path {
            Some(p) => match super::inspect::configure_storage(global, &args.remote.dynamic) {
                Ok(()) => dispose_offline(p, args.remote.json),
                Err(code) => code,
            },
            None => remote::usage(
                "Missing required argument: savepoint path. Usage: floe savepoint -d \
                 <savepoint-path>",
            ),
        };
    }
    let Some(given) = &args.job_id else {
        return remote::usage("Missing JobID. Specify a Job ID to trigger a savepoint.");
    };
    if !args.extra.is_empty() {
        crate::errln!("Provided more arguments than required. Ignoring not needed arguments.");
    }
    let job = match remote::job_id(given) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let client = match remote::client(global, &args.remote) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let json_out = args.remote.json;
    let say = |line: String| {
        if !json_out {
            crate::outln!("{line}");
        }
    };
    let mut body = Map::new();
    if let Some(t) = &args.target {
        body.insert("target-directory".into(), json!(remote::target_dir(t)));
    }
    body.insert("cancel-job".into(), json!(false));
    if let Some(f) = &args.format {
        body.insert("formatType".into(), json!(f.to_ascii_uppercase()));
    }
    if args.detached {
        say(format!(
            "Triggering savepoint in detached mode for job {job}."
        ));
    } else {
        say(format!("Triggering savepoint for job {job}."));
    }
    let what = format!("Failed to trigger a savepoint for the job {job}.");
    let path = format!("/jobs/{job}/savepoints");
    let trigger = match remote::post_trigger(&client, &path, Value::Object(body), &what) {
        Ok(t) => t,
        Err(code) => return code,
    };
    if args.detached {
        if json_out {
            remote::print_json(&json!({"job-id": job.0, "request-id": trigger}));
        } else {
            crate::outln!("Successfully trigger manual savepoint, triggerId: {trigger}");
        }
        return 0;
    }
    say("Waiting for response...".into());
    match remote::wait_for_savepoint(&client, &job, &trigger, args.timeout) {
        Ok(location) => {
            if json_out {
                remote::print_json(
                    &json!({"job-id": job.0, "request-id": trigger, "location": location}),
                );
            } else {
                crate::outln!("Savepoint completed. Path: {location}");
                crate::outln!(
                    "You can resume your program from this savepoint with the run command."
                );
            }
            0
        }
        Err(e) => remote::failed(&what, &e),
    }
}

/// `floe savepoint -d PATH`: refuses anything that is not a floe savepoint.
fn dispose_offline(given: &str, json_out: bool) -> u8 {
    if !json_out {
        crate::outln!("Disposing savepoint '{given}'.");
    }
    match dispose_given(Path::new(given)) {
        Ok(d) => {
            if json_out {
                remote::print_json(&json!({
                    "savepoint-path": given,
                    "directory": d.dir.display().to_string(),
                    "files-deleted": d.files,
                    "directory-removed": d.dir_removed,
                }));
            } else {
                crate::outln!("Savepoint '{given}' disposed.");
                if !d.dir_removed {
                    crate::outln!(
                        "The directory {} was kept: it holds files that are not the \
                         savepoint's.",
                        d.dir.display()
                    );
                }
            }
            0
        }
        Err(e) => {
            remote::failed(&format!("Could not dispose savepoint '{given}'."), &e);
            EXIT_FAILURE
        }
    }
}
