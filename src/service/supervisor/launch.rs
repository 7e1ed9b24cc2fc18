//! Starting one job, the part `floe run` and `floe serve` share: configuration layered over
//! the pipeline's settings, the restore snapshot read and its mapping checked before anything
//! is created on disk, the plan, the checkpoint store, and the closure that builds each
//! attempt for `runtime::failover`.
//!
//! [`prepare`] does every check that can refuse the job (and nothing that runs it); [`start`]
//! spawns the failover loop and the registry follower on the current tokio runtime. Neither
//! prints: errors come back typed ([`LaunchError`]) with the exit code they deserve.

use super::check::{check, plan_within_budget, CheckError, Checked};
use super::follow::follow_job;
use crate::checkpoint::metadata::SnapshotKind;
use crate::checkpoint::restore::{self, RestoreError, RestoreMapping};
use crate::checkpoint::storage::FsCheckpointStore;
use crate::checkpoint::{CheckpointError, JobId};
use crate::config::{self, ClaimMode, Config, ConfigError, Entry, LoadOptions};
use crate::pipeline::plan::Plan;
use crate::pipeline::Pipeline;
use crate::runtime::failover::{self, Attempt, FailoverError, FailoverHandle, FailoverSetup};
use crate::runtime::{CheckpointingOptions, JobOptions, JobReport};
use crate::service::registry::{now_ms, RestoreInfo};
use crate::service::{JobRegistry, JobState};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// `-s latest`: the newest complete checkpoint of this pipeline under the checkpoint directory.
pub const LATEST: &str = "latest";

/// What to start.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The validated pipeline.
    pub pipeline: Pipeline,
    /// `--conf-dir` (`None`: `FLOE_CONF_DIR`, else `./conf`).
    pub conf_dir: Option<PathBuf>,
    /// `-D key=value`, with `-p` and `--claimMode` already turned into keys.
    pub dynamic: Vec<String>,
    /// `-s`: a checkpoint or savepoint path, or [`LATEST`]; `None` also reads
    /// `execution.state-recovery.path`.
    pub restore: Option<String>,
    /// `-n`, or-ed with `execution.state-recovery.ignore-unclaimed-state` and the pipeline's
    /// `allow-non-restored-state`.
    pub allow_non_restored: bool,
    /// `--dry-run`: the job is prepared to show its restore and never started, so nothing is
    /// created on disk (no checkpoint store).
    pub dry_run: bool,
}

/// Why a job could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Refused by the one check `floe validate` makes too.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// `-s latest` without a checkpoint directory.
    #[error(transparent)]
    NoCheckpointDir(RestoreError),
    /// The snapshot cannot be found, read or mapped onto this pipeline.
    #[error(transparent)]
    Restore(RestoreError),
    #[error(transparent)]
    Store(CheckpointError),
    #[error("bug: {0}; please report this")]
    Bug(String),
    /// `floe serve` was asked to stop while the job was being prepared.
    #[error("not started: floe serve is stopping")]
    Stopping,
}

impl LaunchError {
    /// 78 for what the user must fix in configuration or pipeline, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            LaunchError::Restore(_) | LaunchError::Bug(_) | LaunchError::Stopping => {
                crate::exit::EXIT_FAILURE
            }
            _ => crate::exit::EXIT_CONFIG,
        }
    }
}

/// A job checked and ready to start.
pub struct PreparedJob {
    pub job_id: JobId,
    pub name: String,
    pub plan: Plan,
    pub config: Arc<Config>,
    pub entries: Arc<Vec<Entry>>,
    pub warnings: Vec<String>,
    /// The snapshot the first attempt restores, its path as given and its mapping.
    pub restore_from: Option<(String, RestoreMapping)>,
    setup: FailoverSetup,
    build: BuildFn,
    restore_info: Option<RestoreInfo>,
}

