//! The checkpoint driver: the thin async layer around the coordinator's decisions
//! ([`crate::checkpoint::coordinator`]). One tokio task per job with checkpointing on.
//!
//! - timer: triggers each checkpoint when the schedule says so, by injecting a barrier at
//!   every source subtask ([`JobControl::inject_barrier`]);
//! - tasks send it, over an unbounded channel, the synchronous part of each subtask's
//!   snapshot at the barrier; it writes each stateful one with `store.write_subtask` on a
//!   blocking thread and acks stateless ones at once;
//! - when every operator subtask acked, it builds `_metadata` and calls `store.complete` on a
//!   blocking thread; failures abort the checkpoint (`store.abort`) and count towards
//!   `tolerable-failed-checkpoints`; above it, it fails the job (cancels every task);
//! - when `store.complete` returned (the checkpoint is durable), it tells every subtask
//!   [`CheckpointOutcome::Completed`] (Flink's `notifyCheckpointComplete`: the commit of
//!   transactional sinks), and [`CheckpointOutcome::Aborted`] for a checkpoint that failed
//!   or was abandoned; best effort, in order, on each subtask's own channel;
//! - when the job ends, it applies the retention rules (`store.terminate`).
//!
//! It must never make a task wait: tasks only ever `send` on an unbounded channel to it, and
//! every call into the store (which may block on disk) runs on `spawn_blocking`.

use crate::checkpoint::coordinator::{
    empty_subtask, AckOutcome, CheckpointSchedule, CheckpointStats, CompletedStats, FailedStats,
    FailureOutcome, FailureReason, OperatorLayout, PendingAcks, SavepointStats, SnapshotStatsKind,
    TriggerSettings,
};
use crate::checkpoint::metadata::SubtaskStateMeta;
use crate::checkpoint::storage::Location;
use crate::checkpoint::{
    CheckpointError, CheckpointId, CheckpointStore, CompletedCheckpoint, JobId, JobTermination,
    OperatorSnapshot, SubtaskSnapshot,
};
use crate::config::live::LiveSettings;
use crate::config::CheckpointingConfig;
use crate::runtime::message::{Barrier, BarrierKind};
use crate::runtime::task::Injection;
use crate::runtime::JobControl;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// Checkpointing for one job: what `execution.checkpointing.*` says and where checkpoints go.
/// Given without `config.interval`, the driver runs all the same but triggers nothing on its
/// own: the job can take savepoints on request ([`JobControl::trigger_savepoint`]).
#[derive(Clone)]
pub struct CheckpointingOptions {
    /// `interval` set: periodic checkpoints; `mode` is taken from here too.
    pub config: CheckpointingConfig,
    pub store: Arc<dyn CheckpointStore>,
    pub job_id: JobId,
    /// The id of the first checkpoint (1 for a fresh job). After a restore the driver uses
    /// the larger of this and the restored id + 1.
    pub first_id: u64,
}

impl fmt::Debug for CheckpointingOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointingOptions")
            .field("config", &self.config)
            .field("job_id", &self.job_id)
            .field("first_id", &self.first_id)
            .finish_non_exhaustive()
    }
}

/// What a job does once its savepoint completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavepointAction {
    /// The job goes on (`floe savepoint`). Transactional sinks do not commit for it
    /// (docs/architecture.md#two-phase-commit-sinks): what they pre-committed at its barrier commits with the next
    /// checkpoint.
    Keep,
    /// Stop-with-savepoint (`floe stop`): the sources stop at the savepoint's barrier, the
    /// sinks commit when it completes, the job ends FINISHED. `drain` ends the input as
    /// finished (sinks commit everything) rather than stopped.
    Stop { drain: bool },
    /// `cancel-job: true`: the job is cancelled once the savepoint completed (CANCELED).
    Cancel,
}

impl SavepointAction {
    fn stats_kind(self) -> SnapshotStatsKind {
        match self {
            SavepointAction::Stop { .. } => SnapshotStatsKind::SyncSavepoint,
            SavepointAction::Keep | SavepointAction::Cancel => SnapshotStatsKind::Savepoint,
        }
    }
}

/// A savepoint asked of the driver.
pub(crate) struct SavepointRequest {
    pub target_dir: PathBuf,
    pub action: SavepointAction,
    pub reply: oneshot::Sender<Result<CompletedCheckpoint, String>>,
}

/// A savepoint between trigger and its outcome.
struct SavepointInFlight {
    action: SavepointAction,
    reply: oneshot::Sender<Result<CompletedCheckpoint, String>>,
}

