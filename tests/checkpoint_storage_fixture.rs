//! Checked-in `_metadata` fixtures: every format version floe has written must keep decoding,
//! and a corrupted copy must be refused by its checksum with an error naming the file.
//!
//! `tests/fixtures/checkpoint/v1/` is what `v1_fixture_is_what_its_generator_writes` below
//! writes with `UPDATE_FIXTURES=v1 cargo test --test checkpoint_storage_fixture --
//! --test-threads=1` (one thread: the other tests read what it writes). Its generator encodes
//! version 1 with types of its own ([`v1_format`]), not with floe's encoder, which writes the
//! newest version; a new format version gets a fixture and generator of its own (v2:
//! `tests/checkpoint_fixture_v2.rs`), so v1 keeps being tested. The state file's group bytes
//! are arbitrary (only its header and checksums follow the blob format); the metadata is what
//! this fixture pins down.

use floe::checkpoint::inspect::{inspect, render_json, render_text, InspectReport};
use floe::checkpoint::metadata::{
    decode, BlobLocation, CheckpointMetadata, GroupIndexEntry, KeyedStateHandle, OperatorStateMeta,
    SnapshotKind, StateBlob, SubtaskStateMeta,
};
use floe::checkpoint::storage::load;
use floe::checkpoint::JobId;
use floe::operators::sources::SourcePosition;
use floe::state::snapshot::keyed_values_v1;
use std::path::{Path, PathBuf};

const STATE_FILE: &str = "24e77e29-ccce-483c-b58f-dbe4bf3dc262";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint")
}

/// A blob in the header format with the given groups.
fn blob_bytes(groups: &[(u32, &[u8], u64)]) -> (Vec<u8>, Vec<GroupIndexEntry>) {
    let mut bytes = b"FLKS".to_vec();
    bytes.extend_from_slice(&1u32.to_be_bytes());
    let mut index = Vec::new();
    for (kg, data, entries) in groups {
        index.push(GroupIndexEntry {
            key_group: *kg,
            offset: bytes.len() as u64,
            len: data.len() as u64,
            crc32c: crc32c::crc32c(data),
            entries: *entries,
        });
        bytes.extend_from_slice(data);
    }
    (bytes, index)
}

fn file_blob() -> (Vec<u8>, Vec<GroupIndexEntry>) {
    blob_bytes(&[
        (5, b"group five: hello=3", 1),
        (40, b"group forty: a=1 b=2", 2),
    ])
}

fn inline_blob() -> (Vec<u8>, Vec<GroupIndexEntry>) {
    blob_bytes(&[(81, b"world=7", 1)])
}

fn fixture_metadata() -> CheckpointMetadata {
    let (file_bytes, file_groups) = file_blob();
    let (inline_bytes, inline_groups) = inline_blob();
    CheckpointMetadata {
        checkpoint_id: 7,
        job_id: JobId("0123456789abcdef0123456789abcdef".into()),
        job_name: "wordcount".into(),
        kind: SnapshotKind::Checkpoint,
        trigger_timestamp_ms: 1_700_000_000_000,
        completion_timestamp_ms: 1_700_000_000_250,
        operators: vec![
            OperatorStateMeta {
                operator_id: "lines".into(),
                parallelism: 1,
                max_parallelism: 128,
                subtasks: vec![SubtaskStateMeta {
                    subtask: 0,
                    key_groups: None,
                    keyed: None,
                    keyed_format: None,
                    operator: Some(
                        SourcePosition::Files(vec![("input/a.txt".into(), 1234)]).to_blob(),
                    ),
                }],
            },
            OperatorStateMeta {
                operator_id: "gen".into(),
                parallelism: 1,
                max_parallelism: 128,
                subtasks: vec![SubtaskStateMeta {
                    subtask: 0,
                    key_groups: None,
                    keyed: None,
                    keyed_format: None,
                    operator: Some(SourcePosition::Datagen { next_line: 42 }.to_blob()),
                }],
            },
            OperatorStateMeta {
                operator_id: "count".into(),
                parallelism: 2,
                max_parallelism: 128,
                subtasks: vec![
                    SubtaskStateMeta {
                        subtask: 0,
                        key_groups: Some((0, 63)),
                        keyed: Some(KeyedStateHandle::Full(StateBlob {
                            size: file_bytes.len() as u64,
                            location: BlobLocation::Exclusive(STATE_FILE.into()),
                            groups: file_groups,
                        })),
                        keyed_format: Some(keyed_values_v1()),
                        operator: None,
                    },
                    SubtaskStateMeta {
                        subtask: 1,
                        key_groups: Some((64, 127)),
                        keyed: Some(KeyedStateHandle::Full(StateBlob {
                            size: inline_bytes.len() as u64,
                            location: BlobLocation::Inline(inline_bytes),
                            groups: inline_groups,
                        })),
                        keyed_format: Some(keyed_values_v1()),
                        operator: None,
                    },
                ],
            },
        ],
    }
}

