//! The `_metadata` file: what a completed checkpoint or savepoint holds, and its on-disk form.
//!
//! On disk: `magic (4 bytes) | format version (u32 BE) | payload length (u64 BE) | payload |
//! crc32c of everything before it (u32 BE)`, the payload being postcard of
//! [`CheckpointMetadata`]. A reader refuses an unknown magic or version and a wrong checksum,
//! with an error naming the file.
//!
//! State is referenced by names relative to the checkpoint's own directory (exclusive files)
//! or to the job's `shared/` directory (incremental files), never by absolute paths, so a
//! savepoint directory can be moved.
//!
//! TYPES ONLY in this commit: encoding/decoding is to be written.

use crate::checkpoint::{JobId, SourcePosition};
use serde::{Deserialize, Serialize};

/// First bytes of every `_metadata` file floe writes.
pub const METADATA_MAGIC: [u8; 4] = *b"FLOE";
/// The format version this build writes (and the newest it reads).
pub const METADATA_VERSION: u32 = 1;

/// Checkpoint or savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotKind {
    Checkpoint,
    Savepoint,
}

/// Everything a restore needs, and everything `floe inspect` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    pub checkpoint_id: u64,
    pub job_id: JobId,
    pub job_name: String,
    pub kind: SnapshotKind,
    /// When the checkpoint was triggered, ms since the Unix epoch.
    pub trigger_timestamp_ms: u64,
    /// When `_metadata` was written, ms since the Unix epoch.
    pub completion_timestamp_ms: u64,
    pub operators: Vec<OperatorStateMeta>,
}

/// One operator's state in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorStateMeta {
    /// The pipeline `id` of the operator.
    pub operator_id: String,
    pub parallelism: u32,
    pub max_parallelism: u32,
    pub subtasks: Vec<SubtaskStateMeta>,
}

/// One subtask's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskStateMeta {
    pub subtask: u32,
    /// Inclusive key-group range `[start, end]` of keyed state.
    pub key_groups: Option<(u32, u32)>,
    pub keyed: Option<KeyedStateHandle>,
    pub source: Option<SourcePosition>,
}

/// Where a subtask's keyed state is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KeyedStateHandle {
    /// One full snapshot.
    Full(StateBlob),
    /// Incremental: `chain[0]` is a full snapshot, each later one the changes (with
    /// deletions) since the one before; applying them in order gives the state.
    Incremental { chain: Vec<StateBlob> },
}

/// One encoded piece of keyed state, indexed by key group so that a restore reads only the
/// groups it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateBlob {
    pub location: BlobLocation,
    /// Bytes of the encoded state.
    pub size: u64,
    pub groups: Vec<GroupIndexEntry>,
}

/// Where a blob's bytes are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BlobLocation {
    /// Below `state.backend.fs.memory-threshold` (or with the `jobmanager` backend): inside
    /// `_metadata`.
    Inline(Vec<u8>),
    /// A file in the checkpoint's own directory (`chk-<n>/<name>`, or the savepoint's).
    Exclusive(String),
    /// A file in the job's `shared/` directory (incremental checkpoints).
    Shared(String),
}

/// One key group's bytes inside a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupIndexEntry {
    pub key_group: u32,
    pub offset: u64,
    pub len: u64,
    pub crc32c: u32,
    /// Entries (keys, and deletions in a delta) in the group.
    pub entries: u64,
}