pub use crate::checkpoint::restore::RestoreState;

/// What happened to a checkpoint, for whoever watches the job (tests, the REST API's
/// history). Sent in order; nobody has to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointNotice {
    Triggered(CheckpointId),
    Completed(CompletedStats),
    /// Failed and counted (expired, a write failed, `_metadata` failed).
    Failed {
        id: CheckpointId,
        reason: String,
    },
    /// Dropped without counting: a subtask finished before the barrier reached it, or the
    /// job ended with it pending.
    Abandoned(CheckpointId),
    /// A trigger skipped because a source had finished ("not all tasks running").
    Skipped,
    /// A savepoint's `_metadata` is durable; `path` is the savepoint directory.
    SavepointCompleted(CompletedStats),
    /// A savepoint failed (not counted towards `tolerable-failed-checkpoints`).
    SavepointFailed {
        id: CheckpointId,
        reason: String,
    },
}

pub use crate::ids::CheckpointOutcome;

/// What a task sends the driver.
#[derive(Debug)]
pub enum CheckpointMessage {
    /// The synchronous part of a subtask's snapshot at the barrier of `checkpoint_id`: one
    /// entry per operator of the task in chain order (`None`: no state).
    Snapshot {
        checkpoint_id: CheckpointId,
        task: usize,
        subtask: u32,
        states: Vec<Option<OperatorSnapshot>>,
    },
    /// The subtask ended normally; it reports no later snapshot.
    Finished { task: usize, subtask: u32 },
    /// A source subtask's input ended; it waits for the final checkpoint.
    InputEnded { task: usize, subtask: u32 },
}

/// What the driver knows of the job's shape.
pub(crate) struct JobShape {
    pub name: String,
    /// Every operator in plan order (task by task, chain order).
    pub layout: Vec<OperatorLayout>,
    /// Per task: its name, its first operator's index in `layout`, whether it is a source.
    pub tasks: Vec<TaskShape>,
}

impl JobShape {
    /// How many source subtasks the job has.
    fn source_subtasks(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.is_source)
            .map(|t| t.parallelism as usize)
            .sum()
    }
}

pub(crate) struct TaskShape {
    pub name: String,
    pub first_operator: usize,
    pub parallelism: u32,
    pub is_source: bool,
}

/// The job's side of a running driver.
pub(crate) struct DriverHandle {
    shutdown: Option<oneshot::Sender<JobTermination>>,
    join: JoinHandle<()>,
    failure: Arc<Mutex<Option<String>>>,
    pub stats: Arc<Mutex<CheckpointStats>>,
}

impl DriverHandle {
    /// The message the driver failed the job with, if it did.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// Tells the driver how the job ended and waits until it finished its work and applied
    /// the retention rules.
    pub async fn shutdown(mut self, how: JobTermination) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(how);
        }
        if let Err(e) = self.join.await {
            tracing::error!(error = %e, "bug: the checkpoint driver ended abnormally");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain counters behind: still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the driver on the current runtime. Without an interval it triggers no checkpoint
/// and only takes savepoints on request.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, the channels of one job"
)]
pub(crate) fn spawn(
    opts: CheckpointingOptions,
    shape: JobShape,
    restored: Option<CheckpointId>,
    control: JobControl,
    live: Option<tokio::sync::watch::Receiver<Option<LiveSettings>>>,
    messages: UnboundedReceiver<CheckpointMessage>,
    savepoints: UnboundedReceiver<SavepointRequest>,
    notices: UnboundedSender<CheckpointNotice>,
    subtasks: Vec<UnboundedSender<CheckpointOutcome>>,
) -> DriverHandle {
    let first_id = restored.map_or(opts.first_id, |r| opts.first_id.max(r.0 + 1));
    let schedule = match TriggerSettings::from_config(&opts.config) {
        Some(settings) => CheckpointSchedule::new(settings, first_id, Instant::now()),
        None => CheckpointSchedule::savepoints_only(
            TriggerSettings::savepoints_only(&opts.config),
            first_id,
            Instant::now(),
        ),
    };
    let failure = Arc::new(Mutex::new(None));
    let stats = Arc::new(Mutex::new(CheckpointStats::with_history(
        opts.config.history as usize,
    )));
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let driver = Driver {
        schedule,
        store: opts.store,
        job_id: opts.job_id,
        shape,
        control,
        notices,
        subtasks,
        failure: failure.clone(),
        stats: stats.clone(),
        pending: BTreeMap::new(),
        work: JoinSet::new(),
        writes: HashMap::new(),
        abort_when_written: HashSet::new(),
        source_finished: None,
        inputs_ended: HashSet::new(),
        failing: false,
        defer_aborts: false,
        preparing: None,
        savepoints: HashMap::new(),
        savepoint_dirs: HashMap::new(),
    };
    let join = tokio::spawn(driver.run(messages, savepoints, shutdown_rx, live));
    DriverHandle {
        shutdown: Some(shutdown_tx),
        join,
        failure,
        stats,
    }
}

