//! The checkpoint coordinator's decisions, as plain synchronous code over explicit instants:
//! when the next checkpoint may trigger, which pending checkpoints expired, how failures count
//! towards `tolerable-failed-checkpoints`, which acks a checkpoint still waits for, and the
//! statistics kept for the REST API.
//!
//! It knows no clock, channel, task or file: the async driver (`runtime::checkpointing`) reads
//! the time, asks these types what to do, and does the I/O off the data path. So every rule
//! here is tested in-module by passing instants (docs/architecture.md#triggering-checkpoints,
//! docs/architecture.md#timeouts-and-failures).
//!
//! Rules (Flink's `CheckpointCoordinator` and `CheckpointFailureManager`):
//! - a checkpoint triggers every `interval` after the previous trigger, but never sooner than
//!   `min-pause` after the last completion, and never while `max-concurrent-checkpoints` are
//!   pending (with a min-pause above zero, never while one is pending);
//! - a pending checkpoint not complete within `timeout` expires, and that counts as a failure;
//! - consecutive counted failures above `tolerable-failed-checkpoints` fail the job; a completed
//!   checkpoint resets the count; skipped triggers ("not all tasks running") do not count;
//! - ids start at 1 (or after the restored id) and never repeat; savepoints share the counter.

use crate::checkpoint::metadata::{
    CheckpointMetadata, OperatorStateMeta, SnapshotKind, SubtaskStateMeta,
};
use crate::checkpoint::{CheckpointId, JobId};
use crate::config::CheckpointingConfig;
use crate::pipeline::OperatorId;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The settings the trigger and failure decisions read (already validated by `config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub min_pause: Duration,
    /// At least 1.
    pub max_concurrent: u32,
    pub tolerable_failed: u32,
}

impl TriggerSettings {
    /// `None` when checkpointing is disabled (`execution.checkpointing.interval` unset).
    pub fn from_config(c: &CheckpointingConfig) -> Option<TriggerSettings> {
        Some(TriggerSettings {
            interval: c.interval?,
            timeout: c.timeout,
            min_pause: c.min_pause,
            max_concurrent: c.max_concurrent.max(1),
            tolerable_failed: c.tolerable_failed,
        })
    }

    /// For a job without periodic checkpoints that may still take savepoints: the same
    /// timeout and failure settings; the interval is unused (see
    /// [`CheckpointSchedule::savepoints_only`]).
    pub fn savepoints_only(c: &CheckpointingConfig) -> TriggerSettings {
        TriggerSettings {
            interval: c.interval.unwrap_or(Duration::ZERO),
            timeout: c.timeout,
            min_pause: c.min_pause,
            max_concurrent: c.max_concurrent.max(1),
            tolerable_failed: c.tolerable_failed,
        }
    }
}

/// Why a checkpoint failed: Flink's `CheckpointFailureReason` text, and what we know more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// Not fully acknowledged within `execution.checkpointing.timeout`.
    Expired,
    /// Writing a subtask's state failed (Flink: the asynchronous part on a task manager).
    AsyncSnapshot(String),
    /// Writing `_metadata` failed.
    Finalize(String),
}

impl FailureReason {
    /// Flink's words for the reason (`CheckpointFailureReason.message()`).
    pub fn flink_text(&self) -> &'static str {
        match self {
            FailureReason::Expired => "Checkpoint expired before completing.",
            FailureReason::AsyncSnapshot(_) => "Asynchronous task checkpoint failed.",
            FailureReason::Finalize(_) => "Failure to finalize checkpoint.",
        }
    }

    fn detail(&self) -> Option<&str> {
        match self {
            FailureReason::Expired => None,
            FailureReason::AsyncSnapshot(d) | FailureReason::Finalize(d) => Some(d),
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flink_text())?;
        if let Some(d) = self.detail() {
            write!(f, " Cause: {d}")?;
        }
        Ok(())
    }
}

/// What a counted failure leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Within `tolerable-failed-checkpoints`: the job goes on.
    Tolerated { consecutive: u32 },
    /// Above it: the job fails with this message (Flink's, then our cause if any).
    FailJob { message: String },
}

/// Flink's message for a job failed by too many checkpoint failures.
pub fn tolerable_failure_message(latest: &FailureReason) -> String {
    let mut m = format!(
        "Exceeded checkpoint tolerable failure threshold. The latest checkpoint failed due to {}, \
         view the Checkpoint History tab or the Job Manager log to find out why continuous \
         checkpoints failed.",
        latest.flink_text()
    );
    if let Some(d) = latest.detail() {
        m.push_str(" Cause: ");
        m.push_str(d);
    }
    m
}

/// One pending checkpoint as the schedule sees it.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// `None` once every ack is in: `_metadata` is being written and the timeout no longer
    /// applies (Flink does not expire a checkpoint while finalizing it).
    deadline: Option<Instant>,
}

/// Trigger timing, timeouts and the consecutive-failure counter.
#[derive(Debug)]
pub struct CheckpointSchedule {
    settings: TriggerSettings,
    next_id: u64,
    pending: BTreeMap<CheckpointId, Pending>,
    /// The last trigger (or skipped trigger), or the job's start.
    last_trigger: Instant,
    last_completion: Option<Instant>,
    consecutive_failures: u32,
    /// False for a job without `execution.checkpointing.interval`: nothing triggers on its
    /// own, only requested savepoints take ids.
    periodic: bool,
    /// Every source's input ended: the next checkpoint (the final one) is due at once, not
    /// an interval after the last, as in Flink since 1.18 (FLINK-28386).
    inputs_ended: bool,
}

impl CheckpointSchedule {
    /// A schedule for a job started at `start` whose first checkpoint gets id `first_id`
    /// (1, or the restored id + 1). The first trigger is one interval after the start.
    pub fn new(settings: TriggerSettings, first_id: u64, start: Instant) -> Self {
        CheckpointSchedule {
            settings,
            next_id: first_id.max(1),
            pending: BTreeMap::new(),
            last_trigger: start,
            last_completion: None,
            consecutive_failures: 0,
            periodic: true,
            inputs_ended: false,
        }
    }

    /// A schedule that never triggers on its own: the job has no checkpoint interval but may
    /// take savepoints on request ([`CheckpointSchedule::trigger_now`]).
    pub fn savepoints_only(settings: TriggerSettings, first_id: u64, start: Instant) -> Self {
        CheckpointSchedule {
            periodic: false,
            ..Self::new(settings, first_id, start)
        }
    }

    /// Whether checkpoints trigger on a schedule (an interval is set).
    pub fn is_periodic(&self) -> bool {
        self.periodic
    }

    pub fn settings(&self) -> &TriggerSettings {
        &self.settings
    }

    /// New interval, timeout, pause and failure settings for what comes next (a changed
    /// `flink-conf.yaml` under `floe serve`). `interval: None` stops periodic triggers
    /// (savepoints still take ids). Checkpoints already pending keep their deadlines; the
    /// next trigger is one new interval after the last one; the consecutive-failure count
    /// stays and is judged against the new limit at the next failure.
    pub fn reconfigure(
        &mut self,
        interval: Option<Duration>,
        timeout: Duration,
        min_pause: Duration,
        tolerable_failed: u32,
    ) {
        self.periodic = interval.is_some();
        self.settings = TriggerSettings {
            interval: interval.unwrap_or(self.settings.interval),
            timeout,
            min_pause,
            max_concurrent: self.settings.max_concurrent,
            tolerable_failed,
        };
    }

    /// The id the next checkpoint (or savepoint) will get.
    pub fn next_id(&self) -> CheckpointId {
        CheckpointId(self.next_id)
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    pub fn is_pending(&self, id: CheckpointId) -> bool {
        self.pending.contains_key(&id)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Whether pending checkpoints keep the next one from triggering.
    fn blocked_by_pending(&self) -> bool {
        let limit = if self.settings.min_pause > Duration::ZERO {
            1
        } else {
            self.settings.max_concurrent as usize
        };
        self.pending.len() >= limit
    }

    /// When the next checkpoint may trigger; `None` while pending checkpoints block it (ask
    /// again when one completes, fails or expires).
    pub fn next_trigger_at(&self) -> Option<Instant> {
        if !self.periodic || self.blocked_by_pending() {
            return None;
        }
        let by_interval = if self.inputs_ended {
            self.last_trigger
        } else {
            self.last_trigger + self.settings.interval
        };
        Some(match self.last_completion {
            Some(done) => by_interval.max(done + self.settings.min_pause),
            None => by_interval,
        })
    }

    /// Whether a checkpoint should trigger at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.next_trigger_at().is_some_and(|at| at <= now)
    }

    /// Triggers a checkpoint at `now` if one is due: takes the next id and starts its timeout.
    pub fn trigger(&mut self, now: Instant) -> Option<CheckpointId> {
        if !self.is_due(now) {
            return None;
        }
        Some(self.trigger_now(now))
    }

    /// Every source's input ended: the final checkpoint triggers as soon as the pending ones
    /// and the minimum pause allow. Once: should it fail, the next is an interval later.
    pub fn all_inputs_ended(&mut self) {
        self.inputs_ended = true;
    }

    /// Takes the next id for a checkpoint or savepoint started at `now`, regardless of timing
    /// (a savepoint is requested, not scheduled).
    pub fn trigger_now(&mut self, now: Instant) -> CheckpointId {
        self.inputs_ended = false;
        let id = CheckpointId(self.next_id);
        self.next_id += 1;
        self.last_trigger = now;
        self.pending.insert(
            id,
            Pending {
                deadline: Some(now + self.settings.timeout),
            },
        );
        id
    }

    /// A due trigger that could not start because not every task is running (sources ended):
    /// no id is used, nothing is counted, the next try is one interval later.
    pub fn skip(&mut self, now: Instant) {
        self.last_trigger = now;
    }

    /// Every ack of `id` is in; its `_metadata` is being written: the timeout stops.
    pub fn finalizing(&mut self, id: CheckpointId) {
        if let Some(p) = self.pending.get_mut(&id) {
            p.deadline = None;
        }
    }

    /// The earliest deadline of a pending checkpoint.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().filter_map(|p| p.deadline).min()
    }

    /// The pending checkpoints whose deadline passed at `now`, oldest first. They stay
    /// pending until the caller reports them with [`CheckpointSchedule::on_failure`].
    pub fn expired(&self, now: Instant) -> Vec<CheckpointId> {
        self.pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Checkpoint `id` completed at `now`. False if it was no longer pending.
    pub fn on_complete(&mut self, id: CheckpointId, now: Instant) -> bool {
        if self.pending.remove(&id).is_none() {
            return false;
        }
        self.last_completion = Some(now);
        self.consecutive_failures = 0;
        true
    }

    /// Checkpoint `id` failed for `reason` and counts. `None` if it was no longer pending (a
    /// late report of a checkpoint already failed or expired).
    pub fn on_failure(
        &mut self,
        id: CheckpointId,
        reason: &FailureReason,
    ) -> Option<FailureOutcome> {
        self.pending.remove(&id)?;
        self.consecutive_failures += 1;
        Some(
            if self.consecutive_failures > self.settings.tolerable_failed {
                FailureOutcome::FailJob {
                    message: tolerable_failure_message(reason),
                }
            } else {
                FailureOutcome::Tolerated {
                    consecutive: self.consecutive_failures,
                }
            },
        )
    }

    /// Savepoint `id` completed: it leaves the pending set. Unlike a checkpoint it neither
    /// resets the failure count nor starts a min-pause (savepoints are requested, and their
    /// outcome says nothing about the periodic checkpoints). False if it was not pending.
    pub fn on_savepoint_complete(&mut self, id: CheckpointId) -> bool {
        self.pending.remove(&id).is_some()
    }

    /// Checkpoint `id` cannot complete for a reason Flink does not count (a task finished
    /// before its barrier reached it). False if it was no longer pending.
    pub fn on_abort_uncounted(&mut self, id: CheckpointId) -> bool {
        self.pending.remove(&id).is_some()
    }
}

/// One operator of the job, as a checkpoint's `_metadata` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorLayout {
    pub id: OperatorId,
    pub parallelism: u32,
    pub max_parallelism: u32,
}

/// What ack tracking answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// Recorded; others are still missing.
    Waiting,
    /// Recorded, and it was the last one.
    Complete,
    /// This (operator, subtask) had acked already, or is not in the job: ignored.
    Ignored,
}

/// The acks one pending checkpoint has and waits for: one per operator per subtask, stateless
/// ones included, so completion means the barrier passed every subtask.
#[derive(Debug, Clone)]
pub struct PendingAcks {
    pub checkpoint_id: CheckpointId,
    /// When it was triggered, ms since the Unix epoch.
    pub trigger_timestamp_ms: u64,
    /// `acks[operator][subtask]`, operators in layout order.
    acks: Vec<Vec<Option<SubtaskStateMeta>>>,
    missing: usize,
}

impl PendingAcks {
    pub fn new(
        checkpoint_id: CheckpointId,
        trigger_timestamp_ms: u64,
        layout: &[OperatorLayout],
    ) -> Self {
        let acks: Vec<Vec<Option<SubtaskStateMeta>>> = layout
            .iter()
            .map(|o| vec![None; o.parallelism as usize])
            .collect();
        let missing = acks.iter().map(Vec::len).sum();
        PendingAcks {
            checkpoint_id,
            trigger_timestamp_ms,
            acks,
            missing,
        }
    }

    pub fn missing(&self) -> usize {
        self.missing
    }

    /// Operator `operator` (index in the layout), subtask `subtask` acked with `meta`.
    pub fn ack(&mut self, operator: usize, subtask: u32, meta: SubtaskStateMeta) -> AckOutcome {
        let Some(slot) = self
            .acks
            .get_mut(operator)
            .and_then(|subtasks| subtasks.get_mut(subtask as usize))
        else {
            return AckOutcome::Ignored;
        };
        if slot.is_some() {
            return AckOutcome::Ignored;
        }
        *slot = Some(meta);
        self.missing -= 1;
        if self.missing == 0 {
            AckOutcome::Complete
        } else {
            AckOutcome::Waiting
        }
    }

    /// The `_metadata` of the completed checkpoint. Subtasks that acked no state keep an
    /// empty entry, so every operator lists all its subtasks.
    pub fn into_metadata(
        self,
        layout: &[OperatorLayout],
        job_id: &JobId,
        job_name: &str,
        completion_timestamp_ms: u64,
    ) -> CheckpointMetadata {
        let operators = layout
            .iter()
            .zip(self.acks)
            .map(|(o, subtasks)| OperatorStateMeta {
                operator_id: o.id.0.clone(),
                parallelism: o.parallelism,
                max_parallelism: o.max_parallelism,
                subtasks: subtasks
                    .into_iter()
                    .enumerate()
                    .map(|(s, meta)| meta.unwrap_or_else(|| empty_subtask(s as u32)))
                    .collect(),
            })
            .collect();
        CheckpointMetadata {
            checkpoint_id: self.checkpoint_id.0,
            job_id: job_id.clone(),
            job_name: job_name.to_owned(),
            kind: SnapshotKind::Checkpoint,
            trigger_timestamp_ms: self.trigger_timestamp_ms,
            completion_timestamp_ms,
            operators,
        }
    }
}

/// A subtask's entry when it holds no state.
pub fn empty_subtask(subtask: u32) -> SubtaskStateMeta {
    SubtaskStateMeta {
        subtask,
        key_groups: None,
        keyed: None,
        keyed_format: None,
        operator: None,
    }
}

/// Minimum, maximum and sum of a quantity over completed checkpoints (Flink's REST summary).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinMaxSum {
    pub min: u64,
    pub max: u64,
    pub sum: u64,
    pub count: u64,
}

impl MinMaxSum {
    pub fn add(&mut self, v: u64) {
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.sum += v;
        self.count += 1;
    }

    pub fn avg(&self) -> u64 {
        self.sum.checked_div(self.count).unwrap_or(0)
    }
}

/// A completed checkpoint in the statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedStats {
    pub id: CheckpointId,
    pub path: PathBuf,
    pub size: u64,
    pub duration_ms: u64,
    pub trigger_timestamp_ms: u64,
    pub completion_timestamp_ms: u64,
}

/// A failed checkpoint in the statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedStats {
    pub id: CheckpointId,
    /// The reason, Flink's text first.
    pub reason: String,
    pub failure_timestamp_ms: u64,
}

/// What kind of snapshot a history entry is (Flink's `checkpoint_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotStatsKind {
    Checkpoint,
    /// A savepoint taken while the job goes on (`SAVEPOINT`).
    Savepoint,
    /// The savepoint of stop-with-savepoint (`SYNC_SAVEPOINT`): the job ends after it.
    SyncSavepoint,
}

impl SnapshotStatsKind {
    pub fn is_savepoint(self) -> bool {
        self != SnapshotStatsKind::Checkpoint
    }

    /// Flink's REST `checkpoint_type`.
    pub fn flink_type(self) -> &'static str {
        match self {
            SnapshotStatsKind::Checkpoint => "CHECKPOINT",
            SnapshotStatsKind::Savepoint => "SAVEPOINT",
            SnapshotStatsKind::SyncSavepoint => "SYNC_SAVEPOINT",
        }
    }
}

