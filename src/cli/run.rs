//! `floe run FILE [-p N] [-D k=v]...`: run a pipeline in this process, as `flink run` does in
//! attached mode: it returns when the job ends.
//!
//! A failing operator restarts the job in this process as `restart-strategy.type` says (see
//! `runtime::failover`).
//!
//! Ctrl-C (SIGINT) or SIGTERM stops the job cleanly: sources stop, what is in flight drains,
//! sinks flush, and floe exits 0. A second Ctrl-C cancels at once.

use super::{parse_dynamic, print_error, GlobalArgs, EXIT_CONFIG, EXIT_FAILURE};
use crate::checkpoint::restore;
use crate::checkpoint::storage::FsCheckpointStore;
use crate::checkpoint::JobId;
use crate::config::{self, LoadOptions};
use crate::pipeline::plan::Plan;
use crate::runtime::failover::{self, Attempt, FailoverHandle, FailoverSetup};
use crate::runtime::SavepointAction;
use crate::runtime::{CheckpointingOptions, JobOptions};
use crate::service::registry::RestoreInfo;
use crate::service::{ApiState, JobCommand, JobRegistration, JobRegistry, JobState, RestOptions};
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The pipeline file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Parallelism of every operator that does not set its own (overrides parallelism.default).
    #[arg(short = 'p', long = "parallelism", value_name = "N")]
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
    /// With -s: print which operators get their state back, which state is dropped and which
    /// operators start empty, then stop.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(global: &GlobalArgs, args: RunArgs) -> u8 {
    let pipeline = match crate::pipeline::load(&args.file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    let mut dynamic = args.dynamic;
    if let Some(p) = args.parallelism {
        dynamic.push(format!("parallelism.default={p}"));
    }
    if let Some(m) = &args.claim_mode {
        dynamic.push(format!("execution.state-recovery.claim-mode={m}"));
    }
    let loaded = match config::load(&LoadOptions {
        conf_dir: global.conf_dir.clone(),
        pipeline_settings: pipeline.settings.clone(),
        dynamic,
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let cfg = &loaded.config;
    // How s3:// checkpoint and savepoint paths are reached, for the rest of the process.
    crate::checkpoint::storage::configure(&cfg.s3);
    let restore_path = match args
        .from_savepoint
        .clone()
        .or_else(|| cfg.recovery.path.clone())
    {
        Some(p) if p == LATEST => match &cfg.state.checkpoints_dir {
            None => {
                print_error(&restore::RestoreError::NoCheckpointDir);
                return EXIT_CONFIG;
            }
            Some(dir) => match restore::find_latest(dir, &pipeline.name) {
                Ok(found) => {
                    eprintln!("-s latest: {}", found.display());
                    Some(found.display().to_string())
                }
                Err(e) => {
                    print_error(&e);
                    return EXIT_FAILURE;
                }
            },
        },
        other => other,
    };
    let allow_non_restored = args.allow_non_restored_state || cfg.recovery.ignore_unclaimed_state;
    let snapshot = match &restore_path {
        Some(path) => match restore::load_snapshot(path) {
            Ok(s) => Some((path.clone(), s)),
            Err(e) => {
                print_error(&e);
                return EXIT_FAILURE;
            }
        },
        None => None,
    };
    // A job that does not fix its max parallelism adopts the checkpoint's, as Flink does.
    let max_parallelism = cfg.max_parallelism.or_else(|| {
        snapshot
            .as_ref()
            .and_then(|(_, s)| restore::keyed_max_parallelism(&s.metadata))
    });
    let plan = match Plan::build(&pipeline, cfg.parallelism_default, max_parallelism) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: pipeline {}: {e}", args.file.display());
            return EXIT_CONFIG;
        }
    };
    let explicit_max = cfg.max_parallelism.is_some();
    let job_id = JobId::random();
    if let Some((path, snapshot)) = &snapshot {
        // Refuse a mapping that cannot work before creating anything on disk.
        let targets = restore::targets_of(&plan, explicit_max);
        let mapping = match restore::map_checkpoint(
            &snapshot.metadata,
            &restore::pointer(&snapshot.dir),
            &targets,
            allow_non_restored,
        ) {
            Ok(m) => m,
            Err(e) => {
                print_error(&e);
                return EXIT_FAILURE;
            }
        };
        if args.dry_run {
            print_mapping(path, &mapping);
            return 0;
        }
        if let Err(e) = restore::check_files(snapshot) {
            print_error(&e);
            return EXIT_FAILURE;
        }
    } else if args.dry_run {
        eprintln!(
            "error: --dry-run shows a restore: give the checkpoint or savepoint with -s PATH"
        );
        return EXIT_CONFIG;
    }
    // A store also without an interval when a checkpoint directory is set: savepoints need it.
    let store = if cfg.checkpointing.interval.is_some() || cfg.state.checkpoints_dir.is_some() {
        match FsCheckpointStore::new(
            &cfg.state,
            &cfg.checkpointing,
            job_id.clone(),
            &pipeline.name,
        ) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                print_error(&e);
                return EXIT_CONFIG;
            }
        }
    } else {
        None
    };
    let initial_path = snapshot.as_ref().map(|(p, _)| p.clone());
    // The REST API's `latest.restored`: the -s snapshot this run starts from.
    let restore_info = snapshot.as_ref().map(|(_, s)| RestoreInfo {
        id: s.metadata.checkpoint_id,
        restore_timestamp: crate::service::registry::now_ms(),
        is_savepoint: s.metadata.kind == crate::checkpoint::metadata::SnapshotKind::Savepoint,
        external_path: restore::pointer(&s.dir),
    });
    let setup = FailoverSetup {
        job_id: job_id.clone(),
        name: pipeline.name.clone(),
        strategy: cfg.restart.clone(),
        store,
        initial: snapshot.map(|(_, s)| s),
        claim_mode: cfg.recovery.claim_mode,
    };
    let checkpointing = cfg.checkpointing.clone();
    let mode = cfg.checkpointing.mode;
    let rest_plan = plan.clone();
    let name = pipeline.name.clone();
    let build_job_id = job_id.clone();
    // Builds each attempt: the first restores the -s snapshot, a restart the latest completed
    // checkpoint the failover loop picked.
    let build = move |attempt: &Attempt<'_>| -> Result<(Plan, JobOptions), restore::RestoreError> {
        let mut options = JobOptions::new(name.clone());
        options.checkpointing_mode = mode;
        if let Some(snapshot) = attempt.restore {
            if attempt.number == 0 {
                eprintln!(
                    "Starting job {build_job_id} from savepoint {} ({})",
                    initial_path.as_deref().unwrap_or_default(),
                    if allow_non_restored {
                        "allowing non restored state"
                    } else {
                        ""
                    }
                );
            }
            let (_, state) = restore::prepare(snapshot, &plan, explicit_max, allow_non_restored)?;
            options.restore = Some(state);
            tracing::info!(
                "Restoring job {build_job_id} from Savepoint {} @ 0 for {build_job_id} located at {}.",
                snapshot.metadata.checkpoint_id,
                restore::pointer(&snapshot.dir)
            );
        }
        if let Some(store) = &attempt.store {
            options.checkpointing = Some(CheckpointingOptions {
                config: checkpointing.clone(),
                store: store.clone(),
                job_id: build_job_id.clone(),
                first_id: attempt.first_checkpoint_id,
            });
        }
        Ok((plan.clone(), options))
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("floe-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    let rest = RestContext {
        plan: rest_plan,
        config: Arc::new(cfg.clone()),
        entries: Arc::new(loaded.entries.clone()),
        options: RestOptions::from_config(cfg),
        restore: restore_info,
    };
    rt.block_on(run_job(setup, build, job_id, rest))
}

