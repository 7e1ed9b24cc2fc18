//! Operator state: what an operator hands a checkpoint and gets back on a restore, keyed
//! state partitioned by key group, and the stores operators keep it in. Knows nothing of
//! tasks, channels or files.
//!
//! Each operator owns the encoding of its state. A checkpoint stores two kinds of it without
//! knowing what is inside:
//! - keyed state ([`KeyedStateSnapshot`]): one run of bytes per key group, named by a
//!   [`StateFormat`] (its name and version). A restore reads the runs of the groups a new
//!   subtask owns, at any parallelism, and hands them to the operator in order (a full
//!   snapshot's, then each delta's) to decode;
//! - operator state ([`OperatorBlob`]): one versioned blob per subtask (a source's position,
//!   a transactional sink's pending commits), handed out on a restore at another parallelism
//!   as its [`Redistribution`] says.
//!
//! - `keygroup`: the stable key hash, key groups and their assignment to subtasks (Flink's).
//! - `keyed`: the keyed value store that aggregates keep their per-key values in.
//! - `snapshot`: the blob of key-group runs and the keyed store's run format.
//! - `window`: window contents and timers (panes, sessions, accumulators) by key group.

pub mod keyed;
pub mod keygroup;
pub mod snapshot;
pub mod window;

use keygroup::KeyGroupRange;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

pub use snapshot::GroupIndexEntry;

/// The encoding of a piece of state: which operator's format, which version of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateFormat {
    pub name: String,
    pub version: u32,
}

impl StateFormat {
    pub fn new(name: &str, version: u32) -> StateFormat {
        StateFormat {
            name: name.to_owned(),
            version,
        }
    }
}

impl fmt::Display for StateFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}", self.name, self.version)
    }
}

/// How operator state moves when a job is restored at another parallelism (Flink's
/// redistribution modes of operator state). At the same parallelism, each subtask gets its
/// own state back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Redistribution {
    /// Every new subtask gets the state of every old one and keeps what it owns now
    /// (sources: files, partitions, the lines done).
    Union,
    /// Old subtask `j`'s state goes to new subtask `j mod p` (transactional sinks: each
    /// pending commit is finished exactly once).
    RoundRobin,
}

/// An operator's own state of one subtask: bytes only the operator reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorBlob {
    pub format: StateFormat,
    pub redistribution: Redistribution,
    pub bytes: Vec<u8>,
}

/// A key-group indexed blob: the encoded runs and where each group is in it.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedBlob {
    pub bytes: Vec<u8>,
    pub groups: Vec<GroupIndexEntry>,
}

/// Where an encoder puts a blob's bytes as it makes them, a piece of whole groups at a
/// time, so that a checkpoint need not hold the whole blob: the checkpoint store writes each
/// piece to the state file. A failure is kept by the implementor, which ignores what follows
/// and reports it when the blob is done.
pub trait BlobOut {
    fn write(&mut self, bytes: &[u8]);

    /// An empty buffer of at least `capacity` bytes to make a piece in. The checkpoint
    /// store hands back buffers of pieces it has written: fresh ones fault in zeroed pages.
    fn buffer(&mut self, capacity: usize) -> Vec<u8> {
        Vec::with_capacity(capacity)
    }

    /// [`BlobOut::write`] of a whole piece, handed over rather than copied.
    fn write_piece(&mut self, piece: Vec<u8>) {
        self.write(&piece)
    }
}

/// What a delta of keyed state applies on.
pub use keyed::DeltaBase;

/// A frozen view of keyed state for the asynchronous part of a checkpoint: taken on the
/// task at the barrier (cheap, copy-on-write), encoded later off the data path.
///
/// A delta is only usable on top of its base: snapshot `n` of a store (its
/// [`KeyedStateSnapshot::sequence`]) holds what changed since snapshot `n - 1` of the same
/// store, snapshot 0 since the restore (or nothing).
pub trait KeyedStateSnapshot: fmt::Debug + Send + Sync {
    /// How the runs are encoded.
    fn format(&self) -> StateFormat;
    /// The key groups of the subtask it was taken at.
    fn range(&self) -> KeyGroupRange;
    fn sequence(&self) -> u64;
    fn delta_base(&self) -> DeltaBase;
    /// Every key group with state.
    fn encode_full(&self) -> EncodedBlob;
    /// The changes since [`KeyedStateSnapshot::delta_base`].
    fn encode_delta(&self) -> EncodedBlob;
    /// [`KeyedStateSnapshot::encode_full`] (`full`) or [`KeyedStateSnapshot::encode_delta`],
    /// handed to `out` a piece at a time; returns where each group is. By default the blob
    /// is encoded whole and then handed over.
    fn encode_into(&self, full: bool, out: &mut dyn BlobOut) -> Vec<GroupIndexEntry> {
        let blob = if full {
            self.encode_full()
        } else {
            self.encode_delta()
        };
        out.write(&blob.bytes);
        blob.groups
    }
    /// The concrete snapshot, for tools and tests that know the operator.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// What one operator subtask hands over when a barrier has aligned at it. The synchronous
/// part of the snapshot is done when this exists; encoding and writing happen elsewhere, off
/// the data path.
#[derive(Debug, Clone)]
pub enum OperatorSnapshot {
    Keyed(std::sync::Arc<dyn KeyedStateSnapshot>),
    /// Operator state, with the files and directories whose contents it relies on (a sink's
    /// pre-committed files): the writer fsyncs them before the subtask acks, so they are
    /// durable before `_metadata` exists. A path gone by then was committed meanwhile by
    /// the sink's own `finish`, which fsyncs what it commits.
    Blob {
        blob: OperatorBlob,
        durable: Vec<PathBuf>,
    },
}

impl OperatorSnapshot {
    /// The keyed store's snapshot (`key_by`'s state), if that is what this is.
    pub fn keyed_values(&self) -> Option<&keyed::KeyedSnapshot> {
        match self {
            OperatorSnapshot::Keyed(k) => k.as_any().downcast_ref(),
            OperatorSnapshot::Blob { .. } => None,
        }
    }

    /// Operator state without files to make durable.
    pub fn blob(blob: OperatorBlob) -> OperatorSnapshot {
        OperatorSnapshot::Blob {
            blob,
            durable: Vec::new(),
        }
    }
}

/// One old subtask's operator state, as a restore hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredBlob {
    /// The subtask that wrote it, and the parallelism it ran at.
    pub old_subtask: u32,
    pub old_parallelism: u32,
    pub blob: OperatorBlob,
}

/// Keyed state back from a checkpoint: for each key group of the new subtask, its runs in
/// the order to apply them (a full snapshot's, then each delta's; later ones win), each
/// checked against its checksum, with the format they were written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRuns {
    pub format: StateFormat,
    pub range: KeyGroupRange,
    pub max_parallelism: u32,
    pub runs: Vec<(u32, Vec<u8>)>,
}

/// Why an operator cannot take the state it was handed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the checkpoint holds state of format \"{found}\", which this operator (it reads \
     {wanted}) does not read: the operator id names another kind of operator, or a newer \
     floe wrote it; give the operator another `id` or restore without its state"
)]
pub struct FormatMismatch {
    pub found: StateFormat,
    pub wanted: String,
}

impl StateFormat {
    /// `Ok` when this is format `name` of a version up to `newest`.
    pub fn check(&self, name: &str, newest: u32) -> Result<(), FormatMismatch> {
        if self.name == name && (1..=newest).contains(&self.version) {
            Ok(())
        } else {
            Err(FormatMismatch {
                found: self.clone(),
                wanted: format!("\"{name}\" v1..={newest}"),
            })
        }
    }
}