/// Format version 1 as it was written, independent of floe's current types (which are v2):
/// postcard of these mirror types (no sink state; the source positions v1 knew), framed as
/// `FLOE`, version 1 (u32 BE), payload length (u64 BE), payload, crc32c (u32 BE).
mod v1_format {
    use serde::Serialize;

    #[derive(Serialize)]
    pub struct Metadata {
        pub checkpoint_id: u64,
        pub job_id: String,
        pub job_name: String,
        pub kind: u8, // SnapshotKind: 0 checkpoint, 1 savepoint (a unit variant is its index)
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
        pub keyed: Option<Keyed>,
        pub source: Option<Source>,
    }

    #[derive(Serialize)]
    pub enum Keyed {
        Full(Blob),
    }

    #[derive(Serialize)]
    pub struct Blob {
        pub location: Location,
        pub size: u64,
        pub groups: Vec<(u32, u64, u64, u32, u64)>,
    }

    #[derive(Serialize)]
    pub enum Location {
        Inline(Vec<u8>),
        Exclusive(String),
    }

    #[derive(Serialize)]
    pub enum Source {
        Datagen { next_line: u64 },
        Files(Vec<(String, u64)>),
    }

    pub fn frame(m: &Metadata) -> Vec<u8> {
        let payload = postcard::to_stdvec(m).unwrap();
        let mut out = b"FLOE".to_vec();
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        out.extend_from_slice(&payload);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }
}

/// [`fixture_metadata`] in version 1's terms.
fn v1_bytes() -> Vec<u8> {
    use v1_format::*;
    let (file_bytes, file_groups) = file_blob();
    let (inline_bytes, inline_groups) = inline_blob();
    let groups = |g: Vec<GroupIndexEntry>| {
        g.iter()
            .map(|e| (e.key_group, e.offset, e.len, e.crc32c, e.entries))
            .collect()
    };
    let source = |id: &str, position| Operator {
        operator_id: id.into(),
        parallelism: 1,
        max_parallelism: 128,
        subtasks: vec![Subtask {
            subtask: 0,
            key_groups: None,
            keyed: None,
            source: Some(position),
        }],
    };
    frame(&Metadata {
        checkpoint_id: 7,
        job_id: "0123456789abcdef0123456789abcdef".into(),
        job_name: "wordcount".into(),
        kind: 0,
        trigger_timestamp_ms: 1_700_000_000_000,
        completion_timestamp_ms: 1_700_000_000_250,
        operators: vec![
            source("lines", Source::Files(vec![("input/a.txt".into(), 1234)])),
            source("gen", Source::Datagen { next_line: 42 }),
            Operator {
                operator_id: "count".into(),
                parallelism: 2,
                max_parallelism: 128,
                subtasks: vec![
                    Subtask {
                        subtask: 0,
                        key_groups: Some((0, 63)),
                        keyed: Some(Keyed::Full(Blob {
                            location: Location::Exclusive(STATE_FILE.into()),
                            size: file_bytes.len() as u64,
                            groups: groups(file_groups),
                        })),
                        source: None,
                    },
                    Subtask {
                        subtask: 1,
                        key_groups: Some((64, 127)),
                        keyed: Some(Keyed::Full(Blob {
                            size: inline_bytes.len() as u64,
                            location: Location::Inline(inline_bytes),
                            groups: groups(inline_groups),
                        })),
                        source: None,
                    },
                ],
            },
        ],
    })
}

