//! `_metadata` format versions 1, 2 and 3, frozen: the payload types as those versions wrote
//! them (postcard is positional, so they must never change), and their conversion to the
//! current types.
//!
//! Those versions listed the state types of the operators of their time here: a source's
//! position and a transactional sink's state as enums of the checkpoint format. Reading them
//! turns each into the owning operator's own encoding (`datagen`, `file-source`,
//! `kafka-source`, `file-sink`, `kafka-sink`), and their keyed state into the keyed store's
//! runs (`keyed-values` v1): the only keyed operator then was `key_by`.
//!
//! Version 3 has version 2's layout; only its sink state enum grew: the rolling `file` sink's
//! state (with the part in progress at the barrier) and the Kafka sink's pooled ids, both
//! added after version 2's variants, whose indices version 3 kept. So one set of types reads
//! both (a version 2 file holds only the first two variants).

use super::{
    CheckpointMetadata, KeyedStateHandle, OperatorStateMeta, SnapshotKind, SubtaskStateMeta,
};
use crate::checkpoint::JobId;
use crate::operators::sinks::state as sink;
use crate::operators::sources::position as source;
use crate::state::snapshot::keyed_values_v1;
use serde::Deserialize;

/// A source's position as versions 1 and 2 wrote it.
#[derive(Deserialize)]
enum SourcePosition {
    Datagen {
        next_line: u64,
    },
    Files(Vec<(String, u64)>),
    DatagenRescaled {
        next_line: u64,
        old_parallelism: u32,
        old_next_lines: Vec<u64>,
    },
    Kafka(Vec<KafkaOffset>),
}

#[derive(Deserialize)]
struct KafkaOffset {
    topic: String,
    partition: i32,
    offset: i64,
}

/// A transactional sink's state as versions 2 and 3 wrote it (version 2: the first two
/// variants only).
#[derive(Deserialize)]
enum SinkState {
    /// The `file` sink before rolling (version 2's `Files`, version 3's
    /// `FilesBeforeRolling`).
    FilesBeforeRolling(FileSinkStateBeforeRolling),
    Kafka(KafkaSinkState),
    /// Version 3: the rolling `file` sink.
    Files(FileSinkState),
    /// Version 3: the `kafka` sink with a pool of transactional ids.
    KafkaPooled {
        state: KafkaSinkState,
        id_pool: u32,
    },
}

#[derive(Deserialize)]
struct FileSinkStateBeforeRolling {
    subtask: u32,
    next_part: u64,
    pending: Vec<PendingPart>,
}

#[derive(Deserialize)]
struct FileSinkState {
    subtask: u32,
    next_part: u64,
    pending: Vec<PendingPart>,
    in_progress: Option<InProgressPart>,
}

#[derive(Deserialize)]
struct InProgressPart {
    part: u64,
    length: u64,
}

#[derive(Deserialize)]
struct PendingPart {
    checkpoint_id: u64,
    part: u64,
}

#[derive(Deserialize)]
struct KafkaSinkState {
    subtask: u32,
    prefix: String,
    slots: u32,
    pending: Vec<KafkaPendingTxn>,
}

#[derive(Deserialize)]
struct KafkaPendingTxn {
    checkpoint_id: u64,
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
}

impl From<SourcePosition> for source::SourcePosition {
    fn from(p: SourcePosition) -> Self {
        match p {
            SourcePosition::Datagen { next_line } => source::SourcePosition::Datagen { next_line },
            SourcePosition::Files(files) => source::SourcePosition::Files(files),
            SourcePosition::DatagenRescaled {
                next_line,
                old_parallelism,
                old_next_lines,
            } => source::SourcePosition::DatagenRescaled {
                next_line,
                old_parallelism,
                old_next_lines,
            },
            SourcePosition::Kafka(offsets) => source::SourcePosition::Kafka(
                offsets
                    .into_iter()
                    .map(|o| source::KafkaOffset {
                        topic: o.topic,
                        partition: o.partition,
                        offset: o.offset,
                    })
                    .collect(),
            ),
        }
    }
}

impl From<PendingPart> for sink::PendingPart {
    fn from(p: PendingPart) -> Self {
        sink::PendingPart {
            checkpoint_id: p.checkpoint_id,
            part: p.part,
        }
    }
}

impl From<KafkaSinkState> for sink::KafkaSinkState {
    fn from(k: KafkaSinkState) -> Self {
        sink::KafkaSinkState {
            subtask: k.subtask,
            prefix: k.prefix,
            slots: k.slots,
            pending: k
                .pending
                .into_iter()
                .map(|p| sink::KafkaPendingTxn {
                    checkpoint_id: p.checkpoint_id,
                    transactional_id: p.transactional_id,
                    producer_id: p.producer_id,
                    producer_epoch: p.producer_epoch,
                })
                .collect(),
        }
    }
}

