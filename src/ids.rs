//! The ids and messages every layer shares: the runtime sends them, the checkpoint layer stores
//! them, operators receive them. A leaf: it imports nothing of floe.

use std::fmt;

/// A checkpoint's number, as in `chk-<n>`: increasing within a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointId(pub u64);

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the driver tells every subtask about a checkpoint it triggered, once decided. A
/// subtask that has ended no longer hears it (its channel is closed): best effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// `_metadata` is durable: the checkpoint exists.
    Completed(CheckpointId),
    /// Expired, failed or abandoned: it will never complete.
    Aborted(CheckpointId),
}
