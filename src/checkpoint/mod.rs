//! Checkpoints: the coordinator (trigger, timeout, min-pause, max-concurrent, tolerable
//! failures), storage paths, the `_metadata` format, retention and shared-file reference
//! counts, restore mapping. It must never block the data path: encoding and writing run off
//! the task threads, and a task only hands over copy-on-write views at a barrier.
//!
//! - `types` (here): what crosses between tasks, state encoding, storage and coordinator.
//! - `metadata`: the `_metadata` file format (magic, version, checksum) and its types.
//! - `storage`: one function builds every path; atomic writes; reading with clear errors.
//! - `retention`: which checkpoints to delete (pure), shared-file reference counts.
//! - `coordinator`: trigger timing and failure counting (pure) and the async driver.
//! - `inspect`: the offline view behind `floe inspect`.

pub mod coordinator;
pub mod inspect;
pub mod metadata;
pub mod restore;
pub mod retention;
pub mod savepoint;
pub mod storage;

use crate::pipeline::OperatorId;
use crate::state::keyed::KeyedSnapshot;
use std::fmt;

pub use crate::runtime::message::CheckpointId;

/// A job's id: 32 lowercase hex characters, as Flink's `JobID`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct JobId(pub String);

impl JobId {
    /// A fresh random id.
    pub fn random() -> JobId {
        JobId(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Whether `s` has the form of a job id (32 lowercase hex characters).
    pub fn is_valid(s: &str) -> bool {
        s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a source is in its input: what it snapshots so that a restore resumes there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SourcePosition {
    /// `datagen`: the index of the next line this subtask generates.
    Datagen { next_line: u64 },
    /// `file`: per file, the byte offset of the next unread line.
    Files(Vec<(String, u64)>),
    /// `datagen` restored at another parallelism and not yet past every line done before:
    /// the next line of this subtask, and which lines were done before the rescale. Line `L`
    /// of block `k` (`L / datagen::BLOCK`) was done iff `L < old_next_lines[k % old_parallelism]`
    /// (`old_parallelism` is the modulus of that rule: the old parallelism, or a multiple of it
    /// after several rescales). Kept until `next_line` passes the largest of them, so a restore
    /// of a checkpoint taken meanwhile does not generate those lines again.
    ///
    /// Last variant on purpose: `_metadata` is postcard, where a variant is its index.
    DatagenRescaled {
        next_line: u64,
        old_parallelism: u32,
        old_next_lines: Vec<u64>,
    },
    /// `kafka`: per partition this subtask reads, the offset of the next record to emit.
    /// Added after `DatagenRescaled` so older encodings keep their indices.
    Kafka(Vec<KafkaOffset>),
}

/// One Kafka partition's next offset in a [`SourcePosition::Kafka`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KafkaOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// What a transactional sink subtask keeps in a checkpoint: what it pre-committed at the
/// barrier and has not yet committed. Small: it goes inline into `_metadata`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SinkState {
    /// The `file` sink as floe wrote it before part files rolled by size and time (a part per
    /// checkpoint, none in progress at a barrier): read from older checkpoints, never
    /// written; [`SinkState::upgraded`] turns it into [`SinkState::Files`].
    FilesBeforeRolling(FileSinkStateBeforeRolling),
    /// The exactly-once `kafka` sink (`operators::sinks::kafka`). postcard encodes a variant
    /// as its index: new variants go last.
    Kafka(KafkaSinkState),
    /// The exactly-once `file` sink (`operators::sinks::file`).
    Files(FileSinkState),
    /// The exactly-once `kafka` sink whose subtasks take their transactional ids from a
    /// fixed pool, slots `0..id_pool` (Flink's `FlinkKafkaProducer` pool): a restore aborts
    /// what is open under `<prefix>-<subtask>-<slot>` for every slot below
    /// `max(slots, id_pool)` and looks no further, so restarts do not add ids. `Kafka` is
    /// the form before pools (read from older checkpoints, never written: a restore cannot
    /// know how many ids the run after the checkpoint used, so it looks beyond `slots`).
    /// Added last: postcard encodes a variant as its index.
    KafkaPooled { state: KafkaSinkState, id_pool: u32 },
}

impl SinkState {
    /// The `kafka` sink's state and its id pool (`None`: written before pools).
    pub fn kafka(&self) -> Option<(&KafkaSinkState, Option<u32>)> {
        match self {
            SinkState::Kafka(k) => Some((k, None)),
            SinkState::KafkaPooled { state, id_pool } => Some((state, Some(*id_pool))),
            SinkState::Files(_) | SinkState::FilesBeforeRolling(_) => None,
        }
    }

    /// The state in the current form: an older `file` sink state with no part in progress.
    pub fn upgraded(self) -> SinkState {
        match self {
            SinkState::FilesBeforeRolling(f) => SinkState::Files(FileSinkState {
                subtask: f.subtask,
                next_part: f.next_part,
                pending: f.pending,
                in_progress: None,
            }),
            other => other,
        }
    }
}

/// [`FileSinkState`] without [`FileSinkState::in_progress`], as older checkpoints hold it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileSinkStateBeforeRolling {
    pub subtask: u32,
    pub next_part: u64,
    pub pending: Vec<PendingPart>,
}

/// The `kafka` sink's transactions of one subtask at a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KafkaSinkState {
    /// The subtask that wrote them.
    pub subtask: u32,
    /// The transactional ids this subtask used are `<prefix>-<subtask>-<slot>` for every
    /// `slot < slots`: a restore aborts whatever is still open under them. In
    /// [`SinkState::KafkaPooled`], one past the highest slot that held anything at the
    /// snapshot (ids above it and below the pool may be used after it).
    pub prefix: String,
    pub slots: u32,
    /// Transactions flushed at or before this checkpoint and not known to be committed,
    /// oldest first: a restore commits them.
    pub pending: Vec<KafkaPendingTxn>,
}

/// One pre-committed Kafka transaction: what a new process needs to commit it (Kafka's
/// `EndTxn` names the transaction by id, producer id and epoch).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KafkaPendingTxn {
    /// The checkpoint whose barrier flushed it: its completion commits it.
    pub checkpoint_id: u64,
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// The `file` sink's part files of one subtask at a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileSinkState {
    /// The subtask that wrote them: part files are named `part-<subtask>-<n>`.
    pub subtask: u32,
    /// The `n` of the next part file this subtask would start.
    pub next_part: u64,
    /// Part files finished at or before this checkpoint and not known to be committed, oldest
    /// first: a restore commits them (a commit of a committed file is a no-op).
    pub pending: Vec<PendingPart>,
    /// The part being written at the barrier, which the rolling policy kept open: its first
    /// `length` bytes belong to this checkpoint. A restore cuts what came after and goes on
    /// writing it (or commits it, when another subtask now writes this subtask's parts).
    pub in_progress: Option<InProgressPart>,
}