/// A checkpoint between trigger and the start of `store.complete`.
struct InFlight {
    acks: PendingAcks,
    /// Subtasks (task, subtask) whose snapshot arrived.
    reported: HashSet<(usize, u32)>,
    triggered: Instant,
}

/// The result of a blocking store call.
enum Work {
    Written {
        id: CheckpointId,
        operator: usize,
        subtask: u32,
        result: Result<SubtaskStateMeta, CheckpointError>,
    },
    Completed {
        id: CheckpointId,
        triggered: Instant,
        trigger_timestamp_ms: u64,
        result: Result<CompletedCheckpoint, CheckpointError>,
    },
    Aborted,
    /// The directory of a requested savepoint was created (or not).
    SavepointDir(Result<Location, CheckpointError>),
}

struct Driver {
    schedule: CheckpointSchedule,
    store: Arc<dyn CheckpointStore>,
    job_id: JobId,
    shape: JobShape,
    control: JobControl,
    notices: UnboundedSender<CheckpointNotice>,
    /// One per subtask: where completed and aborted checkpoints are told.
    subtasks: Vec<UnboundedSender<CheckpointOutcome>>,
    failure: Arc<Mutex<Option<String>>>,
    stats: Arc<Mutex<CheckpointStats>>,
    pending: BTreeMap<CheckpointId, InFlight>,
    work: JoinSet<Work>,
    /// Writes still running, per checkpoint.
    writes: HashMap<CheckpointId, usize>,
    /// Aborted checkpoints whose `store.abort` waits for their running writes, so that no
    /// file is written after the abort removed the checkpoint's files.
    abort_when_written: HashSet<CheckpointId>,
    /// The first source subtask that finished: later triggers are skipped.
    source_finished: Option<(usize, u32)>,
    /// Source subtasks whose input ended: once all have, the final checkpoint is due.
    inputs_ended: HashSet<(usize, u32)>,
    /// The driver failed the job: no more triggers.
    failing: bool,
    /// The job ended: aborts are collected and done, in order, before `terminate`.
    defer_aborts: bool,
    /// A savepoint whose directory is being created: it gets its id (and its barrier goes
    /// out) only then. Meanwhile no checkpoint triggers, so ids and barriers stay in order.
    preparing: Option<SavepointInFlight>,
    /// Savepoints triggered and not yet decided (at most one: requests are refused meanwhile).
    savepoints: HashMap<CheckpointId, SavepointInFlight>,
    /// The directory of every savepoint not yet completed or cleaned up.
    savepoint_dirs: HashMap<CheckpointId, Location>,
}

impl Driver {
    async fn run(
        mut self,
        mut messages: UnboundedReceiver<CheckpointMessage>,
        mut requests: UnboundedReceiver<SavepointRequest>,
        mut shutdown: oneshot::Receiver<JobTermination>,
        mut live: Option<tokio::sync::watch::Receiver<Option<LiveSettings>>>,
    ) {
        let mut messages_open = true;
        let mut requests_open = true;
        let how = loop {
            let now = Instant::now();
            self.expire(now);
            self.maybe_trigger(now);
            let wake = [
                self.schedule.next_trigger_at(),
                self.schedule.next_deadline(),
            ]
            .into_iter()
            .flatten()
            .min();
            let far = now + Duration::from_secs(3600);
            tokio::select! {
                how = &mut shutdown => break how.unwrap_or(JobTermination::Suspended),
                m = messages.recv(), if messages_open => match m {
                    Some(m) => self.on_message(m),
                    None => messages_open = false,
                },
                r = requests.recv(), if requests_open => match r {
                    Some(r) => self.on_savepoint_request(r),
                    None => requests_open = false,
                },
                Some(done) = self.work.join_next(), if !self.work.is_empty() => self.on_work(done),
                changed = async { live.as_mut().map(|l| l.changed()).unwrap().await }, if live.is_some() => {
                    match changed {
                        Ok(()) => {
                            let settings = *live.as_mut().map(|l| l.borrow_and_update()).unwrap();
                            if let Some(s) = settings {
                                self.reconfigure(s);
                            }
                        }
                        // The job's handle is gone: nothing will change any more.
                        Err(_) => live = None,
                    }
                }
                _ = tokio::time::sleep_until(wake.unwrap_or(far).into()), if wake.is_some() => {}
            }
        };
        // No savepoint can start any more: refuse what is queued.
        requests.close();
        while let Ok(r) = requests.try_recv() {
            let _ = r
                .reply
                .send(Err("the job ended before the savepoint could start".into()));
        }
        self.finish(how, messages).await;
    }