/// What the REST API of this run needs to know of the job.
struct RestContext {
    plan: Plan,
    config: Arc<crate::config::Config>,
    entries: Arc<Vec<crate::config::Entry>>,
    options: RestOptions,
    restore: Option<RestoreInfo>,
}

/// Serves the REST API and the dashboard for this run's job. A taken port does not stop the
/// job: the warning names the fix, and the job runs without the API.
async fn start_rest(
    ctx: &RestContext,
    registry: &JobRegistry,
) -> Option<crate::service::RestServer> {
    let state = ApiState::new(registry.clone(), &ctx.options).with_disposal(Arc::new(|path| {
        crate::checkpoint::savepoint::dispose(path)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }));
    let app = crate::service::router(state).merge(crate::service::dashboard::routes());
    match crate::service::serve(app, &ctx.options).await {
        Ok(server) => Some(server),
        Err(e) => {
            tracing::warn!("the job runs without its REST API and dashboard: {e}");
            None
        }
    }
}

/// Registers the job once its first attempt runs, keeps the registry's view of it current
/// (metrics of the running attempt, restarts, restore point) and answers the API's commands.
async fn follow_job(
    handle: FailoverHandle,
    registry: JobRegistry,
    job_id: JobId,
    name: String,
    ctx: RestContext,
    stopped: Arc<AtomicBool>,
) {
    let mut current: Option<Arc<crate::runtime::JobMetrics>> = None;
    let mut restarts = 0;
    let mut commands = None;
    loop {
        if let Some(metrics) = handle.metrics() {
            match &current {
                None => {
                    let mut reg = JobRegistration::new(
                        job_id.clone(),
                        name.clone(),
                        &ctx.plan,
                        metrics.clone(),
                    );
                    let h = handle.clone();
                    reg.stats = Some(Arc::new(move || h.checkpoint_stats()));
                    reg.config = ctx.config.clone();
                    reg.entries = ctx.entries.clone();
                    reg.restore = ctx.restore.clone();
                    commands = Some(registry.register(reg));
                }
                Some(old) if !Arc::ptr_eq(old, &metrics) => {
                    let h = handle.clone();
                    registry.replace_sources(
                        &job_id,
                        metrics.clone(),
                        Some(Arc::new(move || h.checkpoint_stats())),
                    );
                }
                Some(_) => {}
            }
            current = Some(metrics);
        }
        let status = handle.status();
        if status.restarts > restarts {
            restarts = status.restarts;
            registry.record_restart(&job_id, status.last_failure.clone());
            if let Some(r) = &status.last_restore {
                registry.record_restore(
                    &job_id,
                    RestoreInfo {
                        id: r.checkpoint_id,
                        restore_timestamp: r.timestamp_ms,
                        is_savepoint: false,
                        external_path: restore::pointer(&r.path),
                    },
                );
            }
        }
        if current.is_some() && !status.restarting {
            registry.set_state(&job_id, JobState::Running);
        }
        // Until the first attempt runs, look often: the job should be listed as soon as it is.
        let period = if current.is_none() { 5 } else { 100 };
        let wait = tokio::time::sleep(std::time::Duration::from_millis(period));
        match commands.as_mut() {
            Some(rx) => {
                tokio::select! {
                    Some(cmd) = rx.recv() => answer(&handle, cmd, &stopped),
                    _ = wait => {}
                }
            }
            None => wait.await,
        }
    }
}

