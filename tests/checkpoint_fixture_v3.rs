//! `_metadata` format version 3, pinned by a checked-in checkpoint. Version 3 differs from
//! version 2 (pinned in full by `checkpoint_fixture_v2.rs`) only in the sink states: the
//! rolling `file` sink's state, with the part in progress at the barrier, is a new
//! `SinkState` variant, version 2's `file` sink state keeps its index under the name
//! `FilesBeforeRolling`, and the Kafka sink's pooled ids (`KafkaPooled`) came last. This
//! fixture holds a file sink subtask with a part in progress and one without and a Kafka
//! sink; [`v3_kafka_pooled_decodes`] pins `KafkaPooled`. Moving a variant or a field makes
//! these tests fail instead of silently misreading checkpoints.
//!
//! floe writes version 4 now (`checkpoint_fixture_v4.rs`): a version 3 file is decoded
//! through frozen types and each sink state becomes its sink's own blob (`file-sink` v2 for
//! the rolling file sink, `kafka-sink` v1 for the Kafka sink before pools, v2 with them).
//!
//! The fixture is `tests/fixtures/checkpoint/v3/<job>/chk-4/_metadata`, written by
//! [`v3_format`], this file's own description of version 3 (mirror types serialized with
//! postcard, framed as the format says), not by floe's encoder. `UPDATE_FIXTURES=v3 cargo
//! test --test checkpoint_fixture_v3 -- --test-threads=1` rewrites it (only for a change made
//! on purpose and reviewed in the diff).

use floe::checkpoint::metadata::{
    decode, CheckpointMetadata, OperatorStateMeta, SnapshotKind, SubtaskStateMeta, METADATA_MAGIC,
};
use floe::checkpoint::restore::{load_state, map_checkpoint, TargetOperator};
use floe::checkpoint::storage::load;
use floe::checkpoint::JobId;
use floe::operators::sinks::state::{
    FileSinkState, InProgressPart, KafkaPendingTxn, KafkaSinkState, PendingPart, SinkState,
};
use floe::operators::RestoredState;
use floe::pipeline::OperatorId;
use floe::state::RestoredBlob;
use std::path::{Path, PathBuf};

const JOB: &str = "fedcba9876543210fedcba9876543210";
const MAX_P: u32 = 128;

fn chk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/checkpoint/v3")
        .join(JOB)
        .join("chk-4")
}

fn sink_op(id: &str, states: Vec<SinkState>) -> OperatorStateMeta {
    OperatorStateMeta {
        operator_id: id.into(),
        parallelism: states.len() as u32,
        max_parallelism: MAX_P,
        subtasks: states
            .into_iter()
            .enumerate()
            .map(|(i, s)| SubtaskStateMeta {
                subtask: i as u32,
                key_groups: None,
                keyed: None,
                keyed_format: None,
                operator: Some(s.to_blob()),
            })
            .collect(),
    }
}

/// Everything the fixture's `_metadata` holds, in floe's types: each sink state as its
/// sink's own blob.
fn expected() -> CheckpointMetadata {
    let part = |checkpoint_id, part| PendingPart {
        checkpoint_id,
        part,
    };
    let files = vec![
        SinkState::Files(FileSinkState {
            subtask: 0,
            next_part: 7,
            pending: vec![part(3, 5)],
            in_progress: Some(InProgressPart {
                part: 6,
                length: 4096,
            }),
        }),
        SinkState::Files(FileSinkState {
            subtask: 1,
            next_part: 2,
            pending: vec![],
            in_progress: None,
        }),
    ];
    let kafka = vec![SinkState::Kafka(KafkaSinkState {
        subtask: 0,
        prefix: "floe-kout".into(),
        slots: 2,
        pending: vec![KafkaPendingTxn {
            checkpoint_id: 4,
            transactional_id: "floe-kout-0-0".into(),
            producer_id: 17,
            producer_epoch: 2,
        }],
    })];
    CheckpointMetadata {
        checkpoint_id: 4,
        job_id: JobId(JOB.into()),
        job_name: "rolling".into(),
        kind: SnapshotKind::Checkpoint,
        trigger_timestamp_ms: 1_770_000_000_000,
        completion_timestamp_ms: 1_770_000_000_042,
        operators: vec![sink_op("out", files), sink_op("kout", kafka)],
    }
}

