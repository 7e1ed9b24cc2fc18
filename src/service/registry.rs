//! The jobs this process runs, as the REST API and the dashboard see them: id, name, state
//! (Flink's names), the plan's vertices, live metrics, checkpoint statistics, configuration,
//! the latest restore, and a command channel per job (savepoint, stop, cancel) that the job's
//! driver answers.
//!
//! The registry only records and hands out copies; it never runs, stops or snapshots a job
//! itself. Readers get a [`JobView`] (a clone taken under a short lock), so a slow HTTP client
//! never holds the lock, and the data path never touches it at all: record counters are the
//! job's own atomics and checkpoint statistics are read through a closure the job provides.

use crate::checkpoint::coordinator::CheckpointStats;
use crate::checkpoint::{CompletedCheckpoint, JobId};
use crate::config::{Config, Entry};
use crate::pipeline::plan::{Exchange, Plan};
use crate::runtime::JobMetrics;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Milliseconds since the Unix epoch, as Flink's timestamps.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A job's state, with Flink's `JobStatus` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobState {
    Initializing,
    Created,
    Running,
    Failing,
    Failed,
    Cancelling,
    Canceled,
    Finished,
    Restarting,
    Suspended,
    Reconciling,
}

impl JobState {
    /// Every state, in Flink's order (for `timestamps` in `/jobs/:id`).
    pub const ALL: [JobState; 11] = [
        JobState::Initializing,
        JobState::Created,
        JobState::Running,
        JobState::Failing,
        JobState::Failed,
        JobState::Cancelling,
        JobState::Canceled,
        JobState::Finished,
        JobState::Restarting,
        JobState::Suspended,
        JobState::Reconciling,
    ];

    /// Flink's name: `RUNNING`, `CANCELED`...
    pub fn flink_name(self) -> &'static str {
        match self {
            JobState::Initializing => "INITIALIZING",
            JobState::Created => "CREATED",
            JobState::Running => "RUNNING",
            JobState::Failing => "FAILING",
            JobState::Failed => "FAILED",
            JobState::Cancelling => "CANCELLING",
            JobState::Canceled => "CANCELED",
            JobState::Finished => "FINISHED",
            JobState::Restarting => "RESTARTING",
            JobState::Suspended => "SUSPENDED",
            JobState::Reconciling => "RECONCILING",
        }
    }

    /// The job will not run again (Flink's globally terminal states, plus SUSPENDED, which
    /// in floe means the process stopped the job keeping its checkpoints).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Failed | JobState::Canceled | JobState::Finished | JobState::Suspended
        )
    }

    /// What `/readyz` accepts: running, or ended cleanly.
    pub fn is_ready(self) -> bool {
        matches!(
            self,
            JobState::Running | JobState::Finished | JobState::Suspended
        )
    }

    /// The state Flink shows for the job's vertices and subtasks while the job is in `self`.
    pub fn vertex_status(self) -> &'static str {
        match self {
            JobState::Initializing => "INITIALIZING",
            JobState::Created | JobState::Restarting | JobState::Suspended => "CREATED",
            JobState::Running | JobState::Failing => "RUNNING",
            JobState::Failed => "FAILED",
            JobState::Cancelling => "CANCELING",
            JobState::Canceled => "CANCELED",
            JobState::Finished => "FINISHED",
            JobState::Reconciling => "RECONCILING",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flink_name())
    }
}

/// An input of a vertex: the vertex it reads from and Flink's ship strategy name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexInput {
    /// Index into the job's vertices.
    pub from: usize,
    /// `FORWARD`, `REBALANCE` or `HASH`.
    pub ship_strategy: String,
}

/// One task of the plan (a chain of operators), as Flink's job vertex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexInfo {
    /// 32 hex characters, stable for a given head operator id.
    pub id: String,
    /// The chained operator ids joined by " -> ".
    pub name: String,
    /// The chained operator ids, head first.
    pub operators: Vec<String>,
    pub parallelism: u32,
    pub max_parallelism: u32,
    pub inputs: Vec<VertexInput>,
}

