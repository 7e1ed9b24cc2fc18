//! `floe run FILE [-p N] [-D k=v]...`: run a pipeline in this process, as `flink run` does in
//! attached mode: it returns when the job ends. `floe run -d FILE` instead submits it to a
//! running `floe serve` and returns with its job id, as `flink run -d`.
//!
//! A failing operator restarts the job in this process as `restart-strategy.type` says (see
//! `runtime::failover`). Preparing and starting the job is `service::supervisor::launch`,
//! which `floe serve` shares; this file adds the REST server of a single run, the signals and
//! the printing.
//!
//! Ctrl-C (SIGINT) or SIGTERM stops the job cleanly: sources stop, what is in flight drains,
//! sinks flush, and floe exits 0. A second Ctrl-C cancels at once.

use super::remote::{self, RemoteArgs};
use super::{
    load_and_check, parse_dynamic, print_error, report_launch_error, GlobalArgs, EXIT_CONFIG,
    EXIT_FAILURE,
};
use crate::checkpoint::restore;
use crate::service::supervisor::launch::{self, LaunchSpec, PreparedJob};
use crate::service::{ApiState, JobRegistry, RestOptions};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The pipeline file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Parallelism of every operator that does not set its own (overrides parallelism.default),
    /// 1 to 32768.
    #[arg(short = 'p', long = "parallelism", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=32768))]
    pub parallelism: Option<u32>,
    /// A configuration key=value, over every other source (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = parse_dynamic)]
    pub dynamic: Vec<String>,
    /// Restore from a checkpoint or savepoint: its directory or its `_metadata`
    /// (execution.state-recovery.path); `latest`: the newest complete checkpoint of this
    /// pipeline under the checkpoint directory.
    #[arg(short = 's', long = "fromSavepoint", value_name = "PATH")]
    pub from_savepoint: Option<String>,
    /// Skip state of operators the pipeline no longer has
    /// (execution.state-recovery.ignore-unclaimed-state).
    #[arg(short = 'n', long = "allowNonRestoredState")]
    pub allow_non_restored_state: bool,
    /// With -s (also -cm): who owns the restored snapshot (execution.state-recovery.claim-mode):
    /// NO_CLAIM (default) never deletes it, CLAIM lets retention delete it like one of this
    /// job's checkpoints; LEGACY is deprecated and taken as NO_CLAIM.
    #[arg(
        long = "claimMode",
        alias = "restoreMode",
        value_name = "MODE",
        value_parser = ["CLAIM", "NO_CLAIM", "LEGACY"],
        ignore_case = true,
    )]
    pub claim_mode: Option<String>,
    /// Check the job as if it started, then stop: print the plan (or, with -s, which
    /// operators get their state back, which state is dropped and which start empty).
    #[arg(long)]
    pub dry_run: bool,
    /// Submit the pipeline to a running `floe serve` (its REST API, `POST /jobs`), print the
    /// job id and return (as `flink run -d`).
    #[arg(short = 'd', long = "detached")]
    pub detached: bool,
    /// With -d: the REST API of the running floe, host:port (default: rest.address:rest.port
    /// from the configuration).
    #[arg(short = 'm', long = "jobmanager", value_name = "HOST:PORT")]
    pub jobmanager: Option<String>,
}

pub fn run(global: &GlobalArgs, args: RunArgs) -> u8 {
    if args.detached {
        return submit(global, &args);
    }
    let mut dynamic = args.dynamic.clone();
    if let Some(p) = args.parallelism {
        dynamic.push(format!("parallelism.default={p}"));
    }
    if let Some(m) = &args.claim_mode {
        dynamic.push(format!("execution.state-recovery.claim-mode={m}"));
    }
    let checked = load_and_check(&args.file, |pipeline| LaunchSpec {
        pipeline,
        conf_dir: global.conf_dir.clone(),
        dynamic,
        restore: args.from_savepoint.clone(),
        allow_non_restored: args.allow_non_restored_state,
        dry_run: args.dry_run,
    });
    let (spec, checked) = match checked {
        Ok(c) => c,
        Err(code) => return code,
    };
    announce_conf(global, checked.loaded.conf_file.as_deref());
    for w in &checked.warnings {
        tracing::warn!("{w}");
    }
    let job = match launch::prepare_with(spec, checked) {
        Ok(j) => j,
        Err(e) => return report_launch_error(&e),
    };
    if args.dry_run {
        match &job.restore_from {
            Some((path, mapping)) => print_mapping(path, mapping),
            None => print_plan(&job),
        }
        return 0;
    }
    if let Err(e) = job.check_restore_files() {
        print_error(&e);
        return EXIT_FAILURE;
    }
    let rt = match super::tokio_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let options = RestOptions::from_config(&job.config);
    rt.block_on(run_job(job, options))
}

