//! What a transactional sink keeps in a checkpoint, and its bytes there.
//!
//! Formats (postcard of the structs below):
//! - `file-sink` v1: [`FileSinkStateBeforeRolling`] (a part per checkpoint, none in progress
//!   at a barrier); v2: [`FileSinkState`], with the part the rolling policy kept open.
//! - `kafka-sink` v1: [`KafkaSinkState`], before transactional-id pools (a restore cannot know
//!   how many ids the run after the checkpoint used, so it looks beyond `slots`); v2:
//!   [`KafkaPooledState`], ids from a fixed pool per subtask.
//!
//! A sink writes the newest version of its format and reads every older one. Sink state is
//! operator state of the round-robin kind: on a restore at another parallelism old subtask
//! `j`'s state goes to new subtask `j mod p`, so each pre-committed file or transaction is
//! finished exactly once.

use crate::state::{OperatorBlob, OperatorSnapshot, Redistribution, RestoredBlob, StateFormat};

/// What a transactional sink subtask keeps in a checkpoint: what it pre-committed at the
/// barrier and has not yet committed. Small: it goes inline into `_metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkState {
    /// The exactly-once `file` sink (`operators::sinks::file`); `file-sink` v1 states read
    /// as this with no part in progress.
    Files(FileSinkState),
    /// The exactly-once `kafka` sink as it was before id pools (`kafka-sink` v1): read from
    /// older checkpoints, never written by the sink.
    Kafka(KafkaSinkState),
    /// The exactly-once `kafka` sink whose subtasks take their transactional ids from a
    /// fixed pool, slots `0..id_pool` (Flink's `FlinkKafkaProducer` pool): a restore aborts
    /// what is open under `<prefix>-<subtask>-<slot>` for every slot below
    /// `max(slots, id_pool)` and looks no further, so restarts do not add ids.
    KafkaPooled { state: KafkaSinkState, id_pool: u32 },
}

impl SinkState {
    /// The `kafka` sink's state and its id pool (`None`: written before pools).
    pub fn kafka(&self) -> Option<(&KafkaSinkState, Option<u32>)> {
        match self {
            SinkState::Kafka(k) => Some((k, None)),
            SinkState::KafkaPooled { state, id_pool } => Some((state, Some(*id_pool))),
            SinkState::Files(_) => None,
        }
    }
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

/// `kafka-sink` v2: [`SinkState::KafkaPooled`]'s bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KafkaPooledState {
    pub state: KafkaSinkState,
    pub id_pool: u32,
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

/// The `file` sink's part files of one subtask at a checkpoint (`file-sink` v2).
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

/// [`FileSinkState`] without [`FileSinkState::in_progress`]: `file-sink` v1, as floe wrote it
/// before part files rolled by size and time. Read, never written by the sink.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileSinkStateBeforeRolling {
    pub subtask: u32,
    pub next_part: u64,
    pub pending: Vec<PendingPart>,
}

impl FileSinkStateBeforeRolling {
    /// Its `file-sink` v1 blob, as older floe wrote it (for conversions and tests).
    pub fn to_blob(&self) -> OperatorBlob {
        blob(FILE_SINK_FORMAT, 1, postcard::to_stdvec(self))
    }
}

impl From<FileSinkStateBeforeRolling> for FileSinkState {
    fn from(f: FileSinkStateBeforeRolling) -> Self {
        FileSinkState {
            subtask: f.subtask,
            next_part: f.next_part,
            pending: f.pending,
            in_progress: None,
        }
    }
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

pub const FILE_SINK_FORMAT: &str = "file-sink";
pub const KAFKA_SINK_FORMAT: &str = "kafka-sink";
/// The newest `file-sink` version, the one the sink writes.
pub const FILE_SINK_VERSION: u32 = 2;
/// The newest `kafka-sink` version, the one the sink writes.
pub const KAFKA_SINK_VERSION: u32 = 2;

fn blob(name: &str, version: u32, bytes: postcard::Result<Vec<u8>>) -> OperatorBlob {
    OperatorBlob {
        format: StateFormat::new(name, version),
        redistribution: Redistribution::RoundRobin,
        // postcard into a Vec cannot fail for these types: a failure would be a bug here.
        bytes: bytes.expect("bug: sink states serialize"),
    }
}

impl SinkState {
    /// The state as its sink's blob.
    pub fn to_blob(&self) -> OperatorBlob {
        match self {
            SinkState::Files(f) => {
                blob(FILE_SINK_FORMAT, FILE_SINK_VERSION, postcard::to_stdvec(f))
            }
            SinkState::Kafka(k) => blob(KAFKA_SINK_FORMAT, 1, postcard::to_stdvec(k)),
            SinkState::KafkaPooled { state, id_pool } => blob(
                KAFKA_SINK_FORMAT,
                KAFKA_SINK_VERSION,
                postcard::to_stdvec(&KafkaPooledState {
                    state: state.clone(),
                    id_pool: *id_pool,
                }),
            ),
        }
    }