impl VertexInfo {
    /// The vertices of a plan, in task order.
    pub fn from_plan(plan: &Plan) -> Vec<VertexInfo> {
        plan.tasks
            .iter()
            .map(|t| {
                let operators: Vec<String> = t.operators.iter().map(|o| o.id.0.clone()).collect();
                VertexInfo {
                    id: vertex_id(operators.first().map_or("", String::as_str)),
                    name: t.name(),
                    operators,
                    parallelism: t.parallelism,
                    max_parallelism: plan.max_parallelism,
                    inputs: t
                        .inputs
                        .iter()
                        .map(|i| VertexInput {
                            from: i.from,
                            ship_strategy: ship_strategy(&i.exchange).into(),
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

fn ship_strategy(e: &Exchange) -> &'static str {
    match e {
        Exchange::Forward => "FORWARD",
        Exchange::Rebalance => "REBALANCE",
        Exchange::Hash { .. } => "HASH",
    }
}

/// A stable 32-hex id for the vertex whose head operator is `head`: two 64-bit FNV-1a
/// hashes with different offsets. Not Flink's uid hash (which needs Murmur3-128 over the
/// stream graph); it only has to be stable across runs and distinct within a job.
pub fn vertex_id(head: &str) -> String {
    fn fnv(seed: u64, s: &str) -> u64 {
        let mut h = seed;
        for b in s.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        h
    }
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325, head),
        fnv(0x6c62_272e_07bb_0142, head)
    )
}

/// The checkpoint or savepoint a job was (last) restored from: `latest.restored` in
/// `/jobs/:id/checkpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreInfo {
    pub id: u64,
    pub restore_timestamp: u64,
    pub is_savepoint: bool,
    /// `file:/abs/path`.
    pub external_path: String,
}

/// A savepoint taken through the API, for `latest.savepoint` and the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavepointRecord {
    pub id: u64,
    /// `file:/abs/path/savepoint-xxxxxx-xxxxxxxxxxxx`.
    pub location: String,
    pub size: u64,
    pub trigger_timestamp: u64,
    pub completion_timestamp: u64,
    /// Stop-with-savepoint (Flink's `SYNC_SAVEPOINT`) rather than a plain savepoint.
    pub synchronous: bool,
}

/// Reads the job's current checkpoint statistics; `None` when checkpointing is off. The job
/// owns the statistics (its checkpoint driver updates them), so the registry asks.
pub type StatsSource = Arc<dyn Fn() -> Option<CheckpointStats> + Send + Sync>;

/// The answer to a savepoint or stop: the completed savepoint, or why it failed.
pub type SavepointReply = oneshot::Sender<Result<CompletedCheckpoint, String>>;

/// What the API asks a running job to do; the job's driver answers on `reply`.
#[derive(Debug)]
pub enum JobCommand {
    /// Take a savepoint into `target` (already checked against the allowed roots and
    /// resolved to an absolute directory); then cancel the job if `cancel_job`.
    TriggerSavepoint {
        target: Option<String>,
        cancel_job: bool,
        reply: SavepointReply,
    },
    /// Stop with a savepoint into `target`: sinks commit and the job ends FINISHED. With
    /// `drain`, the sources emit the maximum watermark first (timers and windows flush).
    Stop {
        target: Option<String>,
        drain: bool,
        reply: SavepointReply,
    },
    /// Cancel at once, without a savepoint. The reply says the cancellation started.
    Cancel {
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// What the job tells the registry when it starts.
#[derive(Clone)]
pub struct JobRegistration {
    pub id: JobId,
    pub name: String,
    pub start_time: u64,
    pub vertices: Vec<VertexInfo>,
    pub metrics: Arc<JobMetrics>,
    pub stats: Option<StatsSource>,
    pub config: Arc<Config>,
    /// Every key's effective value and origin (`Loaded::entries`), for the configuration view.
    pub entries: Arc<Vec<Entry>>,
    pub restore: Option<RestoreInfo>,
}

impl JobRegistration {
    /// A registration starting now, with no checkpoint statistics and no restore.
    pub fn new(id: JobId, name: impl Into<String>, plan: &Plan, metrics: Arc<JobMetrics>) -> Self {
        JobRegistration {
            id,
            name: name.into(),
            start_time: now_ms(),
            vertices: VertexInfo::from_plan(plan),
            metrics,
            stats: None,
            config: Arc::new(Config::default()),
            entries: Arc::new(Vec::new()),
            restore: None,
        }
    }
}

/// A copy of one job's record, taken under a short lock.
#[derive(Clone)]
pub struct JobView {
    pub id: JobId,
    pub name: String,
    pub state: JobState,
    pub start_time: u64,
    /// `None` while the job runs.
    pub end_time: Option<u64>,
    pub last_modification: u64,
    /// When the job entered each state it went through (the latest entry per state).
    pub timestamps: BTreeMap<JobState, u64>,
    pub vertices: Vec<VertexInfo>,
    pub metrics: Arc<JobMetrics>,
    stats: Option<StatsSource>,
    pub config: Arc<Config>,
    pub entries: Arc<Vec<Entry>>,
    pub restore: Option<RestoreInfo>,
    /// How many times the job was restored (at start and on failover).
    pub restored_count: u64,
    pub restarts: u64,
    /// The message the job failed with.
    pub error: Option<String>,
    /// Savepoints taken through the API, oldest first.
    pub savepoints: Vec<SavepointRecord>,
    /// What `floe serve` adds: the pipeline file, the last reload error.
    pub notes: JobNotes,
    /// Records the job's sources emitted per second, over the last sampling period
    /// ([`JobRegistry::sample_rates`]).
    pub records_per_second: f64,
}

/// What `floe serve` says about a job besides Flink's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobNotes {
    /// The pipeline file (name in the pipelines directory) the job runs; `None` for a job
    /// of `floe run` or one submitted with `floe run -d`.
    pub file: Option<String>,
    /// Why the last edit of the file was not applied (the job runs the version before).
    pub reload_error: Option<String>,
}

impl JobView {
    /// The job's checkpoint statistics now; `None` with checkpointing off.
    pub fn checkpoint_stats(&self) -> Option<CheckpointStats> {
        self.stats.as_ref().and_then(|f| f())
    }

    pub fn has_checkpointing(&self) -> bool {
        self.stats.is_some() && self.config.checkpointing.interval.is_some()
    }

    /// Subtasks over all vertices.
    pub fn total_subtasks(&self) -> u32 {
        self.vertices.iter().map(|v| v.parallelism).sum()
    }
}

struct JobRecord {
    view: JobView,
    commands: mpsc::UnboundedSender<JobCommand>,
    /// The sources' records and when they were counted, for the rate.
    sample: Option<(std::time::Instant, u64)>,
}

/// Records the sources of a job emitted so far: records out of the head operator of every
/// vertex without inputs.
fn source_records(v: &JobView) -> u64 {
    v.vertices
        .iter()
        .filter(|x| x.inputs.is_empty())
        .filter_map(|x| x.operators.first())
        .filter_map(|id| v.metrics.operator(id))
        .map(|m| m.records_out())
        .sum()
}

/// Why a command could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("Job could not be found.")]
    UnknownJob,
    #[error("job {id} is {state}: it no longer takes commands")]
    NotRunning { id: JobId, state: JobState },
}

/// The jobs of this process; cheap to clone, every clone sees the same jobs.
#[derive(Clone, Default)]
pub struct JobRegistry {
    inner: Arc<Mutex<BTreeMap<JobId, JobRecord>>>,
    /// Notes given before the job registered, applied when it does. Taken with `inner` held.
    pending_notes: Arc<Mutex<BTreeMap<JobId, JobNotes>>>,
}

impl fmt::Debug for JobRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobRegistry")
            .field("jobs", &self.lock().len())
            .finish()
    }
}