/// Says which conf file the job's settings come from; without `--conf-dir` or
/// `FLOE_CONF_DIR` and no `./conf`, warns that Flink's built-in defaults apply.
fn announce_conf(global: &GlobalArgs, conf_file: Option<&std::path::Path>) {
    match conf_file {
        Some(f) => tracing::info!("configuration: {}", f.display()),
        None if global.conf_dir.is_none() => tracing::warn!(
            "no conf/flink-conf.yaml in {}: running with the built-in defaults (and the \
             pipeline's own settings); give --conf-dir DIR or FLOE_CONF_DIR for another \
             directory",
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "the working directory".into())
        ),
        None => {}
    }
}

/// `--dry-run` without `-s`: the plan the job would run, and what its channels take.
fn print_plan(job: &launch::PreparedJob) {
    crate::outln!("{}", job.plan.describe().trim_end());
    let m = crate::runtime::memory::estimate(&job.plan, crate::runtime::DEFAULT_CHANNEL_CAPACITY);
    crate::outln!(
        "channels between subtasks: {} ({} bytes each), about {} of taskmanager.memory.network.max {}",
        m.channels,
        m.per_channel,
        crate::textfile::human_bytes(m.bytes),
        crate::textfile::human_bytes(job.config.network_memory_max)
    );
    crate::outln!("dry run: the job was checked and not started");
}

/// `floe run -d`: sends the pipeline file's text (and -p, -D, -s, -n) to `POST /jobs` of a
/// running `floe serve`, prints `Job has been submitted with JobID <id>` and returns.
fn submit(global: &GlobalArgs, args: &RunArgs) -> u8 {
    if args.dry_run {
        return remote::usage("--dry-run runs here; it cannot be combined with -d/--detached.");
    }
    let text =
        match crate::textfile::read_text(&args.file, crate::pipeline::spec::MAX_PIPELINE_BYTES) {
            Ok(t) => t,
            Err(e) => {
                crate::errln!(
                    "error: cannot read the pipeline file {}: {e}",
                    args.file.display()
                );
                return EXIT_CONFIG;
            }
        };
    // Relative paths in the pipeline resolve from the file's directory, on the server as
    // here: send the absolute path along with the text.
    let path = std::path::absolute(&args.file).unwrap_or_else(|_| args.file.clone());
    let client = match remote::client(
        global,
        &RemoteArgs {
            jobmanager: args.jobmanager.clone(),
            dynamic: args
                .dynamic
                .iter()
                .filter(|d| d.trim_start().starts_with("rest."))
                .cloned()
                .collect(),
            json: false,
        },
    ) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut body = json!({
        "pipeline": text,
        "pipelinePath": path.display().to_string(),
        "dynamic": args.dynamic,
        "allowNonRestoredState": args.allow_non_restored_state,
    });
    if let Some(p) = args.parallelism {
        body["parallelism"] = json!(p);
    }
    if let Some(s) = &args.from_savepoint {
        body["savepointPath"] = json!(s);
    }
    if let Some(m) = &args.claim_mode {
        body["claimMode"] = json!(m.to_ascii_uppercase());
    }
    match client.post("/jobs", &body) {
        Ok(v) => match v["jobid"].as_str() {
            Some(id) => {
                crate::outln!("Job has been submitted with JobID {id}");
                0
            }
            None => remote::failed(
                "The program submission failed.",
                &format!("the answer of POST /jobs has no jobid: {v}"),
            ),
        },
        Err(e) => remote::failed(
            &format!(
                "Could not submit {} to {}.",
                args.file.display(),
                client.endpoint()
            ),
            &e,
        ),
    }
}

