//! What a transactional sink keeps in a checkpoint, and its bytes there.
//!
//! Formats (postcard of the structs below): `file-sink` v1 ([`FileSinkState`]), `kafka-sink`
//! v1 ([`KafkaSinkState`]). Sink state is operator state of the round-robin kind: on a restore
//! at another parallelism old subtask `j`'s state goes to new subtask `j mod p`, so each
//! pre-committed file or transaction is finished exactly once.

use crate::state::{OperatorBlob, OperatorSnapshot, Redistribution, RestoredBlob, StateFormat};

/// What a transactional sink subtask keeps in a checkpoint: what it pre-committed at the
/// barrier and has not yet committed. Small: it goes inline into `_metadata`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SinkState {
    /// The exactly-once `file` sink (`operators::sinks::file`).
    Files(FileSinkState),
    /// The exactly-once `kafka` sink (`operators::sinks::kafka`).
    Kafka(KafkaSinkState),
}

/// The `kafka` sink's transactions of one subtask at a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KafkaSinkState {
    /// The subtask that wrote them.
    pub subtask: u32,
    /// The transactional ids this subtask used are `<prefix>-<subtask>-<slot>` for every
    /// `slot < slots`: a restore aborts whatever is still open under them.
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
}

/// One pre-committed part file: `.part-<subtask>-<part>.pending` until the checkpoint that
/// holds it completes, `part-<subtask>-<part>` after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingPart {
    /// The checkpoint whose barrier finished it: its completion commits it.
    pub checkpoint_id: u64,
    pub part: u64,
}

pub const FILE_SINK_FORMAT: &str = "file-sink";
pub const KAFKA_SINK_FORMAT: &str = "kafka-sink";

impl SinkState {
    /// The state as its sink's blob.
    pub fn to_blob(&self) -> OperatorBlob {
        // postcard into a Vec cannot fail for these types: a failure would be a bug here.
        let (name, bytes) = match self {
            SinkState::Files(f) => (FILE_SINK_FORMAT, postcard::to_stdvec(f)),
            SinkState::Kafka(k) => (KAFKA_SINK_FORMAT, postcard::to_stdvec(k)),
        };
        OperatorBlob {
            format: StateFormat::new(name, 1),
            redistribution: Redistribution::RoundRobin,
            bytes: bytes.expect("bug: sink states serialize"),
        }
    }

    /// The state back from a blob, or why it is not a sink's.
    pub fn from_blob(blob: &OperatorBlob) -> Result<SinkState, String> {
        let f = &blob.format;
        let corrupt = |e: postcard::Error| format!("its state ({f}) does not decode: {e}");
        match (f.name.as_str(), f.version) {
            (FILE_SINK_FORMAT, 1) => Ok(SinkState::Files(
                postcard::from_bytes(&blob.bytes).map_err(corrupt)?,
            )),
            (KAFKA_SINK_FORMAT, 1) => Ok(SinkState::Kafka(
                postcard::from_bytes(&blob.bytes).map_err(corrupt)?,
            )),
            _ => Err(format!(
                "the checkpoint holds state of format {f} under its id, not a sink's"
            )),
        }
    }

    /// The snapshot of a sink at a barrier: this state, with the files it relies on.
    pub fn into_snapshot(self, durable: Vec<std::path::PathBuf>) -> OperatorSnapshot {
        OperatorSnapshot::Blob {
            blob: self.to_blob(),
            durable,
        }
    }

    /// As a restore hands it to the subtask that wrote it (for tests and tools).
    pub fn restored(&self, subtask: u32, parallelism: u32) -> RestoredBlob {
        RestoredBlob {
            old_subtask: subtask,
            old_parallelism: parallelism,
            blob: self.to_blob(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_others_are_refused() {
        let f = SinkState::Files(FileSinkState {
            subtask: 1,
            next_part: 4,
            pending: vec![PendingPart {
                checkpoint_id: 3,
                part: 2,
            }],
        });
        assert_eq!(SinkState::from_blob(&f.to_blob()), Ok(f.clone()));
        assert_eq!(f.to_blob().redistribution, Redistribution::RoundRobin);
        let mut b = f.to_blob();
        b.format = StateFormat::new("datagen", 1);
        assert!(SinkState::from_blob(&b)
            .unwrap_err()
            .contains("not a sink's"));
    }
}