impl JobRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<JobId, JobRecord>> {
        // The lock guards plain records: a panic while holding it leaves them usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a RUNNING job (replacing one with the same id) and returns the receiving end of
    /// its commands, for the job's driver to answer.
    pub fn register(&self, reg: JobRegistration) -> mpsc::UnboundedReceiver<JobCommand> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut timestamps = BTreeMap::new();
        timestamps.insert(JobState::Created, reg.start_time);
        timestamps.insert(JobState::Running, reg.start_time);
        let restored_count = u64::from(reg.restore.is_some());
        let view = JobView {
            id: reg.id.clone(),
            name: reg.name,
            state: JobState::Running,
            start_time: reg.start_time,
            end_time: None,
            last_modification: reg.start_time,
            timestamps,
            vertices: reg.vertices,
            metrics: reg.metrics,
            stats: reg.stats,
            config: reg.config,
            entries: reg.entries,
            restore: reg.restore,
            restored_count,
            restarts: 0,
            error: None,
            savepoints: Vec::new(),
            notes: JobNotes::default(),
            records_per_second: 0.0,
        };
        let mut jobs = self.lock();
        let mut view = view;
        if let Some(n) = self.pending().remove(&reg.id) {
            view.notes = n;
        }
        jobs.insert(
            reg.id,
            JobRecord {
                view,
                commands: tx,
                sample: None,
            },
        );
        rx
    }

    /// Forgets a job (an ended version beyond the history `floe serve` keeps).
    pub fn remove(&self, id: &JobId) -> bool {
        self.pending().remove(id);
        self.lock().remove(id).is_some()
    }

    /// Updates every running job's records per second from its sources' counters since the
    /// last call; an ended job's rate is 0. Called about once a second.
    pub fn sample_rates(&self) {
        let now = std::time::Instant::now();
        for r in self.lock().values_mut() {
            if r.view.state.is_terminal() {
                r.view.records_per_second = 0.0;
                continue;
            }
            let total = source_records(&r.view);
            if let Some((at, before)) = r.sample {
                let secs = now.duration_since(at).as_secs_f64();
                if secs > 0.0 {
                    r.view.records_per_second = total.saturating_sub(before) as f64 / secs;
                }
            }
            r.sample = Some((now, total));
        }
    }

    /// A task that calls [`JobRegistry::sample_rates`] every second, for as long as the
    /// runtime runs.
    pub fn spawn_rate_sampler(&self) -> tokio::task::JoinHandle<()> {
        let r = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                r.sample_rates();
            }
        })
    }

    fn pending(&self) -> MutexGuard<'_, BTreeMap<JobId, JobNotes>> {
        self.pending_notes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes a job's notes; for a job not registered yet, they apply when it registers.
    pub fn annotate(&self, id: &JobId, f: impl FnOnce(&mut JobNotes)) {
        let mut jobs = self.lock();
        match jobs.get_mut(id) {
            Some(r) => f(&mut r.view.notes),
            None => f(self.pending().entry(id.clone()).or_default()),
        }
    }

    fn update(&self, id: &JobId, f: impl FnOnce(&mut JobView)) -> bool {
        match self.lock().get_mut(id) {
            Some(r) => {
                f(&mut r.view);
                true
            }
            None => false,
        }
    }

    /// Moves the job to `state`; a terminal state also sets the end time. Returns false for
    /// an unknown job.
    pub fn set_state(&self, id: &JobId, state: JobState) -> bool {
        let now = now_ms();
        self.update(id, |v| {
            v.state = state;
            v.last_modification = now;
            v.timestamps.insert(state, now);
            if state.is_terminal() {
                v.end_time.get_or_insert(now);
            } else {
                v.end_time = None;
            }
        })
    }

    /// The job ended: its final state, and the error message if it failed.
    pub fn finish(&self, id: &JobId, state: JobState, error: Option<String>) -> bool {
        let ok = self.set_state(id, state);
        if error.is_some() {
            self.update(id, |v| v.error = error);
        }
        ok
    }

    /// A failover: the job restarts (RESTARTING), counting one restart.
    pub fn record_restart(&self, id: &JobId, error: Option<String>) -> bool {
        let ok = self.set_state(id, JobState::Restarting);
        self.update(id, |v| {
            v.restarts += 1;
            if error.is_some() {
                v.error = error;
            }
        });
        ok
    }

    /// The job restored from a checkpoint or savepoint (at start or on failover).
    pub fn record_restore(&self, id: &JobId, restore: RestoreInfo) -> bool {
        self.update(id, |v| {
            v.restore = Some(restore);
            v.restored_count += 1;
        })
    }

    /// A restarted job has new metrics and a new checkpoint driver.
    pub fn replace_sources(
        &self,
        id: &JobId,
        metrics: Arc<JobMetrics>,
        stats: Option<StatsSource>,
    ) -> bool {
        match self.lock().get_mut(id) {
            Some(r) => {
                r.view.metrics = metrics;
                r.view.stats = stats;
                // The counters start again from 0.
                r.sample = None;
                true
            }
            None => false,
        }
    }

    /// The job took new settings while running (`floe serve` applying an edited
    /// `flink-conf.yaml`): the configuration views show them.
    pub fn set_config(&self, id: &JobId, config: Arc<Config>, entries: Arc<Vec<Entry>>) -> bool {
        self.update(id, |v| {
            v.config = config;
            v.entries = entries;
        })
    }

    /// A savepoint completed (the API records the ones it triggered).
    pub fn record_savepoint(&self, id: &JobId, savepoint: SavepointRecord) -> bool {
        self.update(id, |v| {
            v.last_modification = savepoint.completion_timestamp;
            v.savepoints.retain(|s| s.id != savepoint.id);
            v.savepoints.push(savepoint);
            let keep = (v.config.checkpointing.history as usize).max(CheckpointStats::HISTORY);
            if v.savepoints.len() > keep {
                let drop = v.savepoints.len() - keep;
                v.savepoints.drain(..drop);
            }
        })
    }

    pub fn get(&self, id: &JobId) -> Option<JobView> {
        self.lock().get(id).map(|r| r.view.clone())
    }

    /// Every job, by id.
    pub fn list(&self) -> Vec<JobView> {
        self.lock().values().map(|r| r.view.clone()).collect()
    }

    /// Sends `cmd` to a job that is not terminal.
    pub fn send(&self, id: &JobId, cmd: JobCommand) -> Result<(), CommandError> {
        let jobs = self.lock();
        let r = jobs.get(id).ok_or(CommandError::UnknownJob)?;
        let not_running = || CommandError::NotRunning {
            id: id.clone(),
            state: r.view.state,
        };
        if r.view.state.is_terminal() {
            return Err(not_running());
        }
        r.commands.send(cmd).map_err(|_| not_running())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str) -> JobRegistration {
        JobRegistration {
            id: JobId(id.into()),
            name: "wc".into(),
            start_time: 1000,
            vertices: Vec::new(),
            metrics: Arc::new(JobMetrics::default()),
            stats: None,
            config: Arc::new(Config::default()),
            entries: Arc::new(Vec::new()),
            restore: None,
        }
    }

    #[test]
    fn vertex_ids_are_stable_hex_and_distinct() {
        let a = vertex_id("source");
        assert_eq!(a, vertex_id("source"));
        assert_eq!(a.len(), 32);
        assert!(JobId::is_valid(&a), "{a}");
        assert_ne!(a, vertex_id("count"));
    }

    #[test]
    fn terminal_states_end_the_job_and_refuse_commands() {
        let r = JobRegistry::new();
        let id = JobId("a".repeat(32));
        let mut rx = r.register(reg(&id.0));
        let (tx, _reply) = oneshot::channel();
        r.send(&id, JobCommand::Cancel { reply: tx }).unwrap();
        assert!(matches!(rx.try_recv(), Ok(JobCommand::Cancel { .. })));
        assert!(r.finish(&id, JobState::Canceled, None));
        let v = r.get(&id).unwrap();
        assert_eq!(v.state, JobState::Canceled);
        assert!(v.end_time.is_some());
        let (tx, _reply) = oneshot::channel();
        assert_eq!(
            r.send(&id, JobCommand::Cancel { reply: tx }),
            Err(CommandError::NotRunning {
                id: id.clone(),
                state: JobState::Canceled
            })
        );
        let (tx, _reply) = oneshot::channel();
        assert_eq!(
            r.send(&JobId("b".repeat(32)), JobCommand::Cancel { reply: tx }),
            Err(CommandError::UnknownJob)
        );
    }

    #[test]
    fn notes_given_before_the_job_registers_apply_when_it_does() {
        let r = JobRegistry::new();
        let id = JobId("d".repeat(32));
        r.annotate(&id, |n| n.file = Some("wc.yaml".into()));
        let _rx = r.register(reg(&id.0));
        assert_eq!(r.get(&id).unwrap().notes.file.as_deref(), Some("wc.yaml"));
        r.annotate(&id, |n| n.reload_error = Some("bad".into()));
        let v = r.get(&id).unwrap();
        assert_eq!(v.notes.reload_error.as_deref(), Some("bad"));
        assert_eq!(v.notes.file.as_deref(), Some("wc.yaml"));
    }

    #[test]
    fn restarts_and_restores_count() {
        let r = JobRegistry::new();
        let id = JobId("c".repeat(32));
        let _rx = r.register(reg(&id.0));
        r.record_restart(&id, Some("boom".into()));
        r.record_restore(
            &id,
            RestoreInfo {
                id: 3,
                restore_timestamp: 5,
                is_savepoint: false,
                external_path: "file:/ck/chk-3".into(),
            },
        );
        r.set_state(&id, JobState::Running);
        let v = r.get(&id).unwrap();
        assert_eq!((v.restarts, v.restored_count), (1, 1));
        assert_eq!(v.error.as_deref(), Some("boom"));
        assert_eq!(v.end_time, None);
        assert!(v.timestamps.contains_key(&JobState::Restarting));
    }
}
