//! `floe stop <jobId> [-p DIR] [-d]`: stop a running job with a savepoint through the REST API
//! (`POST /jobs/:id/stop`): sinks commit, the job ends FINISHED. Printed as `flink stop`.

use super::remote::{self, RemoteArgs};
use super::GlobalArgs;
use crate::checkpoint::JobId;
use clap::Args;
use serde_json::{json, Map, Value};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct StopArgs {
    /// The job to stop (32 hex characters; see `floe list`).
    #[arg(value_name = "JOB_ID")]
    pub job_id: Option<String>,
    /// Where to write the savepoint (default: execution.checkpointing.savepoint-dir of the
    /// running job).
    #[arg(short = 'p', long = "savepointPath", value_name = "DIR", num_args = 0..=1)]
    pub savepoint_path: Option<Option<String>>,
    /// Emit the maximum watermark before the savepoint, so timers and windows fire.
    #[arg(short = 'd', long = "drain")]
    pub drain: bool,
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

/// The job id and the target: `-p` takes an optional value, so in `stop -p <jobId>` the id
/// lands in `-p`; it is taken back when no other job id was given.
fn job_and_target(args: &StopArgs) -> (Option<String>, Option<String>) {
    let target = args.savepoint_path.clone().flatten();
    match (&args.job_id, target) {
        (None, Some(t)) if JobId::is_valid(&t.to_ascii_lowercase()) => (Some(t), None),
        (job, target) => (job.clone(), target),
    }
}

pub fn stop(global: &GlobalArgs, args: StopArgs) -> u8 {
    let (given, target) = job_and_target(&args);
    let Some(given) = given else {
        return remote::usage("Missing JobID. Specify a Job ID to stop a job.");
    };
    let job = match remote::job_id(&given) {
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
    let format = args
        .format
        .as_deref()
        .unwrap_or("canonical")
        .to_ascii_uppercase();
    let mut body = Map::new();
    if let Some(t) = &target {
        body.insert("targetDirectory".into(), json!(remote::target_dir(t)));
    }
    body.insert("drain".into(), json!(args.drain));
    if args.format.is_some() {
        body.insert("formatType".into(), json!(format));
    }
    say(format!(
        "{} job \"{job}\" with a {format} savepoint.",
        if args.drain { "Draining" } else { "Suspending" }
    ));
    if args.detached {
        say(format!(
            "Triggering stop-with-savepoint in detached mode for job {job}."
        ));
    } else {
        say(format!("Triggering stop-with-savepoint for job {job}."));
    }
    let what = format!("Could not stop with a savepoint job \"{job}\".");
    let path = format!("/jobs/{job}/stop");
    let trigger = match remote::post_trigger(&client, &path, Value::Object(body), &what) {
        Ok(t) => t,
        Err(code) => return code,
    };
    if args.detached {
        if json_out {
            remote::print_json(
                &json!({"job-id": job.0, "request-id": trigger, "drain": args.drain}),
            );
        } else {
            crate::outln!(
                "Successfully trigger stop-with-savepoint in detached mode, triggerId: {trigger}"
            );
        }
        return 0;
    }
    say("Waiting for response...".into());
    match remote::wait_for_savepoint(&client, &job, &trigger, args.timeout) {
        Ok(location) => {
            if json_out {
                remote::print_json(&json!({
                    "job-id": job.0,
                    "request-id": trigger,
                    "drain": args.drain,
                    "location": location,
                }));
            } else {
                crate::outln!("Savepoint completed. Path: {location}");
            }
            0
        }
        Err(e) => remote::failed(&what, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(job: Option<&str>, p: Option<Option<&str>>) -> StopArgs {
        StopArgs {
            job_id: job.map(Into::into),
            savepoint_path: p.map(|o| o.map(Into::into)),
            drain: false,
            detached: false,
            format: None,
            timeout: None,
            remote: RemoteArgs {
                jobmanager: None,
                dynamic: Vec::new(),
                json: false,
            },
        }
    }

    #[test]
    fn a_job_id_taken_by_the_optional_savepoint_path_is_given_back() {
        let id = "8f797489a0bbec8f9bbc61e6b7e3f916";
        assert_eq!(
            job_and_target(&args(None, Some(Some(id)))),
            (Some(id.into()), None)
        );
        assert_eq!(
            job_and_target(&args(Some(id), Some(Some("/sp")))),
            (Some(id.into()), Some("/sp".into()))
        );
        assert_eq!(
            job_and_target(&args(Some(id), Some(None))),
            (Some(id.into()), None)
        );
        assert_eq!(
            job_and_target(&args(None, Some(Some("/sp")))),
            (None, Some("/sp".into()))
        );
    }
}
