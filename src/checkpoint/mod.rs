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
use std::fmt;

pub use crate::state::OperatorSnapshot;

pub use crate::ids::CheckpointId;

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

/// One subtask's snapshot for one checkpoint, as sent from the task to the state writer.
/// The checkpoint layer stores its state without knowing what is inside (each operator owns
/// its encoding, see [`crate::state`]).
#[derive(Debug, Clone)]
pub struct SubtaskSnapshot {
    pub checkpoint_id: CheckpointId,
    pub operator_id: OperatorId,
    pub subtask: u32,
    pub parallelism: u32,
    pub max_parallelism: u32,
    pub state: OperatorSnapshot,
}

/// Why a checkpoint could not be written, completed or read. Every message names the path
/// or key and the fix; the variant says what kind of failure it is, for callers that act on
/// it (a restore looks for an older intact checkpoint only after `NotFound` or `Corrupt`).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The storage failed (disk, network, permissions): the data may well be fine.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint, savepoint, `_metadata` or state file that should be there is not.
    #[error("{0}")]
    NotFound(String),
    /// It is there, but truncated, fails its checksum or does not decode.
    #[error("{0}")]
    Corrupt(String),
    /// Something is there already that floe writes only once (`_metadata`).
    #[error("{0}")]
    AlreadyExists(String),
    /// floe will not do it: a location, name or setting it does not accept (an unsupported
    /// scheme, a forged file name, a checkpoint given where a savepoint is wanted).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

impl CheckpointError {
    /// Whether the snapshot itself is missing or damaged (not the storage or the request).
    pub fn is_damaged_snapshot(&self) -> bool {
        matches!(
            self,
            CheckpointError::NotFound(_) | CheckpointError::Corrupt(_)
        )
    }
}

/// A completed checkpoint as storage reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedCheckpoint {
    pub checkpoint_id: CheckpointId,
    /// The checkpoint's directory (`<dir>/<job-id>/chk-<n>`).
    pub path: storage::Location,
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

    /// Whether this store may write a delta of keyed state (incremental checkpoints). When it
    /// never does, keyed state need not track its changes. The default says yes: tracking
    /// costs memory, never correctness.
    fn writes_deltas(&self) -> bool {
        true
    }

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
    ) -> Result<storage::Location, CheckpointError> {
        savepoint::create_savepoint_dir(target, job_id)
    }

    /// Writes one subtask's snapshot of a savepoint into its directory `dir`: keyed state
    /// full, never shared. The default inlines nothing.
    fn write_savepoint_subtask(
        &self,
        dir: &storage::Location,
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
        dir: &storage::Location,
        metadata: metadata::CheckpointMetadata,
    ) -> Result<CompletedCheckpoint, CheckpointError> {
        savepoint::complete(dir, metadata)
    }

    /// Removes what a failed savepoint wrote into `dir`.
    fn abort_savepoint(&self, dir: &storage::Location) {
        savepoint::abort(dir)
    }
}