/// Serves the REST API and the dashboard for this run's job. A taken port does not stop the
/// job: the warning names the fix, and the job runs without the API.
async fn start_rest(
    options: &RestOptions,
    registry: &JobRegistry,
) -> Option<crate::service::RestServer> {
    let state = ApiState::new(registry.clone(), options).with_disposal(Arc::new(|path| {
        crate::checkpoint::savepoint::dispose(path)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }));
    let app = crate::service::router(state).merge(crate::service::dashboard::routes());
    match crate::service::serve(app, options).await {
        Ok(server) => Some(server),
        Err(e) => {
            tracing::warn!("the job runs without its REST API and dashboard: {e}");
            None
        }
    }
}

/// How long the REST API stays up after a stop-with-savepoint ended the job.
const STOP_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

fn print_mapping(path: &str, mapping: &restore::RestoreMapping) {
    crate::outln!(
        "restore from {path} (checkpoint {}), operator by operator:",
        mapping.checkpoint_id
    );
    for (id, fate) in &mapping.fates {
        let what = match fate {
            restore::OperatorFate::Restored => "restored",
            restore::OperatorFate::Dropped => "dropped (no such operator; allowed by -n)",
            restore::OperatorFate::Empty => "no state in the checkpoint",
            restore::OperatorFate::New => "new (starts empty)",
        };
        crate::outln!("  {id}: {what}");
    }
}

async fn run_job(job: PreparedJob, options: RestOptions) -> u8 {
    let started = Instant::now();
    let registry = JobRegistry::new();
    let server = start_rest(&options, &registry).await;
    let job = launch::start(job, &registry, None);
    let _rates = registry.spawn_rate_sampler();
    let (job_id, name) = (job.job_id.clone(), job.name.clone());
    let stopper = job.handle.clone();
    let signals = tokio::spawn(async move {
        use crate::service::signals::{wait_for_stop_or_closed_output, StopCause};
        match wait_for_stop_or_closed_output().await {
            StopCause::Signal => tracing::info!(
                "stop requested: stopping sources, draining, flushing sinks (again to cancel)"
            ),
            StopCause::OutputClosed => tracing::info!(
                "the reader of stdout or stderr went away: stopping the job as on Ctrl-C"
            ),
        }
        stopper.stop();
        crate::service::signals::wait_for_stop().await;
        tracing::warn!("second stop request: cancelling");
        stopper.cancel();
    });
    crate::errln!("Job has been submitted with JobID {job_id}");
    tracing::info!(job = %name, job_id = %job_id, "job running");
    let result = match job.done.await {
        Ok(r) => r,
        Err(e) => {
            crate::errln!("error: bug: the job's task ended abnormally: {e}");
            return EXIT_FAILURE;
        }
    };
    signals.abort();
    if let Some(server) = server {
        if job.stopped_by_api.load(Ordering::Relaxed) {
            // `floe stop` polls for the savepoint's path after the job has ended: keep
            // answering a moment so that it gets it.
            tokio::time::sleep(STOP_LINGER).await;
        }
        server.shutdown().await;
    }
    match result {
        Ok(report) if report.status == crate::runtime::JobStatus::Cancelled => {
            // Flink's client: a cancelled job is a failed execution (JobCancellationException).
            crate::errln!("Job with JobID {job_id} was cancelled.");
            crate::errln!("error: Job failed (JobID: {job_id})");
            crate::errln!("  caused by: Job was cancelled.");
            EXIT_FAILURE
        }
        Ok(report) => {
            crate::errln!("Job with JobID {job_id} has finished.");
            crate::errln!("Job Runtime: {} ms", started.elapsed().as_millis());
            let restarts = job.handle.status().restarts;
            if restarts > 0 {
                tracing::info!(restarts, "the job restarted {restarts} time(s) on failures");
            }
            for op in &report.operators {
                tracing::info!(
                    operator = %op.id,
                    parallelism = op.parallelism,
                    records_in = op.records_in,
                    records_out = op.records_out,
                    records_discarded = op.records_discarded,
                    "operator totals"
                );
            }
            0
        }
        Err(e) => {
            crate::errln!("Job with JobID {job_id} failed.");
            print_error(&e);
            EXIT_FAILURE
        }
    }
}