/// Answers one API command on the running job. Savepoints complete on their own time: the
/// reply is forwarded when the job's answer comes.
fn answer(handle: &FailoverHandle, command: JobCommand, stopped: &Arc<AtomicBool>) {
    let (target, action, reply) = match command {
        JobCommand::Cancel { reply } => {
            handle.cancel();
            let _ = reply.send(Ok(()));
            return;
        }
        JobCommand::TriggerSavepoint {
            target,
            cancel_job,
            reply,
        } => {
            let action = if cancel_job {
                SavepointAction::Cancel
            } else {
                SavepointAction::Keep
            };
            (target, action, reply)
        }
        JobCommand::Stop {
            target,
            drain,
            reply,
        } => {
            stopped.store(true, Ordering::Relaxed);
            (target, SavepointAction::Stop { drain }, reply)
        }
    };
    let Some(target) = target else {
        let _ = reply.send(Err(
            "Config key [execution.checkpointing.savepoint-dir] is not set. Property \
             [target-directory] must be provided."
                .to_string(),
        ));
        return;
    };
    let pending = handle.trigger_savepoint(PathBuf::from(target), action);
    tokio::spawn(async move {
        let result = pending
            .await
            .unwrap_or_else(|_| Err("the job ended before the savepoint completed".to_string()));
        let _ = reply.send(result);
    });
}