/// A completed or failed savepoint in the statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavepointStats {
    /// `Savepoint` or `SyncSavepoint`.
    pub kind: SnapshotStatsKind,
    /// `Ok`: completed (the path is the savepoint directory); `Err`: failed.
    pub outcome: Result<CompletedStats, FailedStats>,
}

impl SavepointStats {
    pub fn id(&self) -> CheckpointId {
        match &self.outcome {
            Ok(c) => c.id,
            Err(f) => f.id,
        }
    }
}

/// One entry of the recent history, newest last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryEntry {
    Completed(CompletedStats),
    Failed(FailedStats),
    /// A savepoint, completed or failed. Savepoints are counted in `triggered`, `completed`
    /// and `failed` as Flink counts them, but not in the checkpoint summary, `latest_completed`
    /// or the consecutive failures.
    Savepoint(SavepointStats),
}

impl HistoryEntry {
    pub fn kind(&self) -> SnapshotStatsKind {
        match self {
            HistoryEntry::Completed(_) | HistoryEntry::Failed(_) => SnapshotStatsKind::Checkpoint,
            HistoryEntry::Savepoint(s) => s.kind,
        }
    }
}

/// What the REST API and the CLI show about a job's checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    pub triggered: u64,
    pub in_progress: u64,
    pub completed: u64,
    pub failed: u64,
    /// Triggers skipped because not every task was running (not failures).
    pub skipped: u64,
    pub consecutive_failures: u32,
    pub latest_completed: Option<CompletedStats>,
    pub latest_failed: Option<FailedStats>,
    /// The newest completed savepoint.
    pub latest_savepoint: Option<SavepointStats>,
    pub duration_ms: MinMaxSum,
    pub size_bytes: MinMaxSum,
    /// The newest completed or failed checkpoints and savepoints, oldest first: at most
    /// [`CheckpointStats::kept`] of them.
    pub history: VecDeque<HistoryEntry>,
    /// `web.checkpoints.history`; `None` = its default, [`CheckpointStats::HISTORY`].
    pub history_limit: Option<usize>,
}

