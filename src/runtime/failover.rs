//! Failover: when a job fails, restart it in this process from the latest completed
//! checkpoint, as Flink's restart strategies (`restart-strategy.type`) say, or give up with
//! Flink's words.
//!
//! - [`RestartBackoff`]: the decision, pure (failure time in, restart after a delay or give up
//!   out), unit-tested without a clock.
//! - [`run`]: the loop. It starts an attempt from a closure that builds a fresh plan and job
//!   options for a restore point, waits for it, and on failure asks the strategy, waits the
//!   backoff and restarts from the newest checkpoint in the run's store (or the `-s` snapshot,
//!   or from scratch). The CLI and the service share it.
//! - [`FailoverHandle`]: what the loop shares while it runs: restarts so far, the last restore
//!   point (for the REST API), stop and cancel for the current attempt.
//!
//! The checkpoint store outlives the attempts: one `FsCheckpointStore` per run, so its retained
//! list and shared-file counts carry over, and checkpoint ids keep rising across restarts.
//! Each attempt sees it through an [`AttemptStore`], fenced when the attempt ends: a write or
//! completion of a failed attempt still running on a blocking thread can then no longer add a
//! checkpoint or continue an incremental chain behind the restore point's back. A failed
//! attempt's `terminate(Failed)` is held back: a failover deletes nothing (docs/architecture.md#retention-at-job-end);
//! only giving up applies the retention rules of a failed job.
//!
//! It must not decide what a restore maps where (that is `checkpoint::restore`) nor read
//! configuration files.

