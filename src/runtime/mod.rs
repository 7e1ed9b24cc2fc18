//! The runtime: runs a [`Plan`] as subtasks on tokio, connected by bounded channels of
//! batches, and reports how the job ended.
//!
//! - `memory`: what a plan's channels cost, before any is created.
//! - `message`: what crosses a channel (batches, barriers, end of stream).
//! - `barrier`: barrier alignment as a pure decision (block / snapshot / release).
//! - `channel`: the bounded channel between two subtasks, small enough for p × p of them.
//! - `gate`: a subtask's input channels, any of which can be blocked.
//! - `exchange`: outgoing edges: forward, rebalance, hash by key group.
//! - `chain`: the chained operators of a task, called in turn on each batch.
//! - `task`: the loops of a source task and an operator task.
//! - `watermark`: a subtask's event time over its input channels (the minimum, idleness).
//! - `metrics`: records in/out per operator and subtask.
//! - `source`: the source a task runs (catalogue or trait object).
//! - `checkpointing`: the checkpoint driver (trigger, snapshots to storage, acks, completion,
//!   failures, retention at the end), and the restore inputs of a job.
//! - `failover`: restart strategies and the loop that restarts a failed job in-process from
//!   its latest completed checkpoint.
//!
//! One bounded channel per (upstream subtask, downstream subtask) pair: a full channel makes
//! the sender wait, so a slow sink slows the source and memory stays bounded by
//! `channel_capacity` batches per channel. Every task is spawned on the current tokio runtime.
//!
//! It knows no YAML and no configuration files: the caller passes a plan and [`JobOptions`].

pub mod barrier;
pub mod chain;
pub mod channel;
pub mod checkpointing;
pub mod exchange;
pub mod failover;
pub mod gate;
pub mod memory;
pub mod message;
pub mod metrics;
pub mod task;
pub mod watermark;

pub use crate::checkpoint::coordinator::CheckpointStats;
pub use crate::operators::task_source::{DynSource, TaskSource};
pub use barrier::{BarrierAligner, CheckpointingMode, Decision};
pub use checkpointing::{
    CheckpointNotice, CheckpointOutcome, CheckpointingOptions, RestoreState, SavepointAction,
};
pub use message::{Barrier, BarrierKind, CheckpointId, Message};
pub use metrics::{JobMetrics, OperatorMetrics, SubtaskMetrics};

use crate::checkpoint::coordinator::OperatorLayout;
use crate::checkpoint::JobTermination;
use crate::operators::{BuildContext, OperatorError};
use crate::pipeline::plan::{Exchange, Factory, Plan};
use crate::pipeline::OperatorId;
use chain::{panic_message, Chain, ChainedOperator};
use channel::{Receiver, Sender};
use checkpointing::{DriverHandle, JobShape, TaskShape};
use exchange::{Disconnected, OutputEdge, Outputs};
use gate::InputGate;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use task::{Injection, SourceSlot, TaskContext};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How many batches a channel holds before its sender waits.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 4;

/// What a job needs besides its plan.
#[derive(Debug)]
pub struct JobOptions {
    /// The job's name, for logs and errors.
    pub name: String,
    /// Batches per channel (at least 1).
    pub channel_capacity: usize,
    /// How barriers align at multi-input subtasks (`execution.checkpointing.mode`);
    /// replaced by `checkpointing.config.mode` when `checkpointing` is set.
    pub checkpointing_mode: CheckpointingMode,
    /// Checkpoint storage: periodic checkpoints when `config.interval` is set, savepoints on
    /// request either way.
    pub checkpointing: Option<CheckpointingOptions>,
    /// State to put back before the first record (`floe run -s`).
    pub restore: Option<RestoreState>,
    /// Checkpoint settings that change while the job runs (`floe serve` after an edit of
    /// `flink-conf.yaml`): the checkpoint driver applies each new value for its next
    /// checkpoint. `FailoverHandle` fills it in.
    pub live: Option<tokio::sync::watch::Receiver<Option<crate::config::live::LiveSettings>>>,
    /// Report every barrier alignment as a [`TaskEvent`] ([`JobHandle::take_events`]). Off
    /// unless a reader asks: unread, the events would pile up for as long as the job runs.
    pub task_events: bool,
}

