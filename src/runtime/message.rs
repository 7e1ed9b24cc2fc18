//! What travels on a channel between two subtasks: batches, checkpoint barriers, watermarks
//! and the end of the stream. Only the runtime sees these; operators see batches and
//! watermarks.

use crate::record::Batch;

pub use crate::ids::CheckpointId;

/// What a barrier asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarrierKind {
    Checkpoint,
    /// Savepoints are always aligned, whatever the checkpointing mode.
    Savepoint,
}

/// Flink's `CheckpointBarrier`: every record before it belongs to checkpoint `checkpoint_id`,
/// every record after it to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    pub checkpoint_id: CheckpointId,
    /// When the checkpoint was triggered, milliseconds since the Unix epoch.
    pub timestamp: u64,
    pub kind: BarrierKind,
}

/// One message on a channel.
#[derive(Debug)]
pub enum Message {
    Data(Batch),
    Barrier(Barrier),
    /// Event time at the sender reached this (ms since the epoch): no record at or before it
    /// follows on this channel (late ones excepted, which windows deal with).
    Watermark(i64),
    /// The sender is idle: its watermark does not hold the receiver back until it sends
    /// records or a watermark again.
    Idle,
    /// The sending subtask has finished: nothing more comes on this channel.
    End,
}