use crate::checkpoint::metadata::{CheckpointMetadata, SubtaskStateMeta};
use crate::checkpoint::storage::Location;
use crate::checkpoint::storage::{FsCheckpointStore, LoadedSnapshot};
use crate::checkpoint::{
    CheckpointError, CheckpointId, CheckpointStore, CompletedCheckpoint, JobId, JobTermination,
    SubtaskSnapshot,
};
use crate::config::live::LiveSettings;
use crate::config::{ClaimMode, RestartStrategy};
use crate::pipeline::plan::Plan;
use crate::runtime::{
    CheckpointNotice, JobControl, JobError, JobHandle, JobOptions, JobReport, RuntimeError,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// The decision

/// What the strategy says after a failure.
#[derive(Debug, Clone, PartialEq)]
pub enum RestartDecision {
    /// Restart after `delay`; `attempt` counts restarts since the last reset (1 = first).
    Restart { delay: Duration, attempt: u32 },
    /// Fail the job: `Recovery is suppressed by <strategy>`.
    GiveUp { message: String },
}

/// A restart strategy's memory of past failures (Flink's `RestartBackoffTimeStrategy`).
/// Times are durations since any fixed origin; the caller passes the clock.
#[derive(Debug, Clone)]
pub struct RestartBackoff {
    strategy: RestartStrategy,
    /// Restarts so far (since the last reset, for exponential-delay).
    attempts: u32,
    /// exponential-delay: the backoff of the last restart, before jitter.
    backoff: Option<Duration>,
    /// exponential-delay: when the last restart happened (failure time + delay).
    restarted_at: Option<Duration>,
    /// failure-rate: the times of the last `max_failures_per_interval` failures.
    failures: std::collections::VecDeque<Duration>,
}

impl RestartBackoff {
    pub fn new(strategy: RestartStrategy) -> Self {
        RestartBackoff {
            strategy,
            attempts: 0,
            backoff: None,
            restarted_at: None,
            failures: Default::default(),
        }
    }

    /// A failure at `now`. `jitter` is a random number in [-1, 1] (exponential-delay spreads
    /// its backoff by `jitter-factor` times it); the other strategies ignore it.
    pub fn on_failure(&mut self, now: Duration, jitter: f64) -> RestartDecision {
        let give_up = || RestartDecision::GiveUp {
            message: format!("Recovery is suppressed by {}", describe(&self.strategy)),
        };
        match &self.strategy {
            RestartStrategy::None => give_up(),
            RestartStrategy::FixedDelay { attempts, delay } => {
                // Flink: the attempt counter goes up first; restart while it is <= attempts.
                if self.attempts >= *attempts {
                    return give_up();
                }
                self.attempts += 1;
                RestartDecision::Restart {
                    delay: *delay,
                    attempt: self.attempts,
                }
            }
            RestartStrategy::FailureRate {
                max_failures_per_interval,
                interval,
                delay,
            } => {
                // Flink keeps the last `max` failure times; it restarts unless all of them
                // (this one included) fall within the interval.
                let max = (*max_failures_per_interval).max(1) as usize;
                if self.failures.len() >= max {
                    self.failures.pop_front();
                }
                self.failures.push_back(now);
                let full = self.failures.len() >= max;
                if full && self.failures.front().is_some_and(|&t| now - t <= *interval) {
                    return give_up();
                }
                self.attempts += 1;
                RestartDecision::Restart {
                    delay: *delay,
                    attempt: self.attempts,
                }
            }
            RestartStrategy::ExponentialDelay {
                initial_backoff,
                max_backoff,
                backoff_multiplier,
                reset_backoff_threshold,
                jitter_factor,
                attempts_before_reset_backoff,
            } => {
                // A job that ran `reset-backoff-threshold` since its last restart starts over:
                // initial backoff, attempt count from zero.
                if self
                    .restarted_at
                    .is_some_and(|r| now.saturating_sub(r) >= *reset_backoff_threshold)
                {
                    self.attempts = 0;
                    self.backoff = None;
                }
                if self.attempts >= *attempts_before_reset_backoff {
                    return give_up();
                }
                let base = match self.backoff {
                    None => *initial_backoff,
                    Some(b) => b.mul_f64(backoff_multiplier.max(1.0)).min(*max_backoff),
                };
                self.backoff = Some(base);
                self.attempts += 1;
                let spread = jitter_factor.clamp(0.0, 1.0) * jitter.clamp(-1.0, 1.0);
                let delay = base.mul_f64((1.0 + spread).max(0.0));
                self.restarted_at = Some(now + delay);
                RestartDecision::Restart {
                    delay,
                    attempt: self.attempts,
                }
            }
        }
    }
}

/// The strategy as Flink's `toString` prints it in "Recovery is suppressed by ...".
pub fn describe(strategy: &RestartStrategy) -> String {
    match strategy {
        RestartStrategy::None => "NoRestartBackoffTimeStrategy".into(),
        RestartStrategy::FixedDelay { attempts, delay } => format!(
            "FixedDelayRestartBackoffTimeStrategy(maxNumberRestartAttempts={attempts}, \
             backoffTimeMS={})",
            delay.as_millis()
        ),
        RestartStrategy::FailureRate {
            max_failures_per_interval,
            interval,
            delay,
        } => format!(
            "FailureRateRestartBackoffTimeStrategy(failuresIntervalMS={}, backoffTimeMS={}, \
             maxFailuresPerInterval={max_failures_per_interval})",
            interval.as_millis(),
            delay.as_millis()
        ),
        RestartStrategy::ExponentialDelay {
            initial_backoff,
            max_backoff,
            backoff_multiplier,
            reset_backoff_threshold,
            jitter_factor,
            attempts_before_reset_backoff,
        } => format!(
            "ExponentialDelayRestartBackoffTimeStrategy(initialBackoffMS={}, maxBackoffMS={}, \
             backoffMultiplier={backoff_multiplier:?}, resetBackoffThresholdMS={}, \
             jitterFactor={jitter_factor:?}, attemptsBeforeResetBackoff={attempts_before_reset_backoff})",
            initial_backoff.as_millis(),
            max_backoff.as_millis(),
            reset_backoff_threshold.as_millis()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// What the loop shares while it runs

/// Where the job's state last came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreInfo {
    pub checkpoint_id: u64,
    /// The checkpoint or savepoint directory.
    pub path: Location,
    /// Wall clock, ms since the epoch, when the restore started.
    pub timestamp_ms: u64,
    /// The `-s` snapshot at the first start (REST `is_savepoint`), not a failover's.
    pub from_initial: bool,
}

/// The failover state the REST API shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailoverStatus {
    /// In-process restarts so far.
    pub restarts: u32,
    pub last_restore: Option<RestoreInfo>,
    /// The failure that caused the last restart.
    pub last_failure: Option<String>,
    /// Between a failure and the next attempt's start.
    pub restarting: bool,
}

#[derive(Default)]
struct Shared {
    status: FailoverStatus,
    /// The running attempt's control.
    control: Option<JobControl>,
    /// The running (or last) attempt's metrics and checkpoint statistics, for the REST API.
    metrics: Option<Arc<crate::runtime::JobMetrics>>,
    stats: Option<Arc<std::sync::Mutex<crate::checkpoint::coordinator::CheckpointStats>>>,
    stop: Option<StopKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopKind {
    Stop,
    Cancel,
}

/// Shared with whoever watches or stops the job while [`run`] runs; cheap to clone.
#[derive(Clone)]
pub struct FailoverHandle {
    shared: Arc<Mutex<Shared>>,
    wake: Arc<tokio::sync::Notify>,
    /// Checkpoint settings given by [`FailoverHandle::reconfigure`]; every attempt from then
    /// on starts with them, and the running one's checkpoint driver takes them at once.
    live: Arc<tokio::sync::watch::Sender<Option<LiveSettings>>>,
    /// Checkpoints completed over every attempt (not savepoints).
    completed: Arc<AtomicU64>,
}

impl Default for FailoverHandle {
    fn default() -> Self {
        FailoverHandle {
            shared: Arc::default(),
            wake: Arc::default(),
            live: Arc::new(tokio::sync::watch::Sender::new(None)),
            completed: Arc::default(),
        }
    }
}

impl FailoverHandle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes the checkpoint interval, timeout, minimum pause, tolerable failures,
    /// retention and inline threshold of the running job from its next checkpoint on, and
    /// of every later attempt (a restart does not go back to the old values).
    pub fn reconfigure(&self, settings: LiveSettings) {
        self.live.send_replace(Some(settings));
    }

    /// The settings the last [`FailoverHandle::reconfigure`] gave, if any.
    pub fn live_settings(&self) -> Option<LiveSettings> {
        *self.live.borrow()
    }

    /// Restarts and the last restore point, now.
    pub fn status(&self) -> FailoverStatus {
        self.lock().status.clone()
    }

    /// Records in and out of the running (or last) attempt.
    pub fn metrics(&self) -> Option<Arc<crate::runtime::JobMetrics>> {
        self.lock().metrics.clone()
    }

    /// Checkpoint statistics of the running (or last) attempt.
    pub fn checkpoint_stats(&self) -> Option<crate::checkpoint::coordinator::CheckpointStats> {
        let stats = self.lock().stats.clone()?;
        let stats = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Some(stats)
    }

    /// Checkpoints this run completed, over all its attempts. Once the run has ended, final:
    /// 0 means no checkpoint of it ever completed, so no exactly-once sink committed anything
    /// of it (only a completed checkpoint, or a stop-with-savepoint, commits).
    pub fn checkpoints_completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    /// Whether the run was asked to cancel (rather than stop, or nothing).
    pub fn cancel_requested(&self) -> bool {
        self.lock().stop == Some(StopKind::Cancel)
    }

    /// Stops the running attempt (sources end, the pipeline drains); no more restarts.
    pub fn stop(&self) {
        self.request(StopKind::Stop);
    }

    /// Cancels the running attempt at once; no more restarts.
    pub fn cancel(&self) {
        self.request(StopKind::Cancel);
    }

    /// Takes a savepoint of the running attempt (see [`JobControl::trigger_savepoint`]).
    /// Between attempts there is none to take it of: the answer is an error at once.
    pub fn trigger_savepoint(
        &self,
        target_dir: std::path::PathBuf,
        action: crate::runtime::SavepointAction,
    ) -> tokio::sync::oneshot::Receiver<Result<CompletedCheckpoint, String>> {
        let control = self.lock().control.clone();
        match control {
            Some(c) => c.trigger_savepoint(target_dir, action),
            None => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let _ = tx.send(Err(
                    "job is restarting (or not running): no attempt to take a savepoint of; \
                     try again when it runs"
                        .into(),
                ));
                rx
            }
        }
    }

    fn request(&self, kind: StopKind) {
        let mut s = self.lock();
        if s.stop != Some(StopKind::Cancel) {
            s.stop = Some(kind);
        }
        if let Some(c) = &s.control {
            match kind {
                StopKind::Stop => c.stop(),
                StopKind::Cancel => c.cancel(),
            }
        }
        drop(s);
        // Wakes a backoff wait (the permit is kept if nobody waits yet).
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // Plain status fields: still usable after a panic elsewhere.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// ---------------------------------------------------------------------------------------------
// The store one attempt sees

/// The run's store as one attempt sees it. After [`AttemptStore::fence`] it refuses writes
/// and completions, and it holds back `terminate(Failed)` for the loop to decide.
struct AttemptStore {
    inner: Arc<FsCheckpointStore>,
    /// Writes and completions hold it for reading while they run; `fence` takes it for
    /// writing, so once fenced nothing of this attempt is still changing the store.
    fenced: RwLock<bool>,
    /// Highest checkpoint id this attempt touched.
    highest: Arc<AtomicU64>,
}

impl AttemptStore {
    fn fence(&self) {
        *self.fenced.write().unwrap_or_else(|p| p.into_inner()) = true;
    }

    fn ended() -> CheckpointError {
        CheckpointError::Other("the job attempt this checkpoint belongs to has ended".into())
    }
}

impl CheckpointStore for AttemptStore {
    fn write_subtask(
        &self,
        snapshot: SubtaskSnapshot,
    ) -> Result<SubtaskStateMeta, CheckpointError> {
        self.highest
            .fetch_max(snapshot.checkpoint_id.0, Ordering::SeqCst);
        let fenced = self.fenced.read().unwrap_or_else(|p| p.into_inner());
        if *fenced {
            return Err(Self::ended());
        }
        self.inner.write_subtask(snapshot)
    }

    fn complete(
        &self,
        metadata: CheckpointMetadata,
    ) -> Result<CompletedCheckpoint, CheckpointError> {
        self.highest
            .fetch_max(metadata.checkpoint_id, Ordering::SeqCst);
        let fenced = self.fenced.read().unwrap_or_else(|p| p.into_inner());
        if *fenced {
            return Err(Self::ended());
        }
        self.inner.complete(metadata)
    }

    fn abort(&self, checkpoint_id: CheckpointId) {
        self.highest.fetch_max(checkpoint_id.0, Ordering::SeqCst);
        self.inner.abort(checkpoint_id);
    }

    fn create_savepoint_dir(
        &self,
        target: &std::path::Path,
        job_id: &crate::checkpoint::JobId,
    ) -> Result<Location, CheckpointError> {
        self.inner.create_savepoint_dir(target, job_id)
    }

    fn write_savepoint_subtask(
        &self,
        dir: &Location,
        snapshot: SubtaskSnapshot,
    ) -> Result<SubtaskStateMeta, CheckpointError> {
        self.highest
            .fetch_max(snapshot.checkpoint_id.0, Ordering::SeqCst);
        let fenced = self.fenced.read().unwrap_or_else(|p| p.into_inner());
        if *fenced {
            return Err(Self::ended());
        }
        self.inner.write_savepoint_subtask(dir, snapshot)
    }

    fn complete_savepoint(
        &self,
        dir: &Location,
        metadata: CheckpointMetadata,
    ) -> Result<CompletedCheckpoint, CheckpointError> {
        self.highest
            .fetch_max(metadata.checkpoint_id, Ordering::SeqCst);
        let fenced = self.fenced.read().unwrap_or_else(|p| p.into_inner());
        if *fenced {
            return Err(Self::ended());
        }
        self.inner.complete_savepoint(dir, metadata)
    }

    fn abort_savepoint(&self, dir: &Location) {
        self.inner.abort_savepoint(dir);
    }

    fn reconfigure(&self, num_retained: u32, inline_threshold: u64) {
        self.inner.reconfigure(num_retained, inline_threshold);
    }

    fn terminate(&self, how: JobTermination) {
        // A failure is the loop's to settle: a restart keeps every checkpoint.
        if how != JobTermination::Failed {
            self.inner.terminate(how);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The loop

/// What the loop needs to know about the run.
pub struct FailoverSetup {
    pub job_id: JobId,
    /// The job's name, for logs and errors.
    pub name: String,
    pub strategy: RestartStrategy,
    /// The run's checkpoint store; `None` with checkpointing off.
    pub store: Option<Arc<FsCheckpointStore>>,
    /// The `-s` snapshot the first attempt restores.
    pub initial: Option<LoadedSnapshot>,
    /// Whether the job owns `initial` (CLAIM) or not (NO_CLAIM, LEGACY).
    pub claim_mode: ClaimMode,
}

/// What the build closure gets for one attempt.
pub struct Attempt<'a> {
    /// 0 for the first start, n for the n-th restart.
    pub number: u32,
    /// The snapshot to restore, already read (`None`: start empty).
    pub restore: Option<&'a LoadedSnapshot>,
    /// The store to put in `JobOptions::checkpointing` (`None` with checkpointing off).
    pub store: Option<Arc<dyn CheckpointStore>>,
    /// The id to put in `CheckpointingOptions::first_id`: above every id used so far.
    pub first_checkpoint_id: u64,
}

/// Why the job ended in failure.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// The closure could not build an attempt (a restore that cannot be read or mapped).
    #[error("{0}")]
    Prepare(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Start(#[from] RuntimeError),
    /// The strategy gave up; `message` is Flink's `Recovery is suppressed by ...`.
    #[error("job \"{job}\" failed: {message}")]
    Suppressed {
        job: String,
        message: String,
        #[source]
        cause: JobError,
    },
    /// Stopped or cancelled while waiting to restart.
    #[error("job \"{job}\" was stopped while waiting to restart after a failure")]
    StoppedWhileRestarting {
        job: String,
        #[source]
        cause: JobError,
    },
}

/// Runs the job until it ends without failing or the strategy gives up.
///
/// `build` makes a fresh plan and options for an [`Attempt`]: with its restore snapshot
/// mapped and loaded into `options.restore`, and `options.checkpointing` (when on) using
/// `attempt.store` and `attempt.first_checkpoint_id`.
pub async fn run<F, E>(
    setup: FailoverSetup,
    handle: FailoverHandle,
    build: F,
) -> Result<JobReport, FailoverError>
where
    F: FnMut(&Attempt<'_>) -> Result<(Plan, JobOptions), E> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut run = Loop::new(setup, handle);
    let mut build = Some(build);
    let mut restore: Option<LoadedSnapshot> = None;
    let mut number = 0u32;
    loop {
        let snapshot = if number == 0 {
            run.initial.take()
        } else {
            restore.take()
        };
        let cause = match run.attempt(&mut build, number, snapshot).await? {
            Ok(report) => return Ok(report),
            Err(cause) => cause,
        };
        restore = run.recover(cause).await?;
        number += 1;
        run.restarting(number, restore.as_ref());
    }
}

/// The failover loop's state across attempts.
struct Loop {
    job_id: JobId,
    name: String,
    store: Option<Arc<FsCheckpointStore>>,
    /// The `-s` snapshot: restored by the first attempt, the fallback while no checkpoint
    /// completed.
    initial: Option<LoadedSnapshot>,
    handle: FailoverHandle,
    backoff: RestartBackoff,
    origin: Instant,
    /// The highest checkpoint id any attempt used: the next attempt starts above it.
    highest: Arc<AtomicU64>,
}

impl Loop {
    fn new(setup: FailoverSetup, handle: FailoverHandle) -> Loop {
        let FailoverSetup {
            job_id,
            name,
            strategy,
            store,
            initial,
            claim_mode,
        } = setup;
        if let (Some(store), Some(initial)) = (&store, &initial) {
            if claim_mode == ClaimMode::Legacy {
                tracing::warn!(
                    "execution.state-recovery.claim-mode LEGACY is deprecated (as in Flink); \
                     floe restores it as NO_CLAIM: the snapshot is never deleted"
                );
            }
            store.register_restored(initial, claim_mode == ClaimMode::Claim);
        }
        let highest = initial.as_ref().map_or(0, |s| s.metadata.checkpoint_id);
        Loop {
            job_id,
            name,
            store,
            initial,
            handle,
            backoff: RestartBackoff::new(strategy),
            origin: Instant::now(),
            highest: Arc::new(AtomicU64::new(highest)),
        }
    }

    /// Builds, starts and waits for one attempt. The outer error ends the loop (the attempt
    /// could not start); the inner one is the attempt's failure.
    async fn attempt<F, E>(
        &mut self,
        build: &mut Option<F>,
        number: u32,
        snapshot: Option<LoadedSnapshot>,
    ) -> Result<Result<JobReport, JobError>, FailoverError>
    where
        F: FnMut(&Attempt<'_>) -> Result<(Plan, JobOptions), E> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(s) = &snapshot {
            self.handle.lock().status.last_restore = Some(RestoreInfo {
                checkpoint_id: s.metadata.checkpoint_id,
                path: s.dir.clone(),
                timestamp_ms: wall_ms(),
                from_initial: number == 0,
            });
        }
        let attempt_store = self.store.as_ref().map(|s| {
            Arc::new(AttemptStore {
                inner: s.clone(),
                fenced: RwLock::new(false),
                highest: self.highest.clone(),
            })
        });
        let first_checkpoint_id = self.highest.load(Ordering::SeqCst) + 1;
        let for_attempt = attempt_store.clone().map(|s| s as Arc<dyn CheckpointStore>);
        let (built, snapshot) =
            build_attempt(build, number, snapshot, for_attempt, first_checkpoint_id).await;
        if number == 0 {
            // A later failover falls back on it when no checkpoint completed.
            self.initial = snapshot;
        }
        let started = match built {
            Ok((plan, mut options)) => {
                with_live_settings(&self.handle, &mut options);
                crate::runtime::start(plan, options).map_err(FailoverError::from)
            }
            Err(e) => Err(e),
        };
        match started {
            Ok(job) => Ok(self.supervise(job, attempt_store).await),
            Err(e) => {
                give_up(&self.store, JobTermination::Failed).await;
                Err(e)
            }
        }
    }

    /// Follows a started attempt to its end; its writes are fenced off before it returns.
    async fn supervise(
        &self,
        mut job: JobHandle,
        attempt_store: Option<Arc<AttemptStore>>,
    ) -> Result<JobReport, JobError> {
        // Triggered ids never reach the store when the attempt fails before any write; they
        // are in the notices. Draining them also keeps the channel from growing.
        let drain = job.take_checkpoint_notices().map(|mut rx| {
            let highest = self.highest.clone();
            let completed = self.handle.completed.clone();
            tokio::spawn(async move {
                while let Some(n) = rx.recv().await {
                    match n {
                        CheckpointNotice::Triggered(id) => {
                            highest.fetch_max(id.0, Ordering::SeqCst);
                        }
                        CheckpointNotice::Completed(_) => {
                            completed.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {}
                    }
                }
            })
        });
        {
            let mut s = self.handle.lock();
            s.status.restarting = false;
            // A stop asked while the attempt was being built applies to it at once.
            match s.stop {
                Some(StopKind::Stop) => job.stop(),
                Some(StopKind::Cancel) => job.cancel(),
                None => {}
            }
            s.control = Some(job.control());
            s.metrics = Some(job.metrics());
            s.stats = job.checkpoint_stats_source();
        }
        let result = job.wait().await;
        self.handle.lock().control = None;
        if let Some(d) = drain {
            // The driver has ended: the channel is closed and drains to its end.
            let _ = d.await;
        }
        if let Some(s) = attempt_store {
            // Waits for this attempt's writes still running on blocking threads.
            let _ = tokio::task::spawn_blocking(move || s.fence()).await;
        }
        result
    }

    /// After a failed attempt: gives up (stopped, or the strategy says so) or waits out the
    /// backoff and reads the restore point for the next attempt.
    async fn recover(&mut self, cause: JobError) -> Result<Option<LoadedSnapshot>, FailoverError> {
        let name = self.name.clone();
        let stop = self.handle.lock().stop;
        if let Some(kind) = stop {
            // The user ended the job while it was failing: no restart.
            give_up(&self.store, termination_of(kind)).await;
            return Err(FailoverError::StoppedWhileRestarting { job: name, cause });
        }
        let jitter = random_unit() * 2.0 - 1.0;
        let (delay, attempt) = match self.backoff.on_failure(self.origin.elapsed(), jitter) {
            RestartDecision::GiveUp { message } => {
                tracing::error!(job = %name, job_id = %self.job_id, error = %cause, "{message}");
                give_up(&self.store, JobTermination::Failed).await;
                return Err(FailoverError::Suppressed {
                    job: name,
                    message,
                    cause,
                });
            }
            RestartDecision::Restart { delay, attempt } => (delay, attempt),
        };
        {
            let mut s = self.handle.lock();
            s.status.restarting = true;
            s.status.last_failure = Some(cause.to_string());
        }
        // The restore point: the newest checkpoint in the store (the -s snapshot counts until
        // a newer one completes), else the -s snapshot, else nothing.
        let point = self
            .store
            .as_ref()
            .and_then(|s| s.latest_retained())
            .map(|(_, dir)| dir)
            .or_else(|| self.initial.as_ref().map(|s| s.dir.clone()));
        tracing::warn!(
            job = %name,
            job_id = %self.job_id,
            error = %cause,
            delay_ms = delay.as_millis() as u64,
            "Job {name} ({}) failed; restarting in {} ms (restart {attempt} of the current \
             backoff)",
            self.job_id,
            delay.as_millis()
        );
        if wait_or_stop(&self.handle, delay).await {
            let kind = self.handle.lock().stop.unwrap_or(StopKind::Stop);
            give_up(&self.store, termination_of(kind)).await;
            return Err(FailoverError::StoppedWhileRestarting { job: name, cause });
        }
        if let Some(s) = &self.store {
            s.prepare_restart();
        }
        match point {
            None => Ok(None),
            Some(dir) => self.load_restore_point(dir).await.map(Some),
        }
    }

    /// Reads the restore point's `_metadata` on a blocking thread (on S3, a network round
    /// trip).
    async fn load_restore_point(&self, dir: Location) -> Result<LoadedSnapshot, FailoverError> {
        let loaded = tokio::task::spawn_blocking(move || {
            crate::checkpoint::restore::load_snapshot(dir.to_path_buf())
        })
        .await;
        let error = match loaded {
            Ok(Ok(l)) => return Ok(l),
            Ok(Err(e)) => FailoverError::Prepare(Box::new(e)),
            Err(e) => FailoverError::Prepare(
                format!("bug: reading the restore point panicked: {e}").into(),
            ),
        };
        give_up(&self.store, JobTermination::Failed).await;
        Err(error)
    }

    fn restarting(&self, number: u32, restore: Option<&LoadedSnapshot>) {
        let (name, job_id) = (&self.name, &self.job_id);
        self.handle.lock().status.restarts = number;
        tracing::info!(
            job = %name,
            job_id = %job_id,
            restarts = number,
            checkpoint_id = restore.map(|r| r.metadata.checkpoint_id),
            "Restarting job {name} ({job_id}) (attempt {number}) from {}",
            restore.map_or("scratch: no checkpoint completed yet".to_string(), |r| format!(
                "checkpoint {}",
                r.dir
            ))
        );
    }
}

/// Runs `build` for one attempt on a blocking thread: it reads the restore snapshot's state
/// files (locally or from S3), which must not hold up the async workers that carry every
/// job's tasks and the REST API. `build` and the snapshot go there and come back.
async fn build_attempt<F, E>(
    build: &mut Option<F>,
    number: u32,
    snapshot: Option<LoadedSnapshot>,
    store: Option<Arc<dyn CheckpointStore>>,
    first_checkpoint_id: u64,
) -> (
    Result<(Plan, JobOptions), FailoverError>,
    Option<LoadedSnapshot>,
)
where
    F: FnMut(&Attempt<'_>) -> Result<(Plan, JobOptions), E> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(mut f) = build.take() else {
        let bug = FailoverError::Prepare("bug: the attempt builder is gone".into());
        return (Err(bug), snapshot);
    };
    let joined = tokio::task::spawn_blocking(move || {
        let attempt = Attempt {
            number,
            restore: snapshot.as_ref(),
            store,
            first_checkpoint_id,
        };
        let built = f(&attempt).map_err(|e| FailoverError::Prepare(e.into()));
        (f, snapshot, built)
    })
    .await;
    match joined {
        Ok((f, snapshot, built)) => {
            *build = Some(f);
            (built, snapshot)
        }
        Err(e) => (
            Err(FailoverError::Prepare(
                format!("bug: preparing attempt {number} panicked: {e}").into(),
            )),
            None,
        ),
    }
}

/// An attempt starts with the settings of the last [`FailoverHandle::reconfigure`] and
/// follows the later ones.
fn with_live_settings(handle: &FailoverHandle, options: &mut JobOptions) {
    let Some(c) = options.checkpointing.as_mut() else {
        return;
    };
    // Subscribing marks the current value seen: the driver starts with it applied here.
    let live = handle.live.subscribe();
    if let Some(s) = *live.borrow() {
        c.config.interval = s.interval;
        c.config.timeout = s.timeout;
        c.config.min_pause = s.min_pause;
        c.config.tolerable_failed = s.tolerable_failed;
        c.store.reconfigure(s.num_retained, s.inline_threshold);
    }
    options.live = Some(live);
}

fn termination_of(kind: StopKind) -> JobTermination {
    match kind {
        StopKind::Stop => JobTermination::Suspended,
        StopKind::Cancel => JobTermination::Cancelled,
    }
}

/// The job ends for good: the retention rules for how it ended, once, now that no attempt
/// will use the store again. On a blocking thread: it deletes files.
async fn give_up(store: &Option<Arc<FsCheckpointStore>>, how: JobTermination) {
    if let Some(s) = store {
        let s = s.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || s.terminate(how)).await {
            tracing::error!(error = %e, "bug: applying checkpoint retention at job end panicked");
        }
    }
}

/// Waits `delay`; true when a stop or cancel came first.
async fn wait_or_stop(handle: &FailoverHandle, delay: Duration) -> bool {
    if handle.lock().stop.is_some() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => handle.lock().stop.is_some(),
        _ = handle.wake.notified() => true,
    }
}

/// A number in [0, 1) from the OS random source uuid uses.
fn random_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64 >> 11;
    bits as f64 / (1u64 << 53) as f64
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn exponential() -> RestartStrategy {
        RestartStrategy::ExponentialDelay {
            initial_backoff: ms(1000),
            max_backoff: ms(5000),
            backoff_multiplier: 2.0,
            reset_backoff_threshold: ms(60_000),
            jitter_factor: 0.1,
            attempts_before_reset_backoff: 10,
        }
    }

    fn delay(d: RestartDecision) -> Duration {
        match d {
            RestartDecision::Restart { delay, .. } => delay,
            RestartDecision::GiveUp { message } => panic!("gave up: {message}"),
        }
    }

    #[test]
    fn none_gives_up_at_once_with_flinks_words() {
        let mut b = RestartBackoff::new(RestartStrategy::None);
        assert_eq!(
            b.on_failure(ms(0), 0.0),
            RestartDecision::GiveUp {
                message: "Recovery is suppressed by NoRestartBackoffTimeStrategy".into()
            }
        );
    }

    #[test]
    fn fixed_delay_restarts_attempts_times_then_gives_up() {
        let mut b = RestartBackoff::new(RestartStrategy::FixedDelay {
            attempts: 3,
            delay: ms(250),
        });
        for n in 1..=3 {
            assert_eq!(
                b.on_failure(ms(n * 1000), 0.7),
                RestartDecision::Restart {
                    delay: ms(250),
                    attempt: n as u32
                }
            );
        }
        assert_eq!(
            b.on_failure(ms(9000), 0.0),
            RestartDecision::GiveUp {
                message: "Recovery is suppressed by FixedDelayRestartBackoffTimeStrategy(\
                          maxNumberRestartAttempts=3, backoffTimeMS=250)"
                    .into()
            }
        );
    }

    #[test]
    fn fixed_delay_with_zero_attempts_never_restarts() {
        let mut b = RestartBackoff::new(RestartStrategy::FixedDelay {
            attempts: 0,
            delay: ms(1),
        });
        assert!(matches!(
            b.on_failure(ms(0), 0.0),
            RestartDecision::GiveUp { .. }
        ));
    }

    #[test]
    fn exponential_delay_grows_to_the_cap() {
        let mut b = RestartBackoff::new(exponential());
        let delays: Vec<u128> = (0..5)
            .map(|i| delay(b.on_failure(ms(i * 100), 0.0)).as_millis())
            .collect();
        assert_eq!(delays, vec![1000, 2000, 4000, 5000, 5000]);
    }

    #[test]
    fn exponential_delay_jitter_stays_within_the_factor() {
        let mut lo = RestartBackoff::new(exponential());
        let mut hi = RestartBackoff::new(exponential());
        assert_eq!(delay(lo.on_failure(ms(0), -1.0)), ms(900));
        assert_eq!(delay(hi.on_failure(ms(0), 1.0)), ms(1100));
        // The base keeps growing without the jitter compounding.
        assert_eq!(delay(lo.on_failure(ms(10), 0.0)), ms(2000));
    }

    #[test]
    fn exponential_delay_resets_after_a_stable_run() {
        let mut b = RestartBackoff::new(exponential());
        assert_eq!(delay(b.on_failure(ms(0), 0.0)), ms(1000));
        assert_eq!(delay(b.on_failure(ms(2000), 0.0)), ms(2000));
        // Restarted at 4000; failing again 60 s later starts over.
        assert_eq!(delay(b.on_failure(ms(64_000), 0.0)), ms(1000));
        assert!(matches!(
            b.on_failure(ms(65_000), 0.0),
            RestartDecision::Restart { attempt: 2, .. }
        ));
    }

    #[test]
    fn exponential_delay_gives_up_after_its_attempts() {
        let mut s = exponential();
        if let RestartStrategy::ExponentialDelay {
            attempts_before_reset_backoff,
            ..
        } = &mut s
        {
            *attempts_before_reset_backoff = 2;
        }
        let mut b = RestartBackoff::new(s);
        assert!(matches!(
            b.on_failure(ms(0), 0.0),
            RestartDecision::Restart { .. }
        ));
        assert!(matches!(
            b.on_failure(ms(1), 0.0),
            RestartDecision::Restart { .. }
        ));
        let RestartDecision::GiveUp { message } = b.on_failure(ms(2), 0.0) else {
            panic!("expected to give up");
        };
        assert_eq!(
            message,
            "Recovery is suppressed by ExponentialDelayRestartBackoffTimeStrategy(\
             initialBackoffMS=1000, maxBackoffMS=5000, backoffMultiplier=2.0, \
             resetBackoffThresholdMS=60000, jitterFactor=0.1, attemptsBeforeResetBackoff=2)"
        );
    }

    #[test]
    fn flinks_default_exponential_strategy_prints_as_flink_does() {
        let s = RestartStrategy::ExponentialDelay {
            initial_backoff: ms(1000),
            max_backoff: ms(60_000),
            backoff_multiplier: 1.5,
            reset_backoff_threshold: ms(3_600_000),
            jitter_factor: 0.1,
            attempts_before_reset_backoff: 2147483647,
        };
        assert_eq!(
            describe(&s),
            "ExponentialDelayRestartBackoffTimeStrategy(initialBackoffMS=1000, \
             maxBackoffMS=60000, backoffMultiplier=1.5, resetBackoffThresholdMS=3600000, \
             jitterFactor=0.1, attemptsBeforeResetBackoff=2147483647)"
        );
    }

    #[test]
    fn failure_rate_gives_up_when_the_interval_holds_too_many_failures() {
        let mut b = RestartBackoff::new(RestartStrategy::FailureRate {
            max_failures_per_interval: 2,
            interval: ms(1000),
            delay: ms(10),
        });
        assert!(matches!(
            b.on_failure(ms(0), 0.0),
            RestartDecision::Restart { .. }
        ));
        // Second failure 5 s later: the two are not within one interval.
        assert!(matches!(
            b.on_failure(ms(5000), 0.0),
            RestartDecision::Restart { .. }
        ));
        assert!(matches!(
            b.on_failure(ms(5500), 0.0),
            RestartDecision::GiveUp { .. }
        ));
    }
}