impl JobOptions {
    pub fn new(name: impl Into<String>) -> Self {
        JobOptions {
            name: name.into(),
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            checkpointing_mode: CheckpointingMode::ExactlyOnce,
            checkpointing: None,
            restore: None,
            live: None,
            task_events: false,
        }
    }
}

/// Why one subtask stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("operator \"{operator}\" (subtask {}/{parallelism}) failed: {error}", subtask + 1)]
    Operator {
        operator: OperatorId,
        subtask: u32,
        parallelism: u32,
        #[source]
        error: OperatorError,
    },
    #[error(
        "bug: operator \"{operator}\" (subtask {}/{parallelism}) panicked: {message}; please report this",
        subtask + 1
    )]
    Panic {
        operator: OperatorId,
        subtask: u32,
        parallelism: u32,
        message: String,
    },
    /// A neighbour went away (it failed, or the job is being cancelled).
    #[error("a connected subtask went away")]
    Disconnected,
    #[error("cancelled")]
    Cancelled,
}

impl From<Disconnected> for TaskError {
    fn from(_: Disconnected) -> Self {
        TaskError::Disconnected
    }
}

/// Why a job could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("operator \"{operator}\" (subtask {}/{parallelism}) cannot start: {error}", subtask + 1)]
    Build {
        operator: OperatorId,
        subtask: u32,
        parallelism: u32,
        #[source]
        error: OperatorError,
    },
    #[error("operator \"{operator}\" (subtask {}/{parallelism}) cannot restore its state: {error}", subtask + 1)]
    Restore {
        operator: OperatorId,
        subtask: u32,
        parallelism: u32,
        #[source]
        error: OperatorError,
    },
    #[error(
        "bug: restored state for operator \"{operator}\" subtask {} matches no subtask of the \
         job; the restore mapping should have refused or dropped it",
        subtask + 1
    )]
    UnusedRestoreState { operator: OperatorId, subtask: u32 },
    #[error("bug: the job must be started inside a tokio runtime")]
    NoRuntime,
    #[error("bug: invalid plan: {0}")]
    InvalidPlan(String),
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job \"{job}\" failed: {error}")]
    Failed {
        job: String,
        #[source]
        error: TaskError,
    },
    #[error(
        "bug: task \"{task}\" (subtask {}/{parallelism}) of job \"{job}\" panicked: {message}; please report this",
        subtask + 1
    )]
    Panicked {
        job: String,
        task: String,
        subtask: u32,
        parallelism: u32,
        message: String,
    },
    /// Too many consecutive checkpoint failures (`tolerable-failed-checkpoints`).
    #[error("job \"{job}\" failed: {message}")]
    Checkpoint { job: String, message: String },
    #[error("bug: job \"{job}\": {message}")]
    Internal { job: String, message: String },
}

/// What a subtask tells the job while running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEvent {
    /// Barrier aligned at this subtask (all its inputs delivered it) and forwarded downstream.
    Snapshot {
        task: usize,
        subtask: u32,
        barrier: Barrier,
    },
}

/// How a job ended without failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Every source ended and the pipeline drained.
    Finished,
    /// `stop()` ended the sources; the pipeline drained.
    Stopped,
    /// `cancel()` stopped everything at once, without draining.
    Cancelled,
}

/// One operator's totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorReport {
    pub id: OperatorId,
    pub parallelism: u32,
    pub records_in: u64,
    pub records_out: u64,
    /// Records discarded: input that did not parse (dropped), records too late for their
    /// window.
    pub records_discarded: u64,
}

/// How a job went.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub name: String,
    pub status: JobStatus,
    pub duration: Duration,
    /// In plan order.
    pub operators: Vec<OperatorReport>,
    /// With checkpointing on: what happened to the job's checkpoints.
    pub checkpoints: Option<CheckpointStats>,
}

impl JobReport {
    pub fn operator(&self, id: &str) -> Option<&OperatorReport> {
        self.operators.iter().find(|o| o.id.0 == id)
    }
}