/// Builds each attempt: the first restores the `-s` snapshot, a restart the latest completed
/// checkpoint the failover loop picked.
type BuildFn =
    Box<dyn FnMut(&Attempt<'_>) -> Result<(Plan, JobOptions), RestoreError> + Send + 'static>;

/// Loads the configuration for `spec` (conf file, environment, pipeline settings, `-D`).
pub fn load_config(spec: &LaunchSpec) -> Result<config::Loaded, LaunchError> {
    Ok(config::load(&LoadOptions {
        conf_dir: spec.conf_dir.clone(),
        pipeline_settings: spec.pipeline.settings.clone(),
        dynamic: spec.dynamic.clone(),
    })?)
}

/// Registers the job's checkpoint and savepoint directories with its own `s3.*` settings
/// (local directories need nothing).
pub fn configure_storage(cfg: &Config, owner: &str) -> Result<(), CheckpointError> {
    let dirs = [&cfg.state.checkpoints_dir, &cfg.state.savepoints_dir];
    for dir in dirs.into_iter().flatten() {
        crate::checkpoint::storage::configure_root(dir, &cfg.s3, owner)?;
    }
    Ok(())
}

/// Every check that can refuse the job: [`check`] (configuration, plan, memory, operators),
/// then the restore snapshot and its mapping, and the checkpoint store. Creates the store's
/// directory, nothing else.
pub fn prepare(spec: LaunchSpec) -> Result<PreparedJob, LaunchError> {
    let checked = check(&spec)?;
    prepare_with(spec, checked)
}

/// [`prepare`] after [`check`] passed (its warnings already shown by the caller).
pub fn prepare_with(spec: LaunchSpec, checked: Checked) -> Result<PreparedJob, LaunchError> {
    let pipeline = spec.pipeline;
    let Checked {
        loaded,
        plan: checked_plan,
        warnings,
        ..
    } = checked;
    let cfg = loaded.config;
    // How this job's s3:// checkpoint and savepoint directories are reached: its own `s3.*`.
    configure_storage(&cfg, &pipeline.name).map_err(LaunchError::Store)?;
    let restore_path = restore_path(spec.restore.clone(), &cfg, &pipeline.name)?;
    let allow_non_restored = spec.allow_non_restored
        || cfg.recovery.ignore_unclaimed_state
        || pipeline.allow_non_restored_state;
    let snapshot = match &restore_path {
        Some(path) => Some((
            path.clone(),
            restore::load_snapshot(path).map_err(LaunchError::Restore)?,
        )),
        None => None,
    };
    if let (Some((_, s)), ClaimMode::Claim) = (&snapshot, cfg.recovery.claim_mode) {
        restore::check_claimable(s).map_err(LaunchError::Restore)?;
    }
    // A job that does not fix its max parallelism adopts the checkpoint's, as Flink does.
    let adopted = snapshot
        .as_ref()
        .and_then(|(_, s)| restore::keyed_max_parallelism(&s.metadata))
        .filter(|m| cfg.max_parallelism.is_none() && *m != checked_plan.max_parallelism);
    let plan = match adopted {
        Some(m) => plan_within_budget(&pipeline, &cfg, Some(m))?.0,
        None => checked_plan,
    };
    let explicit_max = cfg.max_parallelism.is_some();
    let job_id = JobId::random();
    let mut restore_from = None;
    if let Some((path, snapshot)) = &snapshot {
        // Refuse a mapping that cannot work before creating anything on disk.
        let targets = restore::targets_of(&plan, explicit_max);
        let mapping = restore::map_checkpoint(
            &snapshot.metadata,
            &restore::pointer(&snapshot.dir),
            &targets,
            allow_non_restored,
        )
        .map_err(|e| LaunchError::Restore(e.into()))?;
        log_skipped_state(&mapping, &targets);
        restore_from = Some((path.clone(), mapping));
    }
    let store = open_store(&cfg, &job_id, &pipeline.name, spec.dry_run)?;
    // The REST API's `latest.restored`: the snapshot this job starts from.
    let restore_info = snapshot.as_ref().map(|(_, s)| RestoreInfo {
        id: s.metadata.checkpoint_id,
        restore_timestamp: now_ms(),
        is_savepoint: s.metadata.kind == SnapshotKind::Savepoint,
        external_path: restore::pointer(&s.dir),
    });
    let build = build_fn(BuildInputs {
        name: pipeline.name.clone(),
        job_id: job_id.clone(),
        plan: plan.clone(),
        checkpointing: cfg.checkpointing.clone(),
        initial_path: snapshot.as_ref().map(|(p, _)| p.clone()),
        explicit_max,
        allow_non_restored,
    });
    let setup = FailoverSetup {
        job_id: job_id.clone(),
        name: pipeline.name.clone(),
        strategy: cfg.restart.clone(),
        store,
        initial: snapshot.map(|(_, s)| s),
        claim_mode: cfg.recovery.claim_mode,
    };
    Ok(PreparedJob {
        job_id,
        name: pipeline.name.clone(),
        plan,
        config: Arc::new(cfg),
        entries: Arc::new(loaded.entries),
        warnings,
        restore_from,
        setup,
        build,
        restore_info,
    })
}

/// The snapshot to start from: `-s` (or `execution.state-recovery.path`), with `latest`
/// resolved to the job's newest checkpoint.
fn restore_path(
    given: Option<String>,
    cfg: &Config,
    name: &str,
) -> Result<Option<String>, LaunchError> {
    match given.or_else(|| cfg.recovery.path.clone()) {
        Some(p) if p == LATEST => match &cfg.state.checkpoints_dir {
            None => Err(LaunchError::NoCheckpointDir(RestoreError::NoCheckpointDir)),
            Some(dir) => {
                let found = restore::find_latest(dir, name).map_err(LaunchError::Restore)?;
                crate::service::console::line(&format!("-s latest: {}", found.display()));
                Ok(Some(found.display().to_string()))
            }
        },
        other => Ok(other),
    }
}

/// The job's checkpoint store: also without an interval when a checkpoint directory is set,
/// since savepoints need it. Creates the store's directory.
fn open_store(
    cfg: &Config,
    job_id: &JobId,
    name: &str,
    dry_run: bool,
) -> Result<Option<Arc<FsCheckpointStore>>, LaunchError> {
    let wants_store = cfg.checkpointing.interval.is_some() || cfg.state.checkpoints_dir.is_some();
    if !wants_store || dry_run {
        return Ok(None);
    }
    let store = FsCheckpointStore::new(&cfg.state, &cfg.checkpointing, job_id.clone(), name)
        .map_err(LaunchError::Store)?;
    Ok(Some(Arc::new(store)))
}

/// What every attempt of a job is built from.
struct BuildInputs {
    name: String,
    job_id: JobId,
    plan: Plan,
    checkpointing: config::CheckpointingConfig,
    /// The `-s` path as given, for the first attempt's log line.
    initial_path: Option<String>,
    explicit_max: bool,
    allow_non_restored: bool,
}

/// The closure the failover loop calls for each attempt: the plan, the restored state and
/// the checkpointing options.
fn build_fn(inputs: BuildInputs) -> BuildFn {
    let mode = inputs.checkpointing.mode;
    Box::new(move |attempt: &Attempt<'_>| {
        let i = &inputs;
        let mut options = JobOptions::new(i.name.clone());
        options.checkpointing_mode = mode;
        if let Some(snapshot) = attempt.restore {
            if attempt.number == 0 {
                // The path may come from a request (`POST /jobs`): one line, whatever it holds.
                crate::service::console::line(&format!(
                    "Starting job {} from savepoint {} ({})",
                    i.job_id,
                    crate::text::escape(i.initial_path.as_deref().unwrap_or_default()),
                    if i.allow_non_restored {
                        "allowing non restored state"
                    } else {
                        ""
                    }
                ));
            }
            let (_, state) =
                restore::prepare(snapshot, &i.plan, i.explicit_max, i.allow_non_restored)?;
            options.restore = Some(state);
            tracing::info!(
                checkpoint_id = snapshot.metadata.checkpoint_id,
                "Restoring job {} from {}.",
                i.job_id,
                describe_snapshot(snapshot)
            );
        }
        if let Some(store) = &attempt.store {
            options.checkpointing = Some(CheckpointingOptions {
                config: i.checkpointing.clone(),
                store: store.clone(),
                job_id: i.job_id.clone(),
                first_id: attempt.first_checkpoint_id,
            });
        }
        Ok((i.plan.clone(), options))
    })
}