    /// New live settings: the schedule takes the timing and failure settings for what comes
    /// next, the store the retention count and inline threshold.
    fn reconfigure(&mut self, s: LiveSettings) {
        self.schedule
            .reconfigure(s.interval, s.timeout, s.min_pause, s.tolerable_failed);
        self.store.reconfigure(s.num_retained, s.inline_threshold);
        tracing::info!(
            job = %self.shape.name,
            interval = ?s.interval,
            timeout = ?s.timeout,
            min_pause = ?s.min_pause,
            tolerable_failed = s.tolerable_failed,
            num_retained = s.num_retained,
            inline_threshold = s.inline_threshold,
            "checkpoint settings changed; they apply from the next checkpoint"
        );
    }

    /// The job ended (every task is gone): settle what is pending, then retention.
    async fn finish(
        mut self,
        how: JobTermination,
        mut messages: UnboundedReceiver<CheckpointMessage>,
    ) {
        // Every task has ended, so everything they sent is in the channel.
        while let Ok(m) = messages.try_recv() {
            self.on_message(m);
        }
        self.failing = true;
        if matches!(how, JobTermination::Finished | JobTermination::Suspended) {
            // A drained job: let running writes and completions finish, so a checkpoint
            // whose barrier passed everything still completes.
            while let Some(done) = self.work.join_next().await {
                self.on_work(done);
            }
        }
        // Failed or cancelled: running writes are not waited for (storage may hang); a file
        // one of them writes later lies in a `chk-<n>` without `_metadata`, which is no
        // checkpoint.
        self.defer_aborts = true;
        let pending: Vec<CheckpointId> = self.pending.keys().copied().collect();
        for id in pending {
            self.abandon(id, "the job ended");
        }
        if let Some(p) = self.preparing.take() {
            // Its directory is being created (or was): that work is detached below and the
            // empty directory stays; no barrier went out.
            let _ = p
                .reply
                .send(Err("the job ended before the savepoint could start".into()));
        }
        // Aborts that waited for running writes happen now; aborts already spawned still run
        // (detached, not dropped).
        let ids: Vec<(CheckpointId, Option<Location>)> = self
            .abort_when_written
            .drain()
            .map(|id| (id, self.savepoint_dirs.remove(&id)))
            .collect();
        self.work.detach_all();
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || {
            for (id, savepoint) in ids {
                match savepoint {
                    Some(dir) => store.abort_savepoint(&dir),
                    None => store.abort(id),
                }
            }
            store.terminate(how);
        })
        .await;
        if let Err(e) = result {
            tracing::error!(job_id = %self.job_id, error = %e, "bug: applying checkpoint retention at job end panicked");
        }
    }

    fn notify(&self, n: CheckpointNotice) {
        let _ = self.notices.send(n);
    }

    /// Tells every subtask; one that has ended is skipped (best effort, as in Flink).
    /// Downstream first (subtasks are in plan order, sources first): after a
    /// stop-with-savepoint a source ends its stream as soon as it hears the outcome, and the
    /// sinks must have it queued before that end reaches them.
    fn tell_subtasks(&self, outcome: CheckpointOutcome) {
        for tx in self.subtasks.iter().rev() {
            let _ = tx.send(outcome);
        }
    }

    /// A savepoint request: first its directory (on a blocking thread), then its id and
    /// barrier ([`Driver::savepoint_dir_ready`]).
    fn on_savepoint_request(&mut self, r: SavepointRequest) {
        let refuse = if self.failing {
            Some("the job is failing or ending; no savepoint was taken".to_string())
        } else if self.preparing.is_some() || !self.savepoints.is_empty() {
            Some(
                "a savepoint of this job is already in progress; wait for it to complete, \
                 then ask again"
                    .to_string(),
            )
        } else {
            self.source_finished.map(|(task, subtask)| {
                let t = &self.shape.tasks[task];
                format!(
                    "cannot take a savepoint: task {} ({}/{}) has finished, so not all tasks \
                     are running",
                    t.name,
                    subtask + 1,
                    t.parallelism
                )
            })
        };
        if let Some(why) = refuse {
            let _ = r.reply.send(Err(why));
            return;
        }
        self.preparing = Some(SavepointInFlight {
            action: r.action,
            reply: r.reply,
        });
        let store = self.store.clone();
        let job_id = self.job_id.clone();
        let target = r.target_dir;
        self.work.spawn_blocking(move || {
            Work::SavepointDir(store.create_savepoint_dir(&target, &job_id))
        });
    }

    fn savepoint_dir_ready(&mut self, result: Result<Location, CheckpointError>) {
        let Some(p) = self.preparing.take() else {
            return;
        };
        let dir = match result {
            Ok(dir) => dir,
            Err(e) => {
                tracing::warn!(job_id = %self.job_id, error = %e, "savepoint not taken");
                let _ = p.reply.send(Err(format!("cannot take a savepoint: {e}")));
                return;
            }
        };
        if self.failing {
            let store = self.store.clone();
            self.work.spawn_blocking(move || {
                store.abort_savepoint(&dir);
                Work::Aborted
            });
            let _ = p.reply.send(Err(
                "the job is failing or ending; no savepoint was taken".into()
            ));
            return;
        }
        let now = Instant::now();
        let id = self.schedule.trigger_now(now);
        let timestamp = wall_ms();
        let (type_name, action) = match p.action {
            SavepointAction::Stop { .. } => ("Synchronous Savepoint", "TERMINATE"),
            SavepointAction::Keep | SavepointAction::Cancel => ("Savepoint", "NONE"),
        };
        tracing::info!(
            checkpoint_id = id.0,
            job_id = %self.job_id,
            path = %dir,
            "Triggering checkpoint {id} (type=SavepointType{{name='{type_name}', postCheckpointAction={action}, formatType=CANONICAL}}) @ {timestamp} for job {}.",
            self.job_id
        );
        self.pending.insert(
            id,
            InFlight {
                acks: PendingAcks::new(id, timestamp, &self.shape.layout),
                reported: HashSet::new(),
                triggered: now,
            },
        );
        let stop = match p.action {
            SavepointAction::Stop { drain } => Some(drain),
            SavepointAction::Keep | SavepointAction::Cancel => None,
        };
        self.savepoints.insert(id, p);
        self.savepoint_dirs.insert(id, dir);
        lock(&self.stats).on_triggered();
        self.notify(CheckpointNotice::Triggered(id));
        // Savepoints are always aligned (the aligner looks at the kind).
        let barrier = Barrier {
            checkpoint_id: id,
            timestamp,
            kind: BarrierKind::Savepoint,
        };
        if !self.control.inject(Injection { barrier, stop }) {
            self.abandon(id, "the sources have finished");
        }
    }

    /// A savepoint that will not complete: only its request fails; nothing is counted
    /// towards `tolerable-failed-checkpoints` and the job goes on.
    fn fail_savepoint(&mut self, id: CheckpointId, reason: String) {
        self.pending.remove(&id);
        if !self.schedule.on_abort_uncounted(id) {
            return;
        }
        let Some(sp) = self.savepoints.remove(&id) else {
            return;
        };
        tracing::warn!(checkpoint_id = id.0, job_id = %self.job_id, reason = %reason, "Savepoint {id} of job {} failed.", self.job_id);
        self.abort_store(id);
        // A source stopping at this savepoint goes on.
        self.tell_subtasks(CheckpointOutcome::Aborted(id));
        let failed = FailedStats {
            id,
            reason: reason.clone(),
            failure_timestamp_ms: wall_ms(),
        };
        lock(&self.stats).on_savepoint(SavepointStats {
            kind: sp.action.stats_kind(),
            outcome: Err(failed),
        });
        self.notify(CheckpointNotice::SavepointFailed {
            id,
            reason: reason.clone(),
        });
        let _ = sp
            .reply
            .send(Err(format!("savepoint {id} failed: {reason}")));
    }

    fn savepoint_completed(
        &mut self,
        id: CheckpointId,
        triggered: Instant,
        trigger_timestamp_ms: u64,
        c: CompletedCheckpoint,
    ) {
        if !self.schedule.on_savepoint_complete(id) {
            return;
        }
        self.savepoint_dirs.remove(&id);
        let Some(sp) = self.savepoints.remove(&id) else {
            return;
        };
        let duration_ms = triggered.elapsed().as_millis() as u64;
        tracing::info!(
            checkpoint_id = id.0,
            job_id = %self.job_id,
            bytes = c.size,
            duration_ms,
            path = %c.path,
            "Completed checkpoint {id} for job {} ({} bytes, checkpointDuration={duration_ms} ms, savepoint {}).",
            self.job_id,
            c.size,
            c.path
        );
        let stats = CompletedStats {
            id,
            path: c.path.to_path_buf(),
            size: c.size,
            duration_ms,
            trigger_timestamp_ms,
            completion_timestamp_ms: wall_ms(),
        };
        lock(&self.stats).on_savepoint(SavepointStats {
            kind: sp.action.stats_kind(),
            outcome: Ok(stats.clone()),
        });
        self.notify(CheckpointNotice::SavepointCompleted(stats));
        match sp.action {
            // No notify-complete: an intermediate savepoint commits no transaction (§8.3).
            SavepointAction::Keep => {}
            SavepointAction::Stop { .. } => {
                // Before the sources hear it: the job that ends now ends FINISHED.
                self.control.mark_finished_by_savepoint();
                // Sinks commit; the sources, waiting at the barrier, end their streams.
                self.tell_subtasks(CheckpointOutcome::Completed(id));
            }
            SavepointAction::Cancel => self.control.cancel(),
        }
        let _ = sp.reply.send(Ok(c));
    }

    fn maybe_trigger(&mut self, now: Instant) {
        if self.failing || self.preparing.is_some() || !self.schedule.is_due(now) {
            return;
        }
        if let Some((task, subtask)) = self.source_finished {
            let t = &self.shape.tasks[task];
            tracing::info!(
                job_id = %self.job_id,
                "Failed to trigger checkpoint for job {} since Checkpoint triggering task {} ({}/{}) of job {} is not being executed at the moment. Aborting checkpoint. Failure reason: Not all required tasks are currently running..",
                self.job_id, t.name, subtask + 1, t.parallelism, self.job_id
            );
            self.schedule.skip(now);
            lock(&self.stats).skipped += 1;
            self.notify(CheckpointNotice::Skipped);
            return;
        }
        let Some(id) = self.schedule.trigger(now) else {
            return;
        };
        let timestamp = wall_ms();
        tracing::info!(
            checkpoint_id = id.0,
            job_id = %self.job_id,
            "Triggering checkpoint {id} (type=CheckpointType{{name='Checkpoint', sharingFilesStrategy=FORWARD_BACKWARD}}) @ {timestamp} for job {}.",
            self.job_id
        );
        self.pending.insert(
            id,
            InFlight {
                acks: PendingAcks::new(id, timestamp, &self.shape.layout),
                reported: HashSet::new(),
                triggered: now,
            },
        );
        lock(&self.stats).on_triggered();
        self.notify(CheckpointNotice::Triggered(id));
        let barrier = Barrier {
            checkpoint_id: id,
            timestamp,
            kind: BarrierKind::Checkpoint,
        };
        if !self.control.inject_barrier(barrier) {
            self.abandon(id, "the sources have finished");
        }
    }

    fn expire(&mut self, now: Instant) {
        for id in self.schedule.expired(now) {
            tracing::info!(checkpoint_id = id.0, job_id = %self.job_id, "Checkpoint {id} of job {} expired before completing.", self.job_id);
            self.fail(id, FailureReason::Expired);
        }
    }

    fn on_message(&mut self, m: CheckpointMessage) {
        match m {
            CheckpointMessage::Snapshot {
                checkpoint_id: id,
                task,
                subtask,
                states,
            } => self.on_snapshot(id, task, subtask, states),
            CheckpointMessage::Finished { task, subtask } => self.on_finished(task, subtask),
            CheckpointMessage::InputEnded { task, subtask } => {
                self.inputs_ended.insert((task, subtask));
                if self.inputs_ended.len() == self.shape.source_subtasks() {
                    self.schedule.all_inputs_ended();
                }
            }
        }
    }

    fn on_snapshot(
        &mut self,
        id: CheckpointId,
        task: usize,
        subtask: u32,
        states: Vec<Option<OperatorSnapshot>>,
    ) {
        let Some(t) = self.shape.tasks.get(task) else {
            tracing::error!(task, "bug: a snapshot from a task the job does not have");
            return;
        };
        let first = t.first_operator;
        let Some(inflight) = self.pending.get_mut(&id) else {
            tracing::info!(
                checkpoint_id = id.0,
                "Received late message for now expired checkpoint attempt {id} from task {} ({}/{}) of job {}.",
                t.name, subtask + 1, t.parallelism, self.job_id
            );
            return;
        };
        inflight.reported.insert((task, subtask));
        for (k, state) in states.into_iter().enumerate() {
            let operator = first + k;
            match state {
                None => self.ack(id, operator, subtask, empty_subtask(subtask)),
                Some(state) => self.write(id, operator, subtask, state),
            }
        }
    }

    /// Writes one subtask's state on a blocking thread; the result comes back as [`Work`].
    fn write(&mut self, id: CheckpointId, operator: usize, subtask: u32, state: OperatorSnapshot) {
        let Some(o) = self.shape.layout.get(operator) else {
            tracing::error!(
                operator,
                "bug: a snapshot for an operator the job does not have"
            );
            return;
        };
        let snapshot = SubtaskSnapshot {
            checkpoint_id: id,
            operator_id: o.id.clone(),
            subtask,
            parallelism: o.parallelism,
            max_parallelism: o.max_parallelism,
            state,
        };
        let store = self.store.clone();
        *self.writes.entry(id).or_default() += 1;
        let savepoint = self.savepoint_dirs.get(&id).cloned();
        self.work.spawn_blocking(move || Work::Written {
            id,
            operator,
            subtask,
            result: match savepoint {
                Some(dir) => store.write_savepoint_subtask(&dir, snapshot),
                None => store.write_subtask(snapshot),
            },
        });
    }

    fn on_finished(&mut self, task: usize, subtask: u32) {
        let Some(t) = self.shape.tasks.get(task) else {
            return;
        };
        if t.is_source && self.source_finished.is_none() {
            self.source_finished = Some((task, subtask));
        }
        // Its snapshots were sent before this notice: a pending checkpoint it has not
        // reported to will never hear from it.
        let orphaned: Vec<CheckpointId> = self
            .pending
            .iter()
            .filter(|(_, f)| !f.reported.contains(&(task, subtask)))
            .map(|(&id, _)| id)
            .collect();
        let why = format!(
            "task {} ({}/{}) finished before its barrier reached it",
            t.name,
            subtask + 1,
            t.parallelism
        );
        for id in orphaned {
            self.abandon(id, &why);
        }
    }

    fn on_work(&mut self, done: Result<Work, tokio::task::JoinError>) {
        let work = match done {
            Ok(w) => w,
            Err(e) => {
                // A panic inside the store: the checkpoint it belonged to will expire.
                tracing::error!(job_id = %self.job_id, error = %e, "bug: a checkpoint storage call panicked");
                return;
            }
        };
        match work {
            Work::Written {
                id,
                operator,
                subtask,
                result,
            } => {
                if let Some(n) = self.writes.get_mut(&id) {
                    *n -= 1;
                    if *n == 0 {
                        self.writes.remove(&id);
                        if self.abort_when_written.remove(&id) {
                            self.abort_store(id);
                        }
                    }
                }
                if !self.pending.contains_key(&id) {
                    return; // aborted meanwhile
                }
                match result {
                    Ok(meta) => self.ack(id, operator, subtask, meta),
                    Err(e) => {
                        let o = &self.shape.layout[operator];
                        let detail = format!(
                            "operator \"{}\" (subtask {}/{}): {e}",
                            o.id,
                            subtask + 1,
                            o.parallelism
                        );
                        self.fail(id, FailureReason::AsyncSnapshot(detail));
                    }
                }
            }
            Work::Completed {
                id,
                triggered,
                trigger_timestamp_ms,
                result,
            } => match result {
                Ok(c) if self.savepoints.contains_key(&id) => {
                    self.savepoint_completed(id, triggered, trigger_timestamp_ms, c)
                }
                Ok(c) => self.completed(id, triggered, trigger_timestamp_ms, c),
                Err(e) => self.fail(id, FailureReason::Finalize(e.to_string())),
            },
            Work::Aborted => {}
            Work::SavepointDir(result) => self.savepoint_dir_ready(result),
        }
    }

    fn ack(&mut self, id: CheckpointId, operator: usize, subtask: u32, meta: SubtaskStateMeta) {
        let Some(inflight) = self.pending.get_mut(&id) else {
            return;
        };
        if inflight.acks.ack(operator, subtask, meta) != AckOutcome::Complete {
            return;
        }
        let Some(inflight) = self.pending.remove(&id) else {
            return;
        };
        // Every subtask acked: `_metadata` now. The schedule keeps it pending (it counts for
        // max-concurrent) without a deadline until storage answers.
        self.schedule.finalizing(id);
        let trigger_timestamp_ms = inflight.acks.trigger_timestamp_ms;
        let metadata = inflight.acks.into_metadata(
            &self.shape.layout,
            &self.job_id,
            &self.shape.name,
            wall_ms(),
        );
        let store = self.store.clone();
        let triggered = inflight.triggered;
        let savepoint = self.savepoint_dirs.get(&id).cloned();
        self.work.spawn_blocking(move || Work::Completed {
            id,
            triggered,
            trigger_timestamp_ms,
            result: match savepoint {
                Some(dir) => store.complete_savepoint(&dir, metadata),
                None => store.complete(metadata),
            },
        });
    }

    fn completed(
        &mut self,
        id: CheckpointId,
        triggered: Instant,
        trigger_timestamp_ms: u64,
        c: CompletedCheckpoint,
    ) {
        let now = Instant::now();
        if !self.schedule.on_complete(id, now) {
            return;
        }
        let duration_ms = now.duration_since(triggered).as_millis() as u64;
        tracing::info!(
            checkpoint_id = id.0,
            job_id = %self.job_id,
            bytes = c.size,
            duration_ms,
            path = %c.path,
            "Completed checkpoint {id} for job {} ({} bytes, checkpointDuration={duration_ms} ms).",
            self.job_id,
            c.size
        );
        let stats = CompletedStats {
            id,
            path: c.path.to_path_buf(),
            size: c.size,
            duration_ms,
            trigger_timestamp_ms,
            completion_timestamp_ms: wall_ms(),
        };
        lock(&self.stats).on_completed(stats.clone());
        // Only now, with `_metadata` durable (`store.complete` returned), may sinks commit.
        self.tell_subtasks(CheckpointOutcome::Completed(id));
        self.notify(CheckpointNotice::Completed(stats));
    }

    /// A counted failure: abort it in storage, count, maybe fail the job.
    fn fail(&mut self, id: CheckpointId, reason: FailureReason) {
        if self.savepoints.contains_key(&id) {
            return self.fail_savepoint(id, reason.to_string());
        }
        self.pending.remove(&id);
        let Some(outcome) = self.schedule.on_failure(id, &reason) else {
            return;
        };
        let consecutive = self.schedule.consecutive_failures();
        tracing::warn!(
            checkpoint_id = id.0,
            job_id = %self.job_id,
            reason = %reason,
            "Failed to trigger or complete checkpoint {id} for job {}. ({} consecutive failed attempts so far)",
            self.job_id,
            consecutive - 1
        );
        self.abort_store(id);
        self.tell_subtasks(CheckpointOutcome::Aborted(id));
        lock(&self.stats).on_failed(
            FailedStats {
                id,
                reason: reason.to_string(),
                failure_timestamp_ms: wall_ms(),
            },
            consecutive,
        );
        self.notify(CheckpointNotice::Failed {
            id,
            reason: reason.to_string(),
        });
        if let FailureOutcome::FailJob { message } = outcome {
            self.fail_job(message);
        }
    }

    /// Dropped without counting.
    fn abandon(&mut self, id: CheckpointId, why: &str) {
        if self.savepoints.contains_key(&id) {
            return self.fail_savepoint(id, why.to_string());
        }
        self.pending.remove(&id);
        if !self.schedule.on_abort_uncounted(id) {
            return;
        }
        tracing::info!(checkpoint_id = id.0, job_id = %self.job_id, "Checkpoint {id} of job {} aborted: {why}.", self.job_id);
        self.abort_store(id);
        self.tell_subtasks(CheckpointOutcome::Aborted(id));
        lock(&self.stats).on_abandoned();
        self.notify(CheckpointNotice::Abandoned(id));
    }

    fn abort_store(&mut self, id: CheckpointId) {
        if self.defer_aborts || self.writes.contains_key(&id) {
            self.abort_when_written.insert(id);
            return;
        }
        let store = self.store.clone();
        let savepoint = self.savepoint_dirs.remove(&id);
        self.work.spawn_blocking(move || {
            match savepoint {
                Some(dir) => store.abort_savepoint(&dir),
                None => store.abort(id),
            }
            Work::Aborted
        });
    }

    fn fail_job(&mut self, message: String) {
        if self.failing {
            return;
        }
        self.failing = true;
        tracing::error!(job = %self.shape.name, job_id = %self.job_id, "{message}");
        lock(&self.failure).get_or_insert(message);
        // Stop every task now (the job's wait() reports the failure, and termination then
        // applies the retention rules for a failed job).
        self.control.cancel.cancel();
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