/// A part file still being written at a checkpoint: `.part-<subtask>-<part>.inprogress`, of
/// which the checkpoint covers the first `length` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InProgressPart {
    pub part: u64,
    pub length: u64,
}

/// One pre-committed part file: `.part-<subtask>-<part>.pending` until the checkpoint that
/// holds it completes, `part-<subtask>-<part>` after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingPart {
    /// The checkpoint whose barrier finished it: its completion commits it.
    pub checkpoint_id: u64,
    pub part: u64,
}

/// A sink's snapshot as handed to the state writer: the state, and the files and directories
/// whose contents the checkpoint relies on. The writer fsyncs them (off the data path) before
/// the subtask acks, so they are durable before `_metadata` exists. A path that is gone when
/// the writer gets to it was committed meanwhile by the sink's own `finish`, which fsyncs
/// what it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSnapshot {
    pub state: SinkState,
    pub fsync: Vec<std::path::PathBuf>,
}

/// What one operator subtask hands over when a barrier has aligned at it. The synchronous
/// part of the snapshot is done when this exists: keyed state is a copy-on-write view,
/// positions are copied. Encoding and writing happen elsewhere, off the data path.
#[derive(Debug, Clone)]
pub enum OperatorSnapshot {
    Keyed(KeyedSnapshot),
    Source(SourcePosition),
    Sink(SinkSnapshot),
}