/// A snapshot as Flink's `CompletedCheckpoint::toString` writes it in its restore log line:
/// `Checkpoint 7 @ 1700000000000 for <job id> located at file:/ck/<job id>/chk-7` (the time
/// is the trigger time, in ms since the epoch; `Savepoint` for a savepoint).
pub fn describe_snapshot(s: &crate::checkpoint::storage::LoadedSnapshot) -> String {
    let kind = match s.metadata.kind {
        SnapshotKind::Savepoint => "Savepoint",
        SnapshotKind::Checkpoint => "Checkpoint",
    };
    format!(
        "{kind} {} @ {} for {} located at {}",
        s.metadata.checkpoint_id,
        s.metadata.trigger_timestamp_ms,
        s.metadata.job_id,
        restore::pointer(&s.dir)
    )
}

/// Flink's lines for the state a restore leaves behind: each operator of the snapshot the new
/// job does not have (`Checkpoints.loadAndValidateCheckpoint`).
fn log_skipped_state(mapping: &RestoreMapping, targets: &[restore::TargetOperator]) {
    let ids: std::collections::HashSet<&str> = targets.iter().map(|t| t.id.as_str()).collect();
    for (id, fate) in &mapping.fates {
        match fate {
            restore::OperatorFate::Dropped => {
                tracing::info!("Skipping savepoint state for operator {id}.")
            }
            restore::OperatorFate::Empty if !ids.contains(id.as_str()) => {
                tracing::info!("Skipping empty savepoint state for operator {id}.")
            }
            _ => {}
        }
    }
}

impl PreparedJob {
    /// Checks that every file the restore snapshot names is there (a dry run skips this).
    pub fn check_restore_files(&self) -> Result<(), RestoreError> {
        match &self.setup.initial {
            Some(s) => restore::check_files(s),
            None => Ok(()),
        }
    }
}