/// Stops or cancels a running job; cheap to clone (the CLI's Ctrl-C handler holds one).
#[derive(Clone)]
pub struct JobControl {
    cancel: CancellationToken,
    stop: Arc<AtomicBool>,
    user_cancelled: Arc<AtomicBool>,
    triggers: Vec<UnboundedSender<Injection>>,
    /// Savepoint requests for the checkpoint driver; `None` without checkpoint storage.
    savepoints: Option<UnboundedSender<checkpointing::SavepointRequest>>,
    /// Set by the driver when a stop-with-savepoint completed: the job ends FINISHED.
    finished_by_savepoint: Arc<AtomicBool>,
}

impl JobControl {
    fn new(
        cancel: CancellationToken,
        stop: Arc<AtomicBool>,
        triggers: Vec<UnboundedSender<Injection>>,
        savepoints: Option<UnboundedSender<checkpointing::SavepointRequest>>,
    ) -> JobControl {
        JobControl {
            cancel,
            stop,
            user_cancelled: Arc::new(AtomicBool::new(false)),
            triggers,
            savepoints,
            finished_by_savepoint: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sources stop and end their streams; the pipeline drains, sinks flush, the job finishes.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Stop at once: every task is dropped at its next await, nothing is flushed.
    pub fn cancel(&self) {
        self.user_cancelled.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }

    /// Injects `barrier` at every source subtask, between two records. Returns false if the
    /// sources have finished.
    pub fn inject_barrier(&self, barrier: Barrier) -> bool {
        self.inject(Injection {
            barrier,
            stop: None,
        })
    }

    /// As [`JobControl::inject_barrier`]; with `stop`, every source stops at the barrier.
    pub(crate) fn inject(&self, injection: Injection) -> bool {
        let mut any = false;
        for t in &self.triggers {
            any |= t.send(injection).is_ok();
        }
        any
    }

    /// Takes a savepoint into a new `savepoint-<job>-<random>` directory under `target_dir`,
    /// then does `action`. The answer is the completed savepoint (its `path` the savepoint
    /// directory) or why it failed; a failed savepoint fails only this request, never the
    /// job. Needs checkpoint storage ([`JobOptions::checkpointing`]), not an interval.
    pub fn trigger_savepoint(
        &self,
        target_dir: std::path::PathBuf,
        action: SavepointAction,
    ) -> tokio::sync::oneshot::Receiver<Result<crate::checkpoint::CompletedCheckpoint, String>>
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let Some(tx) = &self.savepoints else {
            let _ = reply.send(Err(
                "this job was started without checkpoint storage, so it \
                 cannot take savepoints; set execution.checkpointing.dir (state.checkpoints.dir)"
                    .into(),
            ));
            return rx;
        };
        if let Err(e) = tx.send(checkpointing::SavepointRequest {
            target_dir,
            action,
            reply,
        }) {
            let _ =
                e.0.reply
                    .send(Err("the job has ended; no savepoint was taken".into()));
        }
        rx
    }

    pub(crate) fn mark_finished_by_savepoint(&self) {
        self.finished_by_savepoint.store(true, Ordering::SeqCst);
    }
}

struct SubtaskInfo {
    task: String,
    subtask: u32,
    parallelism: u32,
}

/// A running job.
pub struct JobHandle {
    name: String,
    control: JobControl,
    metrics: Arc<JobMetrics>,
    parallelism: Vec<u32>,
    tasks: JoinSet<Result<(), TaskError>>,
    info: HashMap<tokio::task::Id, SubtaskInfo>,
    events: Option<UnboundedReceiver<TaskEvent>>,
    notices: Option<UnboundedReceiver<CheckpointNotice>>,
    driver: Option<DriverHandle>,
    started: Instant,
}

impl JobHandle {
    pub fn stop(&self) {
        self.control.stop();
    }

    pub fn cancel(&self) {
        self.control.cancel();
    }

    pub fn control(&self) -> JobControl {
        self.control.clone()
    }

    pub fn metrics(&self) -> Arc<JobMetrics> {
        self.metrics.clone()
    }

    /// The events subtasks report (barrier snapshots), when [`JobOptions::task_events`] asked
    /// for them; only the first call gets them.
    pub fn take_events(&mut self) -> Option<UnboundedReceiver<TaskEvent>> {
        self.events.take()
    }

