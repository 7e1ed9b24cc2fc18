//! `_metadata` format version 2, pinned by a checked-in checkpoint: every `SourcePosition`
//! variant (datagen, file, rescaled datagen, Kafka), every `SinkState` variant (file, Kafka),
//! keyed state as a full blob in an exclusive file and as an incremental chain (a full blob in
//! `shared/`, a delta with a deletion inline), so reordering a variant, a field or a type of
//! any of them makes these tests fail instead of silently misreading old checkpoints.
//!
//! The fixture is `tests/fixtures/checkpoint/v2/<job>/chk-9/` with its `shared/` directory.
//! Its `_metadata` is written by [`v2_format`], this file's own description of version 2
//! (mirror types serialized with postcard, framed as the format says), not by floe's encoder:
//! the checked-in bytes are what the tests read. `UPDATE_FIXTURES=v2 cargo test --test
//! checkpoint_fixture_v2 -- --test-threads=1` rewrites them (only for a change made on
//! purpose and reviewed in the diff; a new format version gets a `v3/` of its own, so v2 keeps
//! being read). The keyed state blobs are written the same way, by [`write_blob`], and read
//! back through floe's restore.

use floe::checkpoint::metadata::{
    decode, encode, BlobLocation, CheckpointMetadata, GroupIndexEntry, KeyedStateHandle,
    OperatorStateMeta, SnapshotKind, StateBlob, SubtaskStateMeta, METADATA_MAGIC,
};
use floe::checkpoint::restore::{check_files, load_state, map_checkpoint, TargetOperator};
use floe::checkpoint::storage::load;
use floe::checkpoint::JobId;
use floe::operators::sinks::state::{
    FileSinkStateBeforeRolling, KafkaPendingTxn, KafkaSinkState, PendingPart, SinkState,
};
use floe::operators::sources::{KafkaOffset, SourcePosition};
use floe::operators::RestoredState;
use floe::pipeline::OperatorId;
use floe::state::keygroup::{hash_str, KeyGroupRange};
use floe::state::snapshot::{keyed_values_v1, restore_keyed_values};
use floe::state::OperatorBlob;
use floe::state::RestoredBlob;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const JOB: &str = "0123456789abcdef0123456789abcdef";
const MAX_P: u32 = 128;
/// Subtask 1's full blob, in the checkpoint's directory.
const EXCLUSIVE: &str = "6a0f3c2e-41b7-4d0e-9a55-0c1d2e3f4a5b";
/// Subtask 0's base blob, in the job's `shared/`.
const SHARED: &str = "9e1d7b44-3f2a-4c6e-8b10-77aa55cc33ee";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint/v2")
}

fn chk_dir() -> PathBuf {
    fixture().join(JOB).join("chk-9")
}

/// Word counts of the keyed state as restored: subtask 0 after its delta, subtask 1 as is.
fn expected_counts(subtask: u32) -> BTreeMap<String, u64> {
    let mut m = words(subtask, 0);
    if subtask == 0 {
        for (w, n) in delta_updates() {
            match n {
                Some(n) => m.insert(w, n),
                None => m.remove(&w),
            };
        }
    }
    m
}

/// `w0`..`w39` whose key group belongs to `subtask` of 2, counted `i + 1 + bump`.
fn words(subtask: u32, bump: u64) -> BTreeMap<String, u64> {
    let range = KeyGroupRange::for_subtask(subtask, 2, MAX_P);
    (0..40u64)
        .map(|i| (format!("w{i}"), i + 1 + bump))
        .filter(|(w, _)| range.contains(hash_str(w.as_bytes()).key_group(MAX_P)))
        .collect()
}

/// What subtask 0 changed after its base snapshot: two updates, a deletion, a new word.
fn delta_updates() -> Vec<(String, Option<u64>)> {
    let mine: Vec<String> = words(0, 0).into_keys().collect();
    let range = KeyGroupRange::for_subtask(0, 2, MAX_P);
    let new = (0..)
        .map(|i| format!("new{i}"))
        .find(|w| range.contains(hash_str(w.as_bytes()).key_group(MAX_P)))
        .unwrap();
    vec![
        (mine[0].clone(), Some(1000)),
        (mine[1].clone(), Some(2000)),
        (mine[2].clone(), None),
        (new, Some(5)),
    ]
}