/// Format version 3 as this test knows it, independent of floe's types (see
/// `checkpoint_fixture_v2.rs` for the parts version 3 shares with version 2; here the
/// subtask's keyed state and source position are always absent).
mod v3_format {
    use serde::Serialize;

    #[derive(Serialize)]
    pub struct Metadata {
        pub checkpoint_id: u64,
        pub job_id: String,
        pub job_name: String,
        /// `Checkpoint` is variant 0.
        pub kind: u8,
        pub trigger_timestamp_ms: u64,
        pub completion_timestamp_ms: u64,
        pub operators: Vec<Operator>,
    }

    #[derive(Serialize)]
    pub struct Operator {
        pub operator_id: String,
        pub parallelism: u32,
        pub max_parallelism: u32,
        pub subtasks: Vec<Subtask>,
    }

    #[derive(Serialize)]
    pub struct Subtask {
        pub subtask: u32,
        pub key_groups: Option<(u32, u32)>,
        pub keyed: Option<()>,
        pub source: Option<()>,
        pub sink: Option<Sink>,
    }

    #[derive(Serialize)]
    pub enum Sink {
        /// Version 2's `file` sink state (read, no longer written).
        #[allow(dead_code)]
        FilesBeforeRolling {
            subtask: u32,
            next_part: u64,
            pending: Vec<(u64, u64)>,
        },
        Kafka {
            subtask: u32,
            prefix: String,
            slots: u32,
            pending: Vec<(u64, String, i64, i16)>,
        },
        Files {
            subtask: u32,
            next_part: u64,
            pending: Vec<(u64, u64)>,
            in_progress: Option<(u64, u64)>,
        },
        /// The `kafka` sink with its pool of transactional ids (added last).
        KafkaPooled {
            subtask: u32,
            prefix: String,
            slots: u32,
            pending: Vec<(u64, String, i64, i16)>,
            id_pool: u32,
        },
    }

    pub fn frame(m: &Metadata) -> Vec<u8> {
        let payload = postcard::to_stdvec(m).unwrap();
        let mut out = b"FLOE".to_vec();
        out.extend_from_slice(&3u32.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        out.extend_from_slice(&payload);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }
}

/// The fixture's bytes in [`v3_format`]'s terms: the same content as [`expected`], spelled
/// out again by hand.
fn v3_bytes() -> Vec<u8> {
    use v3_format::*;
    let op = |id: &str, sinks: Vec<Sink>| Operator {
        operator_id: id.into(),
        parallelism: sinks.len() as u32,
        max_parallelism: MAX_P,
        subtasks: sinks
            .into_iter()
            .enumerate()
            .map(|(i, s)| Subtask {
                subtask: i as u32,
                key_groups: None,
                keyed: None,
                source: None,
                sink: Some(s),
            })
            .collect(),
    };
    let files = vec![
        Sink::Files {
            subtask: 0,
            next_part: 7,
            pending: vec![(3, 5)],
            in_progress: Some((6, 4096)),
        },
        Sink::Files {
            subtask: 1,
            next_part: 2,
            pending: vec![],
            in_progress: None,
        },
    ];
    let kafka = vec![Sink::Kafka {
        subtask: 0,
        prefix: "floe-kout".into(),
        slots: 2,
        pending: vec![(4, "floe-kout-0-0".into(), 17, 2)],
    }];
    frame(&Metadata {
        checkpoint_id: 4,
        job_id: JOB.into(),
        job_name: "rolling".into(),
        kind: 0,
        trigger_timestamp_ms: 1_770_000_000_000,
        completion_timestamp_ms: 1_770_000_000_042,
        operators: vec![op("out", files), op("kout", kafka)],
    })
}

/// With `UPDATE_FIXTURES=v3`, writes the fixture; always checks that the checked-in file is
/// exactly what the generator writes.
#[test]
fn v3_fixture_is_what_its_generator_writes() {
    let path = chk_dir().join("_metadata");
    let update = std::env::var("UPDATE_FIXTURES").is_ok_and(|v| v.split(',').any(|v| v == "v3"));
    if update {
        std::fs::create_dir_all(chk_dir()).unwrap();
        std::fs::write(&path, v3_bytes()).unwrap();
    }
    let on_disk = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; UPDATE_FIXTURES=v3 writes it", path.display()));
    assert!(
        on_disk == v3_bytes(),
        "{} is not what the v3 generator writes",
        path.display()
    );
}

#[test]
fn v3_fixture_decodes_field_by_field() {
    let file = chk_dir().join("_metadata");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..4], &METADATA_MAGIC);
    assert_eq!(&bytes[4..8], &3u32.to_be_bytes(), "format version 3");
    let m = decode(&bytes, &file).unwrap();
    let want = expected();
    for (got, want) in m.operators.iter().zip(&want.operators) {
        assert_eq!(got, want, "operator {}", want.operator_id);
    }
    assert_eq!(m, want);
}