impl CheckpointStats {
    /// `web.checkpoints.history`'s default.
    pub const HISTORY: usize = 10;

    /// Statistics whose history serves `web.checkpoints.history` = `limit` entries.
    pub fn with_history(limit: usize) -> CheckpointStats {
        CheckpointStats {
            history_limit: Some(limit),
            ..CheckpointStats::default()
        }
    }

    /// Entries `history` keeps: the configured number, and never fewer than the default, so
    /// a small REST history still leaves the details and the summary their entries.
    pub fn kept(&self) -> usize {
        self.history_limit
            .unwrap_or(Self::HISTORY)
            .max(Self::HISTORY)
    }

    pub fn on_triggered(&mut self) {
        self.triggered += 1;
        self.in_progress += 1;
    }

    pub fn on_completed(&mut self, c: CompletedStats) {
        self.in_progress = self.in_progress.saturating_sub(1);
        self.completed += 1;
        self.consecutive_failures = 0;
        self.duration_ms.add(c.duration_ms);
        self.size_bytes.add(c.size);
        self.push(HistoryEntry::Completed(c.clone()));
        self.latest_completed = Some(c);
    }

    pub fn on_failed(&mut self, f: FailedStats, consecutive: u32) {
        self.in_progress = self.in_progress.saturating_sub(1);
        self.failed += 1;
        self.consecutive_failures = consecutive;
        self.push(HistoryEntry::Failed(f.clone()));
        self.latest_failed = Some(f);
    }