/// How long the REST API stays up after a stop-with-savepoint ended the job.
const STOP_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// `-s latest`: the newest complete checkpoint of this pipeline under the checkpoint directory.
const LATEST: &str = "latest";

fn print_mapping(path: &str, mapping: &restore::RestoreMapping) {
    println!(
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
        println!("  {id}: {what}");
    }
}

async fn run_job<F>(setup: FailoverSetup, build: F, job_id: JobId, rest: RestContext) -> u8
where
    F: FnMut(&Attempt<'_>) -> Result<(Plan, JobOptions), restore::RestoreError>,
{
    let name = setup.name.clone();
    let started = Instant::now();
    let handle = FailoverHandle::new();
    let registry = JobRegistry::new();
    let server = start_rest(&rest, &registry).await;
    let stopped_by_api = Arc::new(AtomicBool::new(false));
    let follower = tokio::spawn(follow_job(
        handle.clone(),
        registry.clone(),
        job_id.clone(),
        name.clone(),
        rest,
        stopped_by_api.clone(),
    ));
    let stopper = handle.clone();
    let signals = tokio::spawn(async move {
        wait_for_stop_signal().await;
        tracing::info!(
            "stop requested: stopping sources, draining, flushing sinks (again to cancel)"
        );
        stopper.stop();
        wait_for_stop_signal().await;
        tracing::warn!("second stop request: cancelling");
        stopper.cancel();
    });
    eprintln!("Job has been submitted with JobID {job_id}");
    tracing::info!(job = %name, job_id = %job_id, "job running");
    let result = failover::run(setup, handle.clone(), build).await;
    signals.abort();
    follower.abort();
    let (state, error) = match &result {
        Ok(r) if r.status == crate::runtime::JobStatus::Cancelled => (JobState::Canceled, None),
        Ok(_) => (JobState::Finished, None),
        Err(e) => (JobState::Failed, Some(e.to_string())),
    };
    registry.finish(&job_id, state, error);
    if let Some(server) = server {
        if stopped_by_api.load(Ordering::Relaxed) {
            // `floe stop` polls for the savepoint's path after the job has ended: keep
            // answering a moment so that it gets it.
            tokio::time::sleep(STOP_LINGER).await;
        }
        server.shutdown().await;
    }
    match result {
        Ok(report) => {
            eprintln!("Job with JobID {job_id} has finished.");
            eprintln!("Job Runtime: {} ms", started.elapsed().as_millis());
            let restarts = handle.status().restarts;
            if restarts > 0 {
                tracing::info!(restarts, "the job restarted {restarts} time(s) on failures");
            }
            for op in &report.operators {
                tracing::info!(
                    operator = %op.id,
                    parallelism = op.parallelism,
                    records_in = op.records_in,
                    records_out = op.records_out,
                    "operator totals"
                );
            }
            0
        }
        Err(e) => {
            eprintln!("Job with JobID {job_id} failed.");
            print_error(&e);
            EXIT_FAILURE
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
