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
