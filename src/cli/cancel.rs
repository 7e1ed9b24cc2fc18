//! `floe cancel <jobId>`: cancel a running job at once, without a savepoint, through the REST
//! API (`PATCH /jobs/:id?mode=cancel`). Printed as `flink cancel`. As Flink's, it returns when
//! the API has accepted the cancellation; cancelling a job that already ended succeeds.

use super::remote::{self, RemoteArgs};
use super::GlobalArgs;
use clap::Args;
use serde_json::json;

#[derive(Args, Debug)]
pub struct CancelArgs {
    /// The job to cancel (32 hex characters; see `floe list`).
    #[arg(value_name = "JOB_ID")]
    pub job_id: Option<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn cancel(global: &GlobalArgs, args: CancelArgs) -> u8 {
    let Some(given) = &args.job_id else {
        return remote::usage("Missing JobID. Specify a Job ID to cancel a job.");
    };
    let job = match remote::job_id(given) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let client = match remote::client(global, &args.remote) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !args.remote.json {
        crate::outln!("Cancelling job {job}.");
    }
    match client.patch(&format!("/jobs/{job}?mode=cancel")) {
        Ok(_) => {
            if args.remote.json {
                remote::print_json(&json!({"job-id": job.0, "cancelled": true}));
            } else {
                crate::outln!("Cancelled job {job}.");
            }
            0
        }
        Err(e) => remote::failed(&format!("Could not cancel job {job}."), &e),
    }
}