    /// What happened to checkpoints so far; `None` with checkpointing off.
    /// The live checkpoint statistics, shared: for a reader (the REST API) that outlives
    /// `wait`'s consumption of the handle. `None` without checkpointing.
    pub fn checkpoint_stats_source(&self) -> Option<Arc<std::sync::Mutex<CheckpointStats>>> {
        self.driver.as_ref().map(|d| d.stats.clone())
    }

    pub fn checkpoint_stats(&self) -> Option<CheckpointStats> {
        self.driver
            .as_ref()
            .map(|d| d.stats.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Checkpoint notices (triggered, completed, failed...) in order; only the first call
    /// gets them.
    pub fn take_checkpoint_notices(&mut self) -> Option<UnboundedReceiver<CheckpointNotice>> {
        self.notices.take()
    }

    /// Waits until every subtask ended. The first operator failure cancels all other tasks
    /// and is the job's error; so does exceeding `tolerable-failed-checkpoints`.
    ///
    /// Then the checkpoint driver settles what is pending and applies the retention rules
    /// for how the job ended: finished, cancelled, failed, or stopped (`stop()`, Ctrl-C in
    /// `floe run`), which keeps checkpoints as a killed process would (`Suspended`).
    pub async fn wait(mut self) -> Result<JobReport, JobError> {
        let mut failure: Option<JobError> = None;
        let mut disconnected = false;
        while let Some(joined) = self.tasks.join_next_with_id().await {
            let error = match joined {
                Ok((_, Ok(()))) | Ok((_, Err(TaskError::Cancelled))) => continue,
                Ok((_, Err(TaskError::Disconnected))) => {
                    disconnected = true;
                    None
                }
                Ok((_, Err(error))) => Some(JobError::Failed {
                    job: self.name.clone(),
                    error,
                }),
                Err(join) if join.is_panic() => {
                    let id = join.id();
                    let message = panic_message(&*join.into_panic());
                    let info = self.info.get(&id);
                    Some(JobError::Panicked {
                        job: self.name.clone(),
                        task: info.map_or_else(|| "?".into(), |i| i.task.clone()),
                        subtask: info.map_or(0, |i| i.subtask),
                        parallelism: info.map_or(0, |i| i.parallelism),
                        message,
                    })
                }
                Err(_) => continue, // aborted: only when the job is being torn down
            };
            if let Some(e) = error {
                tracing::error!(job = %self.name, error = %e, "job failing");
                failure.get_or_insert(e);
            }
            // One subtask gone means the job cannot finish: stop the others now.
            self.control.cancel.cancel();
        }
        let checkpoint_failure = self.driver.as_ref().and_then(DriverHandle::failure);
        let user_cancelled = self.control.user_cancelled.load(Ordering::SeqCst);
        let termination = if failure.is_some() || checkpoint_failure.is_some() {
            JobTermination::Failed
        } else if user_cancelled {
            JobTermination::Cancelled
        } else if self.control.finished_by_savepoint.load(Ordering::SeqCst) && !disconnected {
            // Stop-with-savepoint: the job finished at its savepoint (docs/architecture.md#stop-with-savepoint).
            JobTermination::Finished
        } else if disconnected {
            JobTermination::Failed
        } else if self.control.stop.load(Ordering::SeqCst) {
            JobTermination::Suspended
        } else {
            JobTermination::Finished
        };
        let checkpoints = match self.driver.take() {
            Some(driver) => {
                let stats = driver.stats.clone();
                driver.shutdown(termination).await;
                let s = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
                Some(s)
            }
            None => None,
        };
        if let Some(message) = checkpoint_failure {
            return Err(JobError::Checkpoint {
                job: self.name,
                message,
            });
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let status = if user_cancelled {
            JobStatus::Cancelled
        } else if disconnected {
            return Err(JobError::Internal {
                job: self.name,
                message: "a channel closed while no task failed".into(),
            });
        } else if self.control.finished_by_savepoint.load(Ordering::SeqCst) {
            JobStatus::Finished
        } else if self.control.stop.load(Ordering::SeqCst) {
            JobStatus::Stopped
        } else {
            JobStatus::Finished
        };
        let operators = self.operator_reports();
        Ok(JobReport {
            name: self.name,
            status,
            duration: self.started.elapsed(),
            operators,
            checkpoints,
        })
    }
}

impl JobHandle {
    /// Each operator's record counts, in plan order.
    fn operator_reports(&self) -> Vec<OperatorReport> {
        self.metrics
            .operators
            .iter()
            .zip(&self.parallelism)
            .map(|(m, &p)| OperatorReport {
                id: m.id.clone(),
                parallelism: p,
                records_in: m.records_in(),
                records_out: m.records_out(),
                records_discarded: m.records_discarded(),
            })
            .collect()
    }
}

/// Builds every subtask of `plan` and spawns them on the current tokio runtime.
///
/// Every operator is built before anything runs, so a build error (a file that cannot be
/// opened, say) starts nothing.
pub fn start(plan: Plan, mut opts: JobOptions) -> Result<JobHandle, RuntimeError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| RuntimeError::NoRuntime)?;
    let (mut receivers, mut senders) = wire(&plan, opts.channel_capacity.max(1))?;
    let (metrics, op_metrics, parallelism) = job_metrics(&plan);

    // One source of truth for the mode when checkpointing settings are given.
    if let Some(c) = &opts.checkpointing {
        opts.checkpointing_mode = c.config.mode;
    }
    // With storage but no interval the driver still runs, for savepoints on request; only an
    // interval makes sinks transactional (their commits follow periodic checkpoints).
    let checkpointing = opts.checkpointing.take();
    let periodic = checkpointing
        .as_ref()
        .is_some_and(|c| c.config.interval.is_some());
    let (savepoints_tx, savepoints_rx) = channel_if(checkpointing.is_some());
    let (checkpoints_tx, checkpoints_rx) = channel_if(checkpointing.is_some());
    let mut restore = opts.restore.take();
    let restored_id = restore.as_ref().map(|r| r.checkpoint_id);

    let cancel = CancellationToken::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (events_tx, events_rx) = channel_if(opts.task_events);
    let mut triggers = Vec::new();
    let mut subtasks = Vec::new();
    let (final_checkpoint, end_uncommitted) = end_of_input(&plan, checkpointing.as_ref());
    let mut outcome_senders = Vec::new();
    for (ti, t) in plan.tasks.iter().enumerate() {
        for s in 0..t.parallelism {
            // Each subtask hears the outcome of the checkpoints it took part in.
            let (outcome_tx, outcomes) = channel_if(checkpoints_tx.is_some());
            outcome_senders.extend(outcome_tx);
            let ctx = TaskContext {
                task: ti,
                subtask: s,
                parallelism: t.parallelism,
                stop: stop.clone(),
                events: events_tx.clone(),
                checkpoints: checkpoints_tx.clone(),
                channels_blocked: metrics.channels_blocked.clone(),
                outcomes,
                final_checkpoint: final_checkpoint.clone(),
                end_uncommitted,
            };
            let outputs = Outputs::new(std::mem::take(&mut senders[ti][s as usize]));
            let inputs = std::mem::take(&mut receivers[ti][s as usize]);
            let built = build_subtask(
                &plan,
                ti,
                s,
                &op_metrics[ti],
                outputs,
                inputs,
                &opts,
                periodic,
                &mut restore,
                ctx,
            )?;
            triggers.extend(built.trigger().cloned());
            subtasks.push((t.name(), s, t.parallelism, built));
        }
    }
    // Only the tasks hold senders: the driver sees the channel close when they are gone.
    drop(checkpoints_tx);
    if let Some((operator, subtask)) = restore.and_then(|r| r.operators.into_keys().next()) {
        return Err(RuntimeError::UnusedRestoreState { operator, subtask });
    }

    let control = JobControl::new(cancel.clone(), stop, triggers, savepoints_tx);
    let (notices_tx, notices_rx) = mpsc::unbounded_channel();
    let driver = match (checkpointing, checkpoints_rx, savepoints_rx) {
        (Some(c), Some(rx), Some(savepoints)) => Some(checkpointing::spawn(
            c,
            job_shape(&plan, &opts.name),
            restored_id,
            control.clone(),
            opts.live.clone(),
            rx,
            savepoints,
            notices_tx,
            outcome_senders,
        )),
        _ => None,
    };

    let (tasks, info) = spawn_subtasks(subtasks, &cancel, &runtime);
    tracing::info!(job = %opts.name, subtasks = info.len(), checkpointing = driver.is_some(), "job started");
    Ok(JobHandle {
        name: opts.name,
        control,
        metrics: Arc::new(metrics),
        parallelism,
        tasks,
        info,
        events: events_rx,
        notices: driver.as_ref().map(|_| notices_rx),
        driver,
        started: Instant::now(),
    })
}

/// Every operator's metrics: the job's list, the same per task, and each operator's
/// parallelism (in the job list's order).
fn job_metrics(plan: &Plan) -> (JobMetrics, Vec<Vec<Arc<OperatorMetrics>>>, Vec<u32>) {
    let mut metrics = JobMetrics::default();
    let mut op_metrics: Vec<Vec<Arc<OperatorMetrics>>> = Vec::new();
    let mut parallelism = Vec::new();
    for t in &plan.tasks {
        let ms: Vec<_> = t
            .operators
            .iter()
            .map(|o| Arc::new(OperatorMetrics::new(o.id.clone(), t.parallelism)))
            .collect();
        metrics.operators.extend(ms.iter().cloned());
        parallelism.extend(t.operators.iter().map(|_| t.parallelism));
        op_metrics.push(ms);
    }
    (metrics, op_metrics, parallelism)
}

/// An unbounded channel when `on`, else neither end.
fn channel_if<T>(on: bool) -> (Option<UnboundedSender<T>>, Option<UnboundedReceiver<T>>) {
    if on {
        let (tx, rx) = mpsc::unbounded_channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    }
}

/// How bounded inputs end: with a final checkpoint when checkpoints are periodic (FLIP-147),
/// or, with Flink's `checkpoints-after-tasks-finish: false`, without one, and then (as in
/// Flink) nothing after the last completed checkpoint is committed (the second value).
fn end_of_input(
    plan: &Plan,
    checkpointing: Option<&CheckpointingOptions>,
) -> (Option<Arc<task::FinalCheckpoint>>, bool) {
    let periodic = checkpointing.is_some_and(|c| c.config.interval.is_some());
    let after_finish = checkpointing.is_some_and(|c| c.config.checkpoints_after_tasks_finish);
    let sources: u32 = plan
        .tasks
        .iter()
        .filter(|t| t.is_source())
        .map(|t| t.parallelism)
        .sum();
    let final_checkpoint = (periodic && after_finish).then(|| task::FinalCheckpoint::new(sources));
    let end_uncommitted = periodic && !after_finish;
    if end_uncommitted {
        tracing::info!(job = %plan.name, "execution.checkpointing.checkpoints-after-tasks-finish is false: a bounded input ends without a final checkpoint, and transactional sinks do not commit what they wrote after the last completed checkpoint");
    }
    (final_checkpoint, end_uncommitted)
}

/// Spawns every built subtask on `runtime`, each ending at `cancel`.
fn spawn_subtasks(
    subtasks: Vec<(String, u32, u32, Built)>,
    cancel: &CancellationToken,
    runtime: &tokio::runtime::Handle,
) -> (
    JoinSet<Result<(), TaskError>>,
    HashMap<tokio::task::Id, SubtaskInfo>,
) {
    let mut tasks = JoinSet::new();
    let mut info = HashMap::new();
    for (task, subtask, parallelism, built) in subtasks {
        let cancel = cancel.clone();
        let body = async move {
            let run = async move {
                match built {
                    Built::Source {
                        slot,
                        chain,
                        outputs,
                        ctx,
                        ..
                    } => task::run_source_task(slot, chain, outputs, ctx).await,
                    Built::Operator {
                        gate,
                        aligner,
                        chain,
                        outputs,
                        ctx,
                    } => task::run_operator_task(gate, aligner, chain, outputs, ctx).await,
                }
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => Err(TaskError::Cancelled),
                result = run => result,
            }
        };
        let handle = tasks.spawn_on(body, runtime);
        info.insert(
            handle.id(),
            SubtaskInfo {
                task,
                subtask,
                parallelism,
            },
        );
    }
    (tasks, info)
}

/// The job as the checkpoint driver sees it: operators in plan order, tasks and where their
/// operators start.
fn job_shape(plan: &Plan, name: &str) -> JobShape {
    let mut layout = Vec::new();
    let mut tasks = Vec::new();
    for t in &plan.tasks {
        tasks.push(TaskShape {
            name: t.name(),
            first_operator: layout.len(),
            parallelism: t.parallelism,
            is_source: t.is_source(),
        });
        layout.extend(t.operators.iter().map(|o| OperatorLayout {
            id: o.id.clone(),
            parallelism: t.parallelism,
            max_parallelism: plan.max_parallelism,
        }));
    }
    JobShape {
        name: name.to_owned(),
        layout,
        tasks,
    }
}

enum Built {
    Source {
        slot: SourceSlot,
        trigger: UnboundedSender<Injection>,
        chain: Chain,
        outputs: Outputs,
        ctx: TaskContext,
    },
    Operator {
        gate: InputGate,
        aligner: BarrierAligner,
        chain: Chain,
        outputs: Outputs,
        ctx: TaskContext,
    },
}

/// A source's restored state: its blobs. Keyed state under a source's id cannot be its own.
fn source_blobs(
    restored: Option<crate::operators::RestoredState>,
) -> Result<Option<Vec<crate::state::RestoredBlob>>, crate::operators::OperatorError> {
    match restored {
        None => Ok(None),
        Some(crate::operators::RestoredState::Blobs(blobs)) => Ok(Some(blobs)),
        Some(crate::operators::RestoredState::Keyed(_)) => {
            Err(crate::operators::OperatorError::Config(
                "the checkpoint holds keyed state under this source's id; give the source \
                 another `id` or restore without its state"
                    .into(),
            ))
        }
    }
}

impl Built {
    /// A source's injection channel (barriers and savepoints enter the job there).
    fn trigger(&self) -> Option<&UnboundedSender<Injection>> {
        match self {
            Built::Source { trigger, .. } => Some(trigger),
            Built::Operator { .. } => None,
        }
    }
}

type Wiring = (Vec<Vec<Vec<Receiver>>>, Vec<Vec<Vec<OutputEdge>>>);

/// Creates one channel per (upstream subtask, downstream subtask) pair of every task input.
/// Returns per task and subtask: its input receivers (input by input, upstream subtask by
/// upstream subtask) and its output edges.
fn wire(plan: &Plan, capacity: usize) -> Result<Wiring, RuntimeError> {
    let mut receivers: Vec<Vec<Vec<Receiver>>> = plan
        .tasks
        .iter()
        .map(|t| (0..t.parallelism).map(|_| Vec::new()).collect())
        .collect();
    let mut outputs: Vec<Vec<Vec<OutputEdge>>> = plan
        .tasks
        .iter()
        .map(|t| (0..t.parallelism).map(|_| Vec::new()).collect())
        .collect();
    for (d, task) in plan.tasks.iter().enumerate() {
        for input in &task.inputs {
            let u = input.from;
            let up = plan
                .tasks
                .get(u)
                .filter(|_| u < d)
                .ok_or_else(|| RuntimeError::InvalidPlan(format!("task {d} reads task {u}")))?;
            let (pu, pd) = (up.parallelism, task.parallelism);
            if input.exchange == Exchange::Forward && pu != pd {
                return Err(RuntimeError::InvalidPlan(format!(
                    "forward edge from task {u} (x{pu}) to task {d} (x{pd})"
                )));
            }
            for i in 0..pu {
                let targets: Vec<u32> = match input.exchange {
                    Exchange::Forward => vec![i],
                    _ => (0..pd).collect(),
                };
                let mut edge_senders: Vec<Sender> = Vec::with_capacity(targets.len());
                for j in targets {
                    let (tx, rx) = channel::channel(capacity);
                    edge_senders.push(tx);
                    receivers[d][j as usize].push(rx);
                }
                outputs[u][i as usize].push(OutputEdge::new(
                    &input.exchange,
                    edge_senders,
                    i,
                    plan.max_parallelism,
                ));
            }
        }
    }
    Ok((receivers, outputs))
}

/// What the job's checkpointing lets a sink promise.
fn delivery_guarantee(
    ctx: &TaskContext,
    opts: &JobOptions,
    periodic: bool,
) -> crate::operators::DeliveryGuarantee {
    // Storage for savepoints only (not periodic): no checkpoint would ever commit a
    // transaction.
    crate::operators::DeliveryGuarantee::of_checkpointing(
        ctx.checkpoints.is_some() && periodic,
        opts.checkpointing_mode,
    )
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site, all parts of one subtask"
)]
fn build_subtask(
    plan: &Plan,
    ti: usize,
    subtask: u32,
    metrics: &[Arc<OperatorMetrics>],
    outputs: Outputs,
    inputs: Vec<Receiver>,
    opts: &JobOptions,
    periodic: bool,
    restore: &mut Option<RestoreState>,
    ctx: TaskContext,
) -> Result<Built, RuntimeError> {
    let task = &plan.tasks[ti];
    let context = |id: &OperatorId| BuildContext {
        operator_id: id.0.clone(),
        subtask,
        parallelism: task.parallelism,
        max_parallelism: plan.max_parallelism,
        base_dir: plan.base_dir.clone(),
        delta_checkpoints: opts
            .checkpointing
            .as_ref()
            .is_some_and(|c| c.store.writes_deltas()),
    };
    let build_error = |id: &OperatorId, error| RuntimeError::Build {
        operator: id.clone(),
        subtask,
        parallelism: task.parallelism,
        error,
    };
    let restore_error = |id: &OperatorId, error| RuntimeError::Restore {
        operator: id.clone(),
        subtask,
        parallelism: task.parallelism,
        error,
    };
    let mut source = None;
    let mut chained = Vec::new();
    for (k, op) in task.operators.iter().enumerate() {
        let key = (op.id.clone(), subtask);
        match (&op.factory, k) {
            (Factory::Source(f), 0) => {
                let restored = restore.as_mut().and_then(|r| r.operators.remove(&key));
                let restored = source_blobs(restored).map_err(|e| restore_error(&op.id, e))?;
                let built =
                    f(&context(&op.id), restored.as_deref()).map_err(|e| build_error(&op.id, e))?;
                source = Some((op.id.clone(), built, metrics[0].clone()));
            }
            (Factory::Operator(f), _) => {
                let mut operator = f(&context(&op.id)).map_err(|e| build_error(&op.id, e))?;
                operator
                    .open(delivery_guarantee(&ctx, opts, periodic))
                    .map_err(|e| build_error(&op.id, e))?;
                // Before the first record: the operator starts from the restored state.
                if let Some(state) = restore.as_mut().and_then(|r| r.operators.remove(&key)) {
                    operator
                        .restore_state(state)
                        .map_err(|e| restore_error(&op.id, e))?;
                }
                chained.push(ChainedOperator {
                    id: op.id.clone(),
                    operator,
                    metrics: metrics[k].clone(),
                });
            }
            (Factory::Source(_), _) => {
                return Err(RuntimeError::InvalidPlan(format!(
                    "source \"{}\" inside a chain",
                    op.id
                )))
            }
        }
    }
    let chain = Chain::new(chained, subtask, task.parallelism);
    assemble(task, source, chain, inputs, outputs, opts, ctx)
}

/// A subtask's built parts as a source task (its source and chain) or an operator task (its
/// inputs and chain).
fn assemble(
    task: &crate::pipeline::plan::PlanTask,
    source: Option<(OperatorId, TaskSource, Arc<OperatorMetrics>)>,
    chain: Chain,
    inputs: Vec<Receiver>,
    outputs: Outputs,
    opts: &JobOptions,
    ctx: TaskContext,
) -> Result<Built, RuntimeError> {
    Ok(match source {
        Some((id, source, metrics)) => {
            let (trigger, triggers) = mpsc::unbounded_channel();
            let slot = SourceSlot::new(id, source, metrics, triggers);
            Built::Source {
                slot,
                trigger,
                chain,
                outputs,
                ctx,
            }
        }
        None => {
            if inputs.is_empty() {
                return Err(RuntimeError::InvalidPlan(format!(
                    "task \"{}\" has neither a source nor inputs",
                    task.name()
                )));
            }
            Built::Operator {
                aligner: BarrierAligner::new(inputs.len(), opts.checkpointing_mode),
                gate: InputGate::new(inputs),
                chain,
                outputs,
                ctx,
            }
        }
    })
}