/// `KafkaPooled`, the last variant version 3 added (the `kafka` sink main wrote since
/// transactional-id pools), decodes to the Kafka sink's `kafka-sink` v2 blob. Framed in
/// memory from [`v3_format`]'s description, independent of floe's types.
#[test]
fn v3_kafka_pooled_decodes() {
    use v3_format::*;
    let bytes = frame(&Metadata {
        checkpoint_id: 5,
        job_id: JOB.into(),
        job_name: "pooled".into(),
        kind: 0,
        trigger_timestamp_ms: 1_770_000_000_000,
        completion_timestamp_ms: 1_770_000_000_042,
        operators: vec![Operator {
            operator_id: "kout".into(),
            parallelism: 1,
            max_parallelism: MAX_P,
            subtasks: vec![Subtask {
                subtask: 0,
                key_groups: None,
                keyed: None,
                source: None,
                sink: Some(Sink::KafkaPooled {
                    subtask: 0,
                    prefix: "floe-kout".into(),
                    slots: 3,
                    pending: vec![(5, "floe-kout-0-2".into(), 18, 0)],
                    id_pool: 8,
                }),
            }],
        }],
    });
    let m = decode(&bytes, Path::new("pooled/_metadata")).unwrap();
    let blob = m.operators[0].subtasks[0].operator.as_ref().unwrap();
    assert_eq!(
        (blob.format.name.as_str(), blob.format.version),
        ("kafka-sink", 2)
    );
    let want = SinkState::KafkaPooled {
        state: KafkaSinkState {
            subtask: 0,
            prefix: "floe-kout".into(),
            slots: 3,
            pending: vec![KafkaPendingTxn {
                checkpoint_id: 5,
                transactional_id: "floe-kout-0-2".into(),
                producer_id: 18,
                producer_epoch: 0,
            }],
        },
        id_pool: 8,
    };
    assert_eq!(SinkState::from_blob(blob), Ok(want));
}

#[test]
fn v3_fixture_restores_every_sink_state() {
    let loaded = load(chk_dir()).unwrap();
    let targets: Vec<TargetOperator> = loaded
        .metadata
        .operators
        .iter()
        .map(|o| TargetOperator {
            id: o.operator_id.clone(),
            parallelism: o.parallelism,
            max_parallelism: MAX_P,
            max_parallelism_explicit: true,
        })
        .collect();
    let mapping = map_checkpoint(&loaded.metadata, "fixture", &targets, false).unwrap();
    let state = load_state(&loaded, &mapping, MAX_P).unwrap();
    for op in &expected().operators {
        for st in &op.subtasks {
            let key = (OperatorId(op.operator_id.clone()), st.subtask);
            let Some(RestoredState::Blobs(blobs)) = state.operators.get(&key) else {
                panic!("no sink state for {key:?}");
            };
            let own = RestoredBlob {
                old_subtask: st.subtask,
                old_parallelism: op.parallelism,
                blob: st.operator.clone().unwrap(),
            };
            assert_eq!(blobs, &vec![own], "{key:?}");
        }
    }
}