/// A keyed state blob as the format (version 1 of `FLKS`) defines it, written here by hand:
/// `FLKS`, version (u32 BE), then per key group with entries one run of entries, each
/// `varint(key_len << 1 | deleted)`, the key, its table hash (u64 LE), and unless deleted the
/// value (u64 LE); the index (offset, length, crc32c, entries per run) goes to `_metadata`.
/// Entries are in key order, groups in group order.
struct KeyedBlob {
    bytes: Vec<u8>,
    groups: Vec<GroupIndexEntry>,
}

fn write_blob(entries: impl IntoIterator<Item = (String, Option<u64>)>) -> KeyedBlob {
    let mut by_group: BTreeMap<u32, BTreeMap<String, Option<u64>>> = BTreeMap::new();
    for (key, value) in entries {
        let group = hash_str(key.as_bytes()).key_group(MAX_P);
        by_group.entry(group).or_default().insert(key, value);
    }
    let mut bytes = b"FLKS".to_vec();
    bytes.extend_from_slice(&1u32.to_be_bytes());
    let mut groups = Vec::new();
    for (key_group, entries) in by_group {
        let start = bytes.len();
        for (key, value) in &entries {
            let mut head = ((key.len() as u64) << 1) | u64::from(value.is_none());
            while head >= 0x80 {
                bytes.push((head as u8 & 0x7f) | 0x80);
                head >>= 7;
            }
            bytes.push(head as u8);
            bytes.extend_from_slice(key.as_bytes());
            bytes.extend_from_slice(&hash_str(key.as_bytes()).table.to_le_bytes());
            if let Some(v) = value {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        groups.push(GroupIndexEntry {
            key_group,
            offset: start as u64,
            len: (bytes.len() - start) as u64,
            crc32c: crc32c::crc32c(&bytes[start..]),
            entries: entries.len() as u64,
        });
    }
    KeyedBlob { bytes, groups }
}

/// The keyed blobs: subtask 0's base and delta, subtask 1's full blob.
fn blobs() -> (KeyedBlob, KeyedBlob, KeyedBlob) {
    let some = |m: BTreeMap<String, u64>| m.into_iter().map(|(k, v)| (k, Some(v)));
    (
        write_blob(some(words(0, 0))),
        write_blob(delta_updates()),
        write_blob(some(words(1, 0))),
    )
}

fn source(operator: &str, parallelism: u32, positions: Vec<SourcePosition>) -> OperatorStateMeta {
    OperatorStateMeta {
        operator_id: operator.into(),
        parallelism,
        max_parallelism: MAX_P,
        subtasks: positions
            .into_iter()
            .enumerate()
            .map(|(i, p)| SubtaskStateMeta {
                subtask: i as u32,
                key_groups: None,
                keyed: None,
                keyed_format: None,
                operator: Some(p.to_blob()),
            })
            .collect(),
    }
}

fn sink(operator: &str, state: OperatorBlob) -> OperatorStateMeta {
    OperatorStateMeta {
        operator_id: operator.into(),
        parallelism: 1,
        max_parallelism: MAX_P,
        subtasks: vec![SubtaskStateMeta {
            subtask: 0,
            key_groups: None,
            keyed: None,
            keyed_format: None,
            operator: Some(state),
        }],
    }
}

fn blob(location: BlobLocation, b: &KeyedBlob) -> StateBlob {
    StateBlob {
        location,
        size: b.bytes.len() as u64,
        groups: b.groups.clone(),
    }
}

/// Everything the fixture's `_metadata` holds, field by field.
fn expected() -> CheckpointMetadata {
    let mut operators = expected_sources();
    operators.push(expected_keyed());
    operators.extend(expected_sinks());
    CheckpointMetadata {
        checkpoint_id: 9,
        job_id: JobId(JOB.into()),
        job_name: "every-variant".into(),
        kind: SnapshotKind::Checkpoint,
        trigger_timestamp_ms: 1_760_000_000_000,
        completion_timestamp_ms: 1_760_000_000_321,
        operators,
    }
}

/// One source operator per `SourcePosition` variant.
fn expected_sources() -> Vec<OperatorStateMeta> {
    let rescaled = |next_line| SourcePosition::DatagenRescaled {
        next_line,
        old_parallelism: 3,
        old_next_lines: vec![5000, 6100, 7300],
    };
    let offset = |partition, offset| KafkaOffset {
        topic: "lines".into(),
        partition,
        offset,
    };
    vec![
        source("gen", 1, vec![SourcePosition::Datagen { next_line: 42 }]),
        source(
            "files",
            1,
            vec![SourcePosition::Files(vec![
                ("input/a.txt".into(), 1234),
                ("input/b.txt".into(), 0),
            ])],
        ),
        source("regen", 2, vec![rescaled(4096), rescaled(5120)]),
        source(
            "topics",
            1,
            vec![SourcePosition::Kafka(vec![offset(0, 17), offset(1, -2)])],
        ),
    ]
}

/// Keyed state: subtask 0 an incremental chain (shared base, inline delta), subtask 1 a full
/// blob in an exclusive file.
fn expected_keyed() -> OperatorStateMeta {
    let (base, delta, full) = blobs();
    let keyed = |subtask: u32, handle: KeyedStateHandle| {
        let r = KeyGroupRange::for_subtask(subtask, 2, MAX_P);
        SubtaskStateMeta {
            subtask,
            key_groups: Some((r.start, r.end)),
            keyed: Some(handle),
            keyed_format: Some(keyed_values_v1()),
            operator: None,
        }
    };
    let chain = vec![
        blob(BlobLocation::Shared(SHARED.into()), &base),
        blob(BlobLocation::Inline(delta.bytes.clone()), &delta),
    ];
    let exclusive = blob(BlobLocation::Exclusive(EXCLUSIVE.into()), &full);
    OperatorStateMeta {
        operator_id: "count".into(),
        parallelism: 2,
        max_parallelism: MAX_P,
        subtasks: vec![
            keyed(0, KeyedStateHandle::Incremental { chain }),
            keyed(1, KeyedStateHandle::Full(exclusive)),
        ],
    }
}

/// One sink operator per `SinkState` variant.
fn expected_sinks() -> Vec<OperatorStateMeta> {
    let part = |checkpoint_id, part| PendingPart {
        checkpoint_id,
        part,
    };
    vec![
        sink(
            "out",
            // Version 2's only `file` sink state: the file sink's state before rolling,
            // `file-sink` v1.
            FileSinkStateBeforeRolling {
                subtask: 0,
                next_part: 4,
                pending: vec![part(8, 2), part(9, 3)],
            }
            .to_blob(),
        ),
        sink(
            "kout",
            SinkState::Kafka(KafkaSinkState {
                subtask: 0,
                prefix: "floe-kout".into(),
                slots: 2,
                pending: vec![KafkaPendingTxn {
                    checkpoint_id: 9,
                    transactional_id: "floe-kout-0-1".into(),
                    producer_id: 4001,
                    producer_epoch: 3,
                }],
            })
            .to_blob(),
        ),
    ]
}

/// Format version 2 as this test knows it, independent of floe's types: the payload is
/// postcard (positional: a struct is its fields in order, an enum variant its index, then its
/// fields) of these mirror types; the frame is `FLOE`, version (u32 BE), payload length (u64
/// BE), payload, crc32c of all before (u32 BE).
mod v2_format {
    use serde::Serialize;

    #[derive(Serialize)]
    pub struct Metadata {
        pub checkpoint_id: u64,
        pub job_id: String,
        pub job_name: String,
        pub kind: Kind,
        pub trigger_timestamp_ms: u64,
        pub completion_timestamp_ms: u64,
        pub operators: Vec<Operator>,
    }

    #[derive(Serialize)]
    pub enum Kind {
        Checkpoint,
        #[allow(dead_code)]
        Savepoint,
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
        pub keyed: Option<Keyed>,
        pub source: Option<Source>,
        pub sink: Option<Sink>,
    }

    #[derive(Serialize)]
    pub enum Keyed {
        Full(Blob),
        Incremental { chain: Vec<Blob> },
    }

    #[derive(Serialize)]
    pub struct Blob {
        pub location: Location,
        pub size: u64,
        pub groups: Vec<Group>,
    }

    #[derive(Serialize)]
    pub enum Location {
        Inline(Vec<u8>),
        Exclusive(String),
        Shared(String),
    }

    #[derive(Serialize)]
    pub struct Group {
        pub key_group: u32,
        pub offset: u64,
        pub len: u64,
        pub crc32c: u32,
        pub entries: u64,
    }

    #[derive(Serialize)]
    pub enum Source {
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

    #[derive(Serialize)]
    pub struct KafkaOffset {
        pub topic: String,
        pub partition: i32,
        pub offset: i64,
    }

    #[derive(Serialize)]
    pub enum Sink {
        Files {
            subtask: u32,
            next_part: u64,
            pending: Vec<(u64, u64)>,
        },
        Kafka {
            subtask: u32,
            prefix: String,
            slots: u32,
            pending: Vec<KafkaTxn>,
        },
    }

    #[derive(Serialize)]
    pub struct KafkaTxn {
        pub checkpoint_id: u64,
        pub transactional_id: String,
        pub producer_id: i64,
        pub producer_epoch: i16,
    }

    pub fn frame(m: &Metadata) -> Vec<u8> {
        let payload = postcard::to_stdvec(m).unwrap();
        let mut out = b"FLOE".to_vec();
        out.extend_from_slice(&2u32.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        out.extend_from_slice(&payload);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }
}

/// The fixture's `_metadata` in [`v2_format`]'s terms: the same content as [`expected`],
/// spelled out again by hand so that neither depends on the other's types.
fn v2_bytes() -> Vec<u8> {
    use v2_format::*;
    let mut operators = v2_sources();
    operators.push(v2_keyed());
    operators.extend(v2_sinks());
    frame(&Metadata {
        checkpoint_id: 9,
        job_id: JOB.into(),
        job_name: "every-variant".into(),
        kind: Kind::Checkpoint,
        trigger_timestamp_ms: 1_760_000_000_000,
        completion_timestamp_ms: 1_760_000_000_321,
        operators,
    })
}

fn v2_operator(
    id: &str,
    parallelism: u32,
    subtasks: Vec<v2_format::Subtask>,
) -> v2_format::Operator {
    v2_format::Operator {
        operator_id: id.into(),
        parallelism,
        max_parallelism: 128,
        subtasks,
    }
}

/// A subtask with only a source position or only a sink state.
fn v2_plain(
    subtask: u32,
    source: Option<v2_format::Source>,
    sink: Option<v2_format::Sink>,
) -> v2_format::Subtask {
    v2_format::Subtask {
        subtask,
        key_groups: None,
        keyed: None,
        source,
        sink,
    }
}

fn v2_sources() -> Vec<v2_format::Operator> {
    use v2_format::*;
    let rescaled = |next_line| Source::DatagenRescaled {
        next_line,
        old_parallelism: 3,
        old_next_lines: vec![5000, 6100, 7300],
    };
    let offset = |partition, offset| KafkaOffset {
        topic: "lines".into(),
        partition,
        offset,
    };
    let files = Source::Files(vec![
        ("input/a.txt".into(), 1234),
        ("input/b.txt".into(), 0),
    ]);
    let kafka = Source::Kafka(vec![offset(0, 17), offset(1, -2)]);
    vec![
        v2_operator(
            "gen",
            1,
            vec![v2_plain(0, Some(Source::Datagen { next_line: 42 }), None)],
        ),
        v2_operator("files", 1, vec![v2_plain(0, Some(files), None)]),
        v2_operator(
            "regen",
            2,
            vec![
                v2_plain(0, Some(rescaled(4096)), None),
                v2_plain(1, Some(rescaled(5120)), None),
            ],
        ),
        v2_operator("topics", 1, vec![v2_plain(0, Some(kafka), None)]),
    ]
}

fn v2_keyed() -> v2_format::Operator {
    use v2_format::*;
    let (base, delta, full) = blobs();
    let blob = |location, b: &KeyedBlob| Blob {
        location,
        size: b.bytes.len() as u64,
        groups: b
            .groups
            .iter()
            .map(|g| Group {
                key_group: g.key_group,
                offset: g.offset,
                len: g.len,
                crc32c: g.crc32c,
                entries: g.entries,
            })
            .collect(),
    };
    let chain = vec![
        blob(Location::Shared(SHARED.into()), &base),
        blob(Location::Inline(delta.bytes.clone()), &delta),
    ];
    let keyed = |subtask, key_groups, keyed| Subtask {
        subtask,
        key_groups: Some(key_groups),
        keyed: Some(keyed),
        source: None,
        sink: None,
    };
    v2_operator(
        "count",
        2,
        vec![
            keyed(0, (0, 63), Keyed::Incremental { chain }),
            keyed(
                1,
                (64, 127),
                Keyed::Full(blob(Location::Exclusive(EXCLUSIVE.into()), &full)),
            ),
        ],
    )
}

fn v2_sinks() -> Vec<v2_format::Operator> {
    use v2_format::*;
    let files = Sink::Files {
        subtask: 0,
        next_part: 4,
        pending: vec![(8, 2), (9, 3)],
    };
    let kafka = Sink::Kafka {
        subtask: 0,
        prefix: "floe-kout".into(),
        slots: 2,
        pending: vec![KafkaTxn {
            checkpoint_id: 9,
            transactional_id: "floe-kout-0-1".into(),
            producer_id: 4001,
            producer_epoch: 3,
        }],
    };
    vec![
        v2_operator("out", 1, vec![v2_plain(0, None, Some(files))]),
        v2_operator("kout", 1, vec![v2_plain(0, None, Some(kafka))]),
    ]
}

/// The generator: with `UPDATE_FIXTURES=v2`, writes the fixture; always checks that the
/// checked-in files are exactly what it writes (so nobody edits them by hand, and the
/// generator stays the definition).
#[test]
fn v2_fixture_is_what_its_generator_writes() {
    let (base, _, full) = blobs();
    let files = [
        (chk_dir().join("_metadata"), v2_bytes()),
        (chk_dir().join(EXCLUSIVE), full.bytes),
        (fixture().join(JOB).join("shared").join(SHARED), base.bytes),
    ];
    let update = std::env::var("UPDATE_FIXTURES").is_ok_and(|v| v.split(',').any(|v| v == "v2"));
    for (path, bytes) in &files {
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let on_disk = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{}: {e}; UPDATE_FIXTURES=v2 writes it", path.display()));
        assert!(
            on_disk == *bytes,
            "{} is not what the v2 generator writes",
            path.display()
        );
    }
}

#[test]
fn v2_fixture_decodes_field_by_field() {
    let file = chk_dir().join("_metadata");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..4], &METADATA_MAGIC);
    assert_eq!(&bytes[4..8], &2u32.to_be_bytes(), "format version 2");
    let m = decode(&bytes, &file).unwrap();
    let want = expected();
    // Operator by operator first, so a failure points at the variant that moved.
    assert_eq!(m.operators.len(), want.operators.len());
    for (got, want) in m.operators.iter().zip(&want.operators) {
        assert_eq!(got, want, "operator {}", want.operator_id);
    }
    assert_eq!(m, want);
}

#[test]
fn this_floe_still_writes_v2_as_the_fixture_has_it() {
    // While 2 is the version floe writes, its encoder must produce the fixture's bytes: a
    // reordered enum changes what it writes as much as what it reads.
    if floe::checkpoint::metadata::METADATA_VERSION == 2 {
        let fixture = std::fs::read(chk_dir().join("_metadata")).unwrap();
        assert!(
            encode(&expected()) == fixture,
            "encode differs from the v2 fixture"
        );
    }
}

#[test]
fn v2_fixture_restores_every_state() {
    let loaded = load(chk_dir()).unwrap();
    check_files(&loaded).unwrap();
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
    assert_eq!(state.checkpoint_id.0, 9);
    for subtask in 0..2 {
        let Some(RestoredState::Keyed(runs)) =
            state.operators.get(&(OperatorId("count".into()), subtask))
        else {
            panic!("no keyed state for count/{subtask}");
        };
        let store = restore_keyed_values(runs).unwrap();
        let mut got = BTreeMap::new();
        for (_, g) in store.groups() {
            for (k, v) in g.iter() {
                got.insert(String::from_utf8(k.to_vec()).unwrap(), v);
            }
        }
        assert_eq!(got, expected_counts(subtask), "count/{subtask}");
    }
    let want = expected();
    for op in &want.operators {
        for st in &op.subtasks {
            let key = (OperatorId(op.operator_id.clone()), st.subtask);
            // Each source position and sink state comes back to its own subtask as its
            // operator's blob, and decodes to what the v2 file held.
            if let Some(blob) = &st.operator {
                let Some(RestoredState::Blobs(blobs)) = state.operators.get(&key) else {
                    panic!("no operator state for {key:?}");
                };
                let own = RestoredBlob {
                    old_subtask: st.subtask,
                    old_parallelism: op.parallelism,
                    blob: blob.clone(),
                };
                assert!(blobs.contains(&own), "{key:?}: {blobs:?}");
                let source = SourcePosition::from_blob(blob).map(|p| p.to_blob());
                let sink = SinkState::from_blob(blob);
                assert!(
                    source.as_ref() == Ok(blob) || sink.is_ok(),
                    "{key:?}: {source:?} {sink:?}"
                );
            }
        }
    }
}

#[test]
fn the_delta_holds_a_deletion_and_the_chain_applies_it() {
    // The fixture must exercise a tombstone, or a reordered deleted flag would go unseen.
    let deleted: Vec<String> = delta_updates()
        .into_iter()
        .filter(|(_, n)| n.is_none())
        .map(|(w, _)| w)
        .collect();
    assert_eq!(deleted.len(), 1);
    assert!(words(0, 0).contains_key(&deleted[0]));
    assert!(!expected_counts(0).contains_key(&deleted[0]));
    let (_, delta, _) = blobs();
    let entries: u64 = delta.groups.iter().map(|g| g.entries).sum();
    assert_eq!(entries, 4, "three changed keys and one deletion");
}