/// The v1 generator: with `UPDATE_FIXTURES=v1`, writes the v1 fixture and its corrupted copy;
/// always checks that the checked-in files are exactly what it writes.
#[test]
fn v1_fixture_is_what_its_generator_writes() {
    let dir = fixtures().join("v1");
    let corrupt = fixtures().join("v1-corrupt");
    let bytes = v1_bytes();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x04;
    let files = [
        (dir.join("_metadata"), bytes),
        (dir.join(STATE_FILE), file_blob().0),
        (corrupt.join("_metadata"), flipped),
    ];
    let update = std::env::var("UPDATE_FIXTURES").is_ok_and(|v| v.split(',').any(|v| v == "v1"));
    for (path, bytes) in &files {
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let on_disk = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{}: {e}; UPDATE_FIXTURES=v1 writes it", path.display()));
        assert!(
            on_disk == *bytes,
            "{} is not what the v1 generator writes",
            path.display()
        );
    }
}

#[test]
fn v1_fixture_still_decodes() {
    let file = fixtures().join("v1/_metadata");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..8], b"FLOE\0\0\0\x01");
    assert_eq!(decode(&bytes, &file).unwrap(), fixture_metadata());
    let state = std::fs::read(fixtures().join("v1").join(STATE_FILE)).unwrap();
    assert_eq!(state, file_blob().0);
}

#[test]
fn v1_fixture_loads_by_dir_and_file() {
    let by_dir = load(fixtures().join("v1")).unwrap();
    let by_file = load(fixtures().join("v1/_metadata")).unwrap();
    assert_eq!(by_dir, by_file);
    assert_eq!(by_dir.metadata, fixture_metadata());
}

#[test]
fn corrupted_copy_is_refused_by_its_checksum() {
    let file = fixtures().join("v1-corrupt/_metadata");
    let good = std::fs::read(fixtures().join("v1/_metadata")).unwrap();
    let bad = std::fs::read(&file).unwrap();
    let differing = good.iter().zip(&bad).filter(|(a, b)| a != b).count();
    assert_eq!(
        (differing, good.len()),
        (1, bad.len()),
        "exactly one byte differs"
    );
    let e = load(fixtures().join("v1-corrupt")).unwrap_err().to_string();
    assert!(e.contains("is corrupt (checksum mismatch"), "{e}");
    assert!(e.contains(&file.display().to_string()), "{e}");
}

/// Compares with a golden file, rewritten with `UPDATE_EXPECT=1`.
fn golden(name: &str, actual: &str) {
    let file = fixtures().join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&file, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_EXPECT=1", file.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs; UPDATE_EXPECT=1 rewrites it",
        file.display()
    );
}

#[test]
fn inspect_the_fixture() {
    // Relative path: cargo runs tests in the package root, and the golden output stays
    // independent of where the repository is checked out.
    let report = inspect("tests/fixtures/checkpoint/v1").unwrap();
    let InspectReport::Snapshot(s) = &report else {
        panic!("expected a snapshot report: {report:?}")
    };
    assert_eq!(s.checkpoint_id, 7);
    assert_eq!(s.kind, "checkpoint");
    assert_eq!(s.job_name, "wordcount");
    let count = &s.operators[2];
    assert_eq!((count.parallelism, count.max_parallelism), (2, 128));
    assert_eq!(count.subtasks[0].key_groups, Some([0, 63]));
    assert_eq!(count.subtasks[0].entries, 3);
    assert_eq!(count.subtasks[0].blobs[0].file.as_deref(), Some(STATE_FILE));
    assert_eq!(count.subtasks[1].blobs[0].location, "inline");
    golden("v1.inspect.txt", &render_text(&report));
    let json = render_json(&report);
    assert_eq!(json["type"], "snapshot");
    assert_eq!(
        json["operators"][1]["subtasks"][0]["source"]["next_line"],
        42
    );
    golden(
        "v1.inspect.json",
        &(serde_json::to_string_pretty(&json).unwrap() + "\n"),
    );
}