/// [`prepare`] and the check of the restore's files, on a blocking thread: they read the
/// configuration and the snapshot (locally or from S3) and create the checkpoint directory.
pub async fn prepare_off_workers(spec: LaunchSpec) -> Result<PreparedJob, LaunchError> {
    tokio::task::spawn_blocking(move || {
        let job = prepare(spec)?;
        job.check_restore_files().map_err(LaunchError::Restore)?;
        Ok(job)
    })
    .await
    .unwrap_or_else(|e| Err(LaunchError::Bug(format!("preparing a job panicked: {e}"))))
}

/// A job started by [`start`].
pub struct StartedJob {
    pub job_id: JobId,
    pub name: String,
    pub handle: FailoverHandle,
    /// Set when the API stopped the job with a savepoint (`floe stop`).
    pub stopped_by_api: Arc<AtomicBool>,
    /// Ends with the job; the registry already shows its final state.
    pub done: tokio::task::JoinHandle<Result<JobReport, FailoverError>>,
}

/// How a job of [`start`] ended (for `floe serve`'s supervisor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnded {
    pub job_id: JobId,
    pub state: JobState,
    pub error: Option<String>,
    /// A user ended it through the API: stopped with a savepoint, or cancelled.
    pub by_user: Option<crate::service::pipelines::Hold>,
    /// Checkpoints it completed (over its restarts).
    pub checkpoints: u64,
}

/// Called once with how a job ended.
pub type EndHook = Box<dyn FnOnce(JobEnded) + Send + 'static>;

/// Spawns the job's failover loop and the follower that registers it in `registry` once its
/// first attempt runs and answers the API's commands. When the job ends, its final state is
/// recorded in the registry, logged (Flink's `Job … switched from state RUNNING to …`), and
/// handed to `on_end` when given. Must be called inside a tokio runtime.
pub fn start(job: PreparedJob, registry: &JobRegistry, on_end: Option<EndHook>) -> StartedJob {
    let handle = FailoverHandle::new();
    let stopped_by_api = Arc::new(AtomicBool::new(false));
    let follower = tokio::spawn(follow_job(
        handle.clone(),
        registry.clone(),
        job.job_id.clone(),
        job.name.clone(),
        super::follow::FollowContext {
            plan: job.plan.clone(),
            config: job.config,
            entries: job.entries,
            restore: job.restore_info,
        },
        stopped_by_api.clone(),
    ));
    let registry = registry.clone();
    let job_id = job.job_id.clone();
    let name = job.name.clone();
    let plan = job.plan;
    let loop_handle = handle.clone();
    let setup = job.setup;
    let build = job.build;
    let by_api = stopped_by_api.clone();
    let done = tokio::spawn(async move {
        let result = failover::run(setup, loop_handle.clone(), build).await;
        follower.abort();
        if registry.get(&job_id).is_none() {
            // It ended before its first attempt ran (an operator that cannot start): list it
            // all the same, so that `/jobs` shows why.
            drop(registry.register(crate::service::JobRegistration::new(
                job_id.clone(),
                name.clone(),
                &plan,
                Arc::new(crate::runtime::JobMetrics::default()),
            )));
        }
        let (state, error) = match &result {
            Ok(r) if r.status == crate::runtime::JobStatus::Cancelled => (JobState::Canceled, None),
            Ok(_) => (JobState::Finished, None),
            // Cancelled while it waited to restart after a failure: cancelled all the same.
            Err(FailoverError::StoppedWhileRestarting { .. }) if loop_handle.cancel_requested() => {
                (JobState::Canceled, None)
            }
            Err(e) => (JobState::Failed, Some(e.to_string())),
        };
        match &error {
            Some(e) => tracing::error!(
                job = %name,
                job_id = %job_id,
                "Job {name} ({job_id}) switched from state RUNNING to FAILED: {e}"
            ),
            None => tracing::info!(
                job = %name,
                job_id = %job_id,
                "Job {name} ({job_id}) switched from state RUNNING to {state}."
            ),
        }
        registry.finish(&job_id, state, error.clone());
        if let Some(hook) = on_end {
            let by_user = if by_api.load(std::sync::atomic::Ordering::SeqCst) {
                Some(crate::service::pipelines::Hold::Stopped)
            } else if state == JobState::Canceled {
                Some(crate::service::pipelines::Hold::Cancelled)
            } else {
                None
            };
            hook(JobEnded {
                job_id: job_id.clone(),
                state,
                error,
                by_user,
                checkpoints: loop_handle.checkpoints_completed(),
            });
        }
        result
    });
    StartedJob {
        job_id: job.job_id,
        name: job.name,
        handle,
        stopped_by_api,
        done,
    }
}
