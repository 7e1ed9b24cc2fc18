//! Checked-in `_metadata` fixtures: every format version floe has written must keep decoding,
//! and a corrupted copy must be refused by its checksum with an error naming the file.
//!
//! `tests/fixtures/checkpoint/v1/` was produced by `generate_v1_fixture` below with
//! `UPDATE_FIXTURES=1 cargo test --test checkpoint_storage_fixture -- --test-threads=1` (one
//! thread: the other tests read what it writes); never regenerate it for a new format version: add `v2/` instead, so
//! v1 keeps being tested. The state file's group bytes are arbitrary (only its header and
//! checksums follow the blob format); the metadata is what this fixture pins down.

use floe::checkpoint::inspect::{inspect, render_json, render_text, InspectReport};
use floe::checkpoint::metadata::{
    decode, encode, BlobLocation, CheckpointMetadata, GroupIndexEntry, KeyedStateHandle,
    OperatorStateMeta, SnapshotKind, StateBlob, SubtaskStateMeta,
};
use floe::checkpoint::storage::load;
use floe::checkpoint::JobId;
use floe::operators::sources::SourcePosition;
use floe::state::snapshot::keyed_values_format;
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
                        keyed_format: Some(keyed_values_format()),
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
                        keyed_format: Some(keyed_values_format()),
                        operator: None,
                    },
                ],
            },
        ],
    }
}

#[test]
fn generate_v1_fixture() {
    let dir = fixtures().join("v1");
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        let bytes = encode(&fixture_metadata());
        std::fs::write(dir.join("_metadata"), &bytes).unwrap();
        std::fs::write(dir.join(STATE_FILE), file_blob().0).unwrap();
        let corrupt = fixtures().join("v1-corrupt");
        std::fs::create_dir_all(&corrupt).unwrap();
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 0x04;
        std::fs::write(corrupt.join("_metadata"), &flipped).unwrap();
    }
    assert!(
        dir.join("_metadata").is_file(),
        "run with UPDATE_FIXTURES=1 once"
    );
    assert!(dir.join(STATE_FILE).is_file());
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