/// One subtask's snapshot for one checkpoint, as sent from the task to the state writer.
#[derive(Debug, Clone)]
pub struct SubtaskSnapshot {
    pub checkpoint_id: CheckpointId,
    pub operator_id: OperatorId,
    pub subtask: u32,
    pub parallelism: u32,
    pub max_parallelism: u32,
    pub state: OperatorSnapshot,
}

/// Why a checkpoint could not be written, completed or read. Storage errors name the path.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Format(String),
    #[error("{0}")]
    Other(String),
}

/// A completed checkpoint as storage reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedCheckpoint {
    pub checkpoint_id: CheckpointId,
    /// The checkpoint's directory (`<dir>/<job-id>/chk-<n>`).
    pub path: std::path::PathBuf,
    /// Bytes of `_metadata` plus the state files this checkpoint wrote.
    pub size: u64,
}

/// How a job ended, for the retention rules at termination (docs/architecture.md#retention-at-job-end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobTermination {
    Finished,
    Cancelled,
    Failed,
    /// The process was stopped with its checkpoints kept for a later `-s` (as a killed
    /// process keeps them).
    Suspended,
}

/// What the coordinator and the tasks need from checkpoint storage. Implemented by the
/// file-system storage (`storage::FsCheckpointStore`); the runtime only sees this trait, so
/// its tests can use an in-memory one. Every method may block (it is called off the data
/// path, from `spawn_blocking`).
pub trait CheckpointStore: Send + Sync + 'static {
    /// Encodes and writes one subtask's snapshot (inline or to files by the threshold; full or
    /// incremental by the configuration) and says where it went.
    fn write_subtask(
        &self,
        snapshot: SubtaskSnapshot,
    ) -> Result<metadata::SubtaskStateMeta, CheckpointError>;

    /// Writes `_metadata` last and atomically: from then on the checkpoint exists. Then
    /// applies retention (deleting subsumed checkpoints and unreferenced shared files).
    fn complete(
        &self,
        metadata: metadata::CheckpointMetadata,
    ) -> Result<CompletedCheckpoint, CheckpointError>;

    /// Removes what an aborted (expired, failed) checkpoint wrote.
    fn abort(&self, checkpoint_id: CheckpointId);

    /// Applies the externalized-checkpoint retention rules when the job ends.
    fn terminate(&self, how: JobTermination);

    /// New `num-retained` and inline threshold for the checkpoints that complete from now
    /// on (a changed `flink-conf.yaml` under `floe serve`). Stores without these settings
    /// ignore it.
    fn reconfigure(&self, _num_retained: u32, _inline_threshold: u64) {}

    /// Creates the directory of a new savepoint under `target` (docs/architecture.md#savepoints) and returns
    /// it. Savepoints are written by [`savepoint`]'s functions, outside the checkpoint
    /// directory and its retention; a store only says how to place blobs.
    fn create_savepoint_dir(
        &self,
        target: &std::path::Path,
        job_id: &JobId,
    ) -> Result<std::path::PathBuf, CheckpointError> {
        savepoint::create_savepoint_dir(target, job_id)
    }

    /// Writes one subtask's snapshot of a savepoint into its directory `dir`: keyed state
    /// full, never shared. The default inlines nothing.
    fn write_savepoint_subtask(
        &self,
        dir: &std::path::Path,
        snapshot: SubtaskSnapshot,
    ) -> Result<metadata::SubtaskStateMeta, CheckpointError> {
        savepoint::SavepointWriter {
            inline_threshold: 0,
            always_inline: false,
        }
        .write_subtask(dir, snapshot)
    }

    /// Writes a savepoint's `_metadata`: from then on it exists. Not retained, never
    /// deleted by this store.
    fn complete_savepoint(
        &self,
        dir: &std::path::Path,
        metadata: metadata::CheckpointMetadata,
    ) -> Result<CompletedCheckpoint, CheckpointError> {
        savepoint::complete(dir, metadata)
    }

    /// Removes what a failed savepoint wrote into `dir`.
    fn abort_savepoint(&self, dir: &std::path::Path) {
        savepoint::abort(dir)
    }
}