    /// A savepoint completed (`Ok`) or failed (`Err`).
    pub fn on_savepoint(&mut self, s: SavepointStats) {
        self.in_progress = self.in_progress.saturating_sub(1);
        if s.outcome.is_ok() {
            self.completed += 1;
            self.latest_savepoint = Some(s.clone());
        } else {
            self.failed += 1;
        }
        self.push(HistoryEntry::Savepoint(s));
    }

    /// A pending checkpoint dropped without counting (a task finished first).
    pub fn on_abandoned(&mut self) {
        self.in_progress = self.in_progress.saturating_sub(1);
    }

    fn push(&mut self, e: HistoryEntry) {
        while self.history.len() >= self.kept() {
            self.history.pop_front();
        }
        self.history.push_back(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TriggerSettings {
        TriggerSettings {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(1000),
            min_pause: Duration::ZERO,
            max_concurrent: 1,
            tolerable_failed: 0,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn disabled_without_an_interval() {
        let mut c = crate::config::Config::default().checkpointing;
        assert_eq!(TriggerSettings::from_config(&c), None);
        c.interval = Some(ms(500));
        c.tolerable_failed = 3;
        let s = TriggerSettings::from_config(&c).unwrap();
        assert_eq!(s.interval, ms(500));
        assert_eq!(s.tolerable_failed, 3);
        assert_eq!(s.timeout, Duration::from_secs(600));
    }

    #[test]
    fn reconfigure_moves_the_next_trigger_and_can_stop_or_start_periodic_checkpoints() {
        let t0 = Instant::now();
        let mut s = CheckpointSchedule::new(settings(), 1, t0);
        assert_eq!(s.trigger(t0 + ms(100)), Some(CheckpointId(1)));
        // Pending: its deadline stays the old timeout's.
        s.reconfigure(Some(ms(400)), ms(5000), Duration::ZERO, 2);
        assert_eq!(s.next_deadline(), Some(t0 + ms(1100)));
        assert!(s.on_complete(CheckpointId(1), t0 + ms(120)));
        assert_eq!(s.next_trigger_at(), Some(t0 + ms(500)));
        assert_eq!(s.trigger(t0 + ms(499)), None);
        assert_eq!(s.trigger(t0 + ms(500)), Some(CheckpointId(2)));
        assert_eq!(s.next_deadline(), Some(t0 + ms(5500)));
        assert_eq!(s.settings().tolerable_failed, 2);
        assert!(s.on_complete(CheckpointId(2), t0 + ms(510)));
        // Interval removed: nothing triggers on its own, savepoints still take ids.
        s.reconfigure(None, ms(5000), Duration::ZERO, 2);
        assert!(!s.is_periodic());
        assert_eq!(s.trigger(t0 + ms(10_000)), None);
        assert_eq!(s.trigger_now(t0 + ms(10_001)), CheckpointId(3));
        // And back.
        let mut p = CheckpointSchedule::savepoints_only(settings(), 1, t0);
        p.reconfigure(Some(ms(50)), ms(1000), Duration::ZERO, 0);
        assert!(p.is_periodic());
        assert_eq!(p.trigger(t0 + ms(50)), Some(CheckpointId(1)));
    }

    #[test]
    fn ids_start_at_one_and_after_a_restore() {
        let t0 = Instant::now();
        let mut s = CheckpointSchedule::new(settings(), 1, t0);
        assert_eq!(s.trigger(t0), None, "nothing before one interval");
        assert_eq!(s.next_trigger_at(), Some(t0 + ms(100)));
        assert_eq!(s.trigger(t0 + ms(100)), Some(CheckpointId(1)));
        assert!(s.on_complete(CheckpointId(1), t0 + ms(110)));
        assert_eq!(s.trigger(t0 + ms(200)), Some(CheckpointId(2)));

        let mut r = CheckpointSchedule::new(settings(), 8, t0);
        assert_eq!(r.next_id(), CheckpointId(8));
        assert_eq!(r.trigger(t0 + ms(100)), Some(CheckpointId(8)));
        // A savepoint takes from the same counter.
        assert_eq!(r.trigger_now(t0 + ms(101)), CheckpointId(9));
    }

    #[test]
    fn min_pause_spaces_checkpoints_from_the_last_completion() {
        let t0 = Instant::now();
        let mut s = CheckpointSchedule::new(
            TriggerSettings {
                min_pause: ms(250),
                max_concurrent: 5,
                ..settings()
            },
            1,
            t0,
        );
        assert_eq!(s.trigger(t0 + ms(100)), Some(CheckpointId(1)));
        // With a min-pause, one pending checkpoint blocks the next whatever max-concurrent.
        assert_eq!(s.next_trigger_at(), None);
        assert_eq!(s.trigger(t0 + ms(200)), None);
        assert!(s.on_complete(CheckpointId(1), t0 + ms(230)));
        // The interval would allow 200 ms; the pause says 230 + 250.
        assert_eq!(s.next_trigger_at(), Some(t0 + ms(480)));
        assert_eq!(s.trigger(t0 + ms(479)), None);
        assert_eq!(s.trigger(t0 + ms(480)), Some(CheckpointId(2)));
        // A short checkpoint: the interval is the later bound.
        assert!(s.on_complete(CheckpointId(2), t0 + ms(481)));
        assert_eq!(s.next_trigger_at(), Some(t0 + ms(731)));
    }

    #[test]
    fn the_final_checkpoint_is_due_once_every_input_ended() {
        let t0 = Instant::now();
        let mut s = CheckpointSchedule::new(
            TriggerSettings {
                interval: Duration::from_secs(3600),
                min_pause: ms(250),
                ..settings()
            },
            1,
            t0,
        );
        s.all_inputs_ended();
        assert_eq!(s.trigger(t0 + ms(1)), Some(CheckpointId(1)));
        // Once: a failed final checkpoint does not make the next one due at once.
        assert!(s
            .on_failure(CheckpointId(1), &FailureReason::Expired)
            .is_some());
        assert_eq!(
            s.next_trigger_at(),
            Some(t0 + ms(1) + Duration::from_secs(3600))
        );
        // Pending checkpoints and the minimum pause still hold it back.
        assert_eq!(s.trigger_now(t0 + ms(10)), CheckpointId(2));
        s.all_inputs_ended();
        assert_eq!(s.next_trigger_at(), None);
        assert!(s.on_complete(CheckpointId(2), t0 + ms(20)));
        assert_eq!(s.next_trigger_at(), Some(t0 + ms(270)));
        assert_eq!(s.trigger(t0 + ms(270)), Some(CheckpointId(3)));
    }

    #[test]
    fn max_concurrent_holds_triggers_while_that_many_are_pending() {
        let t0 = Instant::now();
        let mut s = CheckpointSchedule::new(
            TriggerSettings {
                max_concurrent: 2,
                ..settings()
            },
            1,
            t0,
        );
        assert_eq!(s.trigger(t0 + ms(100)), Some(CheckpointId(1)));
        assert_eq!(s.trigger(t0 + ms(200)), Some(CheckpointId(2)));
        assert_eq!(s.pending_count(), 2);
        assert_eq!(s.next_trigger_at(), None);
        assert_eq!(s.trigger(t0 + ms(300)), None);
        assert!(s.on_complete(CheckpointId(1), t0 + ms(350)));
        // Overdue: triggers at once.
        assert_eq!(s.trigger(t0 + ms(350)), Some(CheckpointId(3)));

        let mut one = CheckpointSchedule::new(settings(), 1, t0);
        assert_eq!(one.trigger(t0 + ms(100)), Some(CheckpointId(1)));
        assert_eq!(one.trigger(t0 + ms(10_000)), None, "max-concurrent 1");
    }

    #[test]
    fn a_timeout_expires_the_checkpoint_and_counts_as_a_failure() {
        let t0 = Instant::now();
        let mut s = CheckpointSchedule::new(
            TriggerSettings {
                tolerable_failed: 1,
                ..settings()
            },
            1,
            t0,
        );
        let id = s.trigger(t0 + ms(100)).unwrap();
        assert_eq!(s.next_deadline(), Some(t0 + ms(1100)));
        assert!(s.expired(t0 + ms(1099)).is_empty());
        assert_eq!(s.expired(t0 + ms(1100)), vec![id]);
        assert_eq!(
            s.on_failure(id, &FailureReason::Expired),
            Some(FailureOutcome::Tolerated { consecutive: 1 })
        );
        assert!(!s.is_pending(id));
        // A late failure report of the same checkpoint counts nothing.
        assert_eq!(s.on_failure(id, &FailureReason::Expired), None);
        assert_eq!(s.consecutive_failures(), 1);
        // A finalizing checkpoint does not expire.
        let id2 = s.trigger(t0 + ms(1200)).unwrap();
        s.finalizing(id2);
        assert!(s.expired(t0 + ms(100_000)).is_empty());
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn the_job_fails_after_tolerable_plus_one_consecutive_failures() {
        let t0 = Instant::now();
        let mut s = CheckpointSchedule::new(
            TriggerSettings {
                tolerable_failed: 2,
                ..settings()
            },
            1,
            t0,
        );
        let mut t = t0;
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            t += ms(100);
            let id = s.trigger(t).unwrap();
            outcomes.push(s.on_failure(id, &FailureReason::Expired).unwrap());
        }
        assert_eq!(outcomes[0], FailureOutcome::Tolerated { consecutive: 1 });
        assert_eq!(outcomes[1], FailureOutcome::Tolerated { consecutive: 2 });
        assert_eq!(
            outcomes[2],
            FailureOutcome::FailJob {
                message: "Exceeded checkpoint tolerable failure threshold. The latest checkpoint \
                          failed due to Checkpoint expired before completing., view the \
                          Checkpoint History tab or the Job Manager log to find out why \
                          continuous checkpoints failed."
                    .into()
            }
        );
    }

    #[test]
    fn a_success_resets_the_failure_count_and_skips_do_not_count() {
        let t0 = Instant::now();
        let mut s = CheckpointSchedule::new(
            TriggerSettings {
                tolerable_failed: 1,
                ..settings()
            },
            1,
            t0,
        );
        let reason = FailureReason::AsyncSnapshot("disk full".into());
        let a = s.trigger(t0 + ms(100)).unwrap();
        assert!(matches!(
            s.on_failure(a, &reason),
            Some(FailureOutcome::Tolerated { consecutive: 1 })
        ));
        let b = s.trigger(t0 + ms(200)).unwrap();
        assert!(s.on_complete(b, t0 + ms(210)));
        assert_eq!(s.consecutive_failures(), 0);
        // Skipped triggers use no id and count nothing.
        assert!(s.is_due(t0 + ms(300)));
        s.skip(t0 + ms(300));
        assert!(!s.is_due(t0 + ms(399)));
        let c = s.trigger(t0 + ms(400)).unwrap();
        assert_eq!(c, CheckpointId(3));
        assert!(s.on_abort_uncounted(c));
        assert_eq!(s.consecutive_failures(), 0);
        let d = s.trigger(t0 + ms(500)).unwrap();
        assert!(matches!(
            s.on_failure(d, &reason),
            Some(FailureOutcome::Tolerated { consecutive: 1 })
        ));
        let e = s.trigger(t0 + ms(600)).unwrap();
        let Some(FailureOutcome::FailJob { message }) = s.on_failure(e, &reason) else {
            panic!("the second consecutive failure exceeds 1");
        };
        assert!(message.starts_with(
            "Exceeded checkpoint tolerable failure threshold. The latest checkpoint failed due \
             to Asynchronous task checkpoint failed., view the Checkpoint History tab"
        ));
        assert!(message.ends_with("Cause: disk full"), "{message}");
    }

    fn layout() -> Vec<OperatorLayout> {
        vec![
            OperatorLayout {
                id: OperatorId("source".into()),
                parallelism: 2,
                max_parallelism: 128,
            },
            OperatorLayout {
                id: OperatorId("count".into()),
                parallelism: 1,
                max_parallelism: 128,
            },
        ]
    }

    #[test]
    fn a_checkpoint_completes_once_every_subtask_acked() {
        let l = layout();
        let mut p = PendingAcks::new(CheckpointId(4), 1000, &l);
        assert_eq!(p.missing(), 3);
        let pos = SubtaskStateMeta {
            operator: Some(
                crate::operators::sources::SourcePosition::Datagen { next_line: 7 }.to_blob(),
            ),
            ..empty_subtask(1)
        };
        assert_eq!(p.ack(0, 1, pos.clone()), AckOutcome::Waiting);
        assert_eq!(p.ack(0, 1, pos.clone()), AckOutcome::Ignored, "duplicate");
        assert_eq!(
            p.ack(5, 0, empty_subtask(0)),
            AckOutcome::Ignored,
            "unknown"
        );
        assert_eq!(
            p.ack(0, 2, empty_subtask(2)),
            AckOutcome::Ignored,
            "unknown"
        );
        assert_eq!(p.ack(1, 0, empty_subtask(0)), AckOutcome::Waiting);
        assert_eq!(p.ack(0, 0, empty_subtask(0)), AckOutcome::Complete);
        let m = p.into_metadata(&l, &JobId("a".repeat(32)), "job", 2000);
        assert_eq!(m.checkpoint_id, 4);
        assert_eq!(m.kind, SnapshotKind::Checkpoint);
        assert_eq!(
            (m.trigger_timestamp_ms, m.completion_timestamp_ms),
            (1000, 2000)
        );
        assert_eq!(m.operators.len(), 2);
        assert_eq!(m.operators[0].operator_id, "source");
        assert_eq!(m.operators[0].parallelism, 2);
        assert_eq!(m.operators[0].max_parallelism, 128);
        assert_eq!(m.operators[0].subtasks, vec![empty_subtask(0), pos]);
        assert_eq!(m.operators[1].subtasks, vec![empty_subtask(0)]);
    }

    #[test]
    fn stats_keep_counts_extremes_and_a_bounded_history() {
        let mut s = CheckpointStats::default();
        for i in 1..=12u64 {
            s.on_triggered();
            s.on_completed(CompletedStats {
                id: CheckpointId(i),
                path: PathBuf::from(format!("chk-{i}")),
                size: i * 10,
                duration_ms: i,
                trigger_timestamp_ms: 0,
                completion_timestamp_ms: 0,
            });
        }
        s.on_triggered();
        s.on_failed(
            FailedStats {
                id: CheckpointId(13),
                reason: FailureReason::Expired.to_string(),
                failure_timestamp_ms: 0,
            },
            1,
        );
        assert_eq!(
            (s.triggered, s.completed, s.failed, s.in_progress),
            (13, 12, 1, 0)
        );
        assert_eq!(s.latest_completed.as_ref().unwrap().id, CheckpointId(12));
        assert_eq!((s.size_bytes.min, s.size_bytes.max), (10, 120));
        assert_eq!(s.duration_ms.avg(), 6);
        assert_eq!(s.history.len(), CheckpointStats::HISTORY);
        assert!(matches!(s.history.back(), Some(HistoryEntry::Failed(_))));
        assert_eq!(s.consecutive_failures, 1);
    }

    #[test]
    fn history_keeps_the_configured_number_of_entries() {
        for (limit, kept) in [(3, 10), (25, 25)] {
            let mut s = CheckpointStats::with_history(limit);
            for i in 1..=40u64 {
                s.on_triggered();
                s.on_completed(CompletedStats {
                    id: CheckpointId(i),
                    path: PathBuf::from(format!("chk-{i}")),
                    size: 1,
                    duration_ms: 1,
                    trigger_timestamp_ms: 0,
                    completion_timestamp_ms: 0,
                });
            }
            assert_eq!(s.history.len(), kept, "web.checkpoints.history {limit}");
            assert!(
                matches!(s.history.back(), Some(HistoryEntry::Completed(c)) if c.id == CheckpointId(40))
            );
        }
    }
}