    /// The state back from a blob of any version its sink ever wrote, or why it is not a
    /// sink's.
    pub fn from_blob(blob: &OperatorBlob) -> Result<SinkState, String> {
        let f = &blob.format;
        let corrupt = |e: postcard::Error| format!("its state ({f}) does not decode: {e}");
        let b = &blob.bytes[..];
        match (f.name.as_str(), f.version) {
            (FILE_SINK_FORMAT, 1) => Ok(SinkState::Files(
                postcard::from_bytes::<FileSinkStateBeforeRolling>(b)
                    .map_err(corrupt)?
                    .into(),
            )),
            (FILE_SINK_FORMAT, 2) => {
                Ok(SinkState::Files(postcard::from_bytes(b).map_err(corrupt)?))
            }
            (KAFKA_SINK_FORMAT, 1) => {
                Ok(SinkState::Kafka(postcard::from_bytes(b).map_err(corrupt)?))
            }
            (KAFKA_SINK_FORMAT, 2) => {
                let p: KafkaPooledState = postcard::from_bytes(b).map_err(corrupt)?;
                Ok(SinkState::KafkaPooled {
                    state: p.state,
                    id_pool: p.id_pool,
                })
            }
            (FILE_SINK_FORMAT | KAFKA_SINK_FORMAT, _) => Err(format!(
                "the checkpoint holds sink state of format {f}, which this floe does not read \
                 (it reads {FILE_SINK_FORMAT} v1..={FILE_SINK_VERSION}, {KAFKA_SINK_FORMAT} \
                 v1..={KAFKA_SINK_VERSION}); a newer floe wrote it"
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

    fn kafka() -> KafkaSinkState {
        KafkaSinkState {
            subtask: 2,
            prefix: "floe-k".into(),
            slots: 3,
            pending: vec![KafkaPendingTxn {
                checkpoint_id: 5,
                transactional_id: "floe-k-2-1".into(),
                producer_id: 9,
                producer_epoch: 1,
            }],
        }
    }

    #[test]
    fn states_round_trip_and_others_are_refused() {
        let f = SinkState::Files(FileSinkState {
            subtask: 1,
            next_part: 4,
            pending: vec![PendingPart {
                checkpoint_id: 3,
                part: 2,
            }],
            in_progress: Some(InProgressPart {
                part: 4,
                length: 12,
            }),
        });
        let pooled = SinkState::KafkaPooled {
            state: kafka(),
            id_pool: 8,
        };
        for s in [f.clone(), pooled.clone(), SinkState::Kafka(kafka())] {
            assert_eq!(SinkState::from_blob(&s.to_blob()), Ok(s.clone()));
            assert_eq!(s.to_blob().redistribution, Redistribution::RoundRobin);
        }
        assert_eq!(f.to_blob().format, StateFormat::new("file-sink", 2));
        assert_eq!(pooled.to_blob().format, StateFormat::new("kafka-sink", 2));
        let mut b = f.to_blob();
        b.format = StateFormat::new("datagen", 1);
        assert!(SinkState::from_blob(&b)
            .unwrap_err()
            .contains("not a sink's"));
        b.format = StateFormat::new("file-sink", 3);
        let e = SinkState::from_blob(&b).unwrap_err();
        assert!(
            e.contains("does not read") && e.contains("file-sink v3"),
            "{e}"
        );
    }

    /// `file-sink` v1, as floe wrote it before rolling, reads as a state with no part in
    /// progress.
    #[test]
    fn the_file_sinks_state_before_rolling_still_reads() {
        let old = FileSinkStateBeforeRolling {
            subtask: 1,
            next_part: 4,
            pending: vec![PendingPart {
                checkpoint_id: 3,
                part: 2,
            }],
        };
        let blob = old.to_blob();
        assert_eq!(blob.format, StateFormat::new("file-sink", 1));
        assert_eq!(
            SinkState::from_blob(&blob),
            Ok(SinkState::Files(FileSinkState {
                subtask: 1,
                next_part: 4,
                pending: old.pending.clone(),
                in_progress: None,
            }))
        );
    }
}