impl SinkState {
    /// The state as its sink's own blob: each form in the `file-sink` or `kafka-sink`
    /// version that holds it.
    fn into_blob(self) -> crate::state::OperatorBlob {
        let pending = |p: Vec<PendingPart>| p.into_iter().map(Into::into).collect();
        match self {
            SinkState::FilesBeforeRolling(f) => sink::FileSinkStateBeforeRolling {
                subtask: f.subtask,
                next_part: f.next_part,
                pending: pending(f.pending),
            }
            .to_blob(),
            SinkState::Kafka(k) => sink::SinkState::Kafka(k.into()).to_blob(),
            SinkState::Files(f) => sink::SinkState::Files(sink::FileSinkState {
                subtask: f.subtask,
                next_part: f.next_part,
                pending: pending(f.pending),
                in_progress: f.in_progress.map(|p| sink::InProgressPart {
                    part: p.part,
                    length: p.length,
                }),
            })
            .to_blob(),
            SinkState::KafkaPooled { state, id_pool } => sink::SinkState::KafkaPooled {
                state: state.into(),
                id_pool,
            }
            .to_blob(),
        }
    }
}

/// A version 1, 2 or 3 payload: the same header fields, the subtasks of its version.
#[derive(Deserialize)]
pub(super) struct Payload<S> {
    checkpoint_id: u64,
    job_id: JobId,
    job_name: String,
    kind: SnapshotKind,
    trigger_timestamp_ms: u64,
    completion_timestamp_ms: u64,
    operators: Vec<Operator<S>>,
}

#[derive(Deserialize)]
struct Operator<S> {
    operator_id: String,
    parallelism: u32,
    max_parallelism: u32,
    subtasks: Vec<S>,
}

/// A subtask as version 1 wrote it (no sink state).
#[derive(Deserialize)]
pub(super) struct SubtaskV1 {
    subtask: u32,
    key_groups: Option<(u32, u32)>,
    keyed: Option<KeyedStateHandle>,
    source: Option<SourcePosition>,
}

/// A subtask as versions 2 and 3 wrote it.
#[derive(Deserialize)]
pub(super) struct SubtaskV2 {
    subtask: u32,
    key_groups: Option<(u32, u32)>,
    keyed: Option<KeyedStateHandle>,
    source: Option<SourcePosition>,
    sink: Option<SinkState>,
}

pub(super) type V1 = Payload<SubtaskV1>;
pub(super) type V2 = Payload<SubtaskV2>;
/// Version 3: version 2's layout, with the sink state variants version 3 added.
pub(super) type V3 = Payload<SubtaskV2>;

impl From<SubtaskV1> for SubtaskV2 {
    fn from(s: SubtaskV1) -> Self {
        SubtaskV2 {
            subtask: s.subtask,
            key_groups: s.key_groups,
            keyed: s.keyed,
            source: s.source,
            sink: None,
        }
    }
}

impl From<SubtaskV2> for SubtaskStateMeta {
    fn from(s: SubtaskV2) -> Self {
        let source = s.source.map(|p| source::SourcePosition::from(p).to_blob());
        let sink = s.sink.map(SinkState::into_blob);
        SubtaskStateMeta {
            subtask: s.subtask,
            key_groups: s.key_groups,
            keyed_format: s.keyed.as_ref().map(|_| keyed_values_v1()),
            keyed: s.keyed,
            // A subtask held a position or a sink state, never both (a source is not a sink).
            operator: source.or(sink),
        }
    }
}

impl<S: Into<SubtaskV2>> From<Payload<S>> for CheckpointMetadata {
    fn from(m: Payload<S>) -> Self {
        CheckpointMetadata {
            checkpoint_id: m.checkpoint_id,
            job_id: m.job_id,
            job_name: m.job_name,
            kind: m.kind,
            trigger_timestamp_ms: m.trigger_timestamp_ms,
            completion_timestamp_ms: m.completion_timestamp_ms,
            operators: m
                .operators
                .into_iter()
                .map(|o| OperatorStateMeta {
                    operator_id: o.operator_id,
                    parallelism: o.parallelism,
                    max_parallelism: o.max_parallelism,
                    subtasks: o
                        .subtasks
                        .into_iter()
                        .map(|s| SubtaskStateMeta::from(s.into()))
                        .collect(),
                })
                .collect(),
        }
    }
}
