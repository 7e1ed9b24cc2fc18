//! `floe savepoint -d PATH`: offline disposal by the real binary, with no floe running. It
//! removes a savepoint's own files only and refuses what is not a floe savepoint: a plain
//! directory, a retained checkpoint.

use floe::checkpoint::metadata::{
    encode, BlobLocation, CheckpointMetadata, KeyedStateHandle, OperatorStateMeta, SnapshotKind,
    StateBlob, SubtaskStateMeta,
};
use floe::checkpoint::storage::{write_metadata, write_state_file, Location};
use floe::checkpoint::JobId;
use std::path::Path;
use std::process::Output;

const JOB: &str = "8f797489a0bbec8f9bbc61e6b7e3f916";

/// Writes a snapshot of `kind` into `dir`: two state files referenced by `_metadata`.
fn write_snapshot(dir: &Path, kind: SnapshotKind) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let at = Location::Local(dir.to_path_buf());
    let files: Vec<String> = (0..2)
        .map(|i| write_state_file(&at, format!("state {i}").into_bytes()).unwrap())
        .collect();
    let subtasks = files
        .iter()
        .enumerate()
        .map(|(i, name)| SubtaskStateMeta {
            subtask: i as u32,
            key_groups: Some((i as u32 * 64, i as u32 * 64 + 63)),
            keyed: Some(KeyedStateHandle::Full(StateBlob {
                location: BlobLocation::Exclusive(name.clone()),
                size: 7,
                groups: Vec::new(),
            })),
            keyed_format: None,
            operator: None,
        })
        .collect();
    let meta = CheckpointMetadata {
        checkpoint_id: 3,
        job_id: JobId(JOB.into()),
        job_name: "wordcount".into(),
        kind,
        trigger_timestamp_ms: 1_795_515_530_000,
        completion_timestamp_ms: 1_795_515_530_100,
        operators: vec![OperatorStateMeta {
            operator_id: "count".into(),
            parallelism: 2,
            max_parallelism: 128,
            subtasks,
        }],
    };
    write_metadata(&at, &encode(&meta)).unwrap();
    files
}

fn floe(cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_floe"));
    cmd.args(args).current_dir(cwd);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FLOE_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("run floe")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn disposes_a_savepoint_offline_and_keeps_its_neighbours() {
    let root = tempfile::tempdir().unwrap();
    let sp_root = root.path().join("sp");
    let sp = sp_root.join("savepoint-8f7974-aaaaaaaaaaaa");
    let other = sp_root.join("savepoint-8f7974-bbbbbbbbbbbb");
    write_snapshot(&sp, SnapshotKind::Savepoint);
    let other_files = write_snapshot(&other, SnapshotKind::Savepoint);
    std::fs::write(sp_root.join("notes.txt"), "mine").unwrap();

    let given = sp.display().to_string();
    let out = floe(root.path(), &["savepoint", "-d", &given]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("Disposing savepoint '{given}'.\nSavepoint '{given}' disposed.\n")
    );
    assert!(!sp.exists(), "the savepoint directory is gone");
    assert_eq!(
        names(&sp_root),
        ["notes.txt", "savepoint-8f7974-bbbbbbbbbbbb"],
        "only the savepoint's files went"
    );
    let mut expected: Vec<String> = other_files;
    expected.push("_metadata".into());
    expected.sort();
    assert_eq!(names(&other), expected, "the other savepoint is intact");
}

#[test]
fn a_file_uri_and_json_and_a_foreign_file_kept() {
    let root = tempfile::tempdir().unwrap();
    let sp = root.path().join("savepoint-8f7974-cccccccccccc");
    write_snapshot(&sp, SnapshotKind::Savepoint);
    std::fs::write(sp.join("README"), "not floe's").unwrap();

    let given = format!("file://{}", sp.display());
    let out = floe(root.path(), &["savepoint", "--dispose", &given, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(v["savepoint-path"], given);
    assert_eq!(v["files-deleted"], 3, "_metadata and two state files: {v}");
    assert_eq!(v["directory-removed"], false);
    assert_eq!(
        names(&sp),
        ["README"],
        "only the file floe did not write is left"
    );
}

#[test]
fn a_relative_path_and_the_metadata_file_itself() {
    let root = tempfile::tempdir().unwrap();
    let sp = root.path().join("savepoint-8f7974-dddddddddddd");
    write_snapshot(&sp, SnapshotKind::Savepoint);
    std::fs::write(sp.join("extra"), "x").unwrap();
    let out = floe(
        root.path(),
        &["savepoint", "-d", "savepoint-8f7974-dddddddddddd/_metadata"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("disposed."), "{stdout}");
    assert!(stdout.contains("was kept"), "{stdout}");
    assert_eq!(names(&sp), ["extra"]);
}

#[test]
fn refuses_what_is_not_a_savepoint() {
    let root = tempfile::tempdir().unwrap();
    // A plain directory.
    let plain = root.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("data"), "keep").unwrap();
    let given = plain.display().to_string();
    let out = floe(root.path(), &["savepoint", "-d", &given]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("Could not dispose savepoint '{given}'.")),
        "{err}"
    );
    assert!(err.contains("not a floe savepoint"), "{err}");
    assert_eq!(names(&plain), ["data"]);

    // A `_metadata` that is not floe's.
    std::fs::write(plain.join("_metadata"), "garbage").unwrap();
    let out = floe(root.path(), &["savepoint", "-d", &given]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a floe savepoint"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(names(&plain), ["_metadata", "data"]);

    // A retained checkpoint belongs to its job's retention.
    let chk = root.path().join("ck").join(JOB).join("chk-3");
    let files = write_snapshot(&chk, SnapshotKind::Checkpoint);
    let given = chk.display().to_string();
    let out = floe(root.path(), &["savepoint", "-d", &given]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("not a savepoint"), "{err}");
    assert!(err.contains("state.checkpoints.num-retained"), "{err}");
    let mut expected = files;
    expected.push("_metadata".into());
    expected.sort();
    assert_eq!(names(&chk), expected, "the checkpoint is intact");

    // Nothing there.
    let missing = root.path().join("missing").display().to_string();
    let out = floe(root.path(), &["savepoint", "-d", &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Cannot find checkpoint or savepoint"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_missing_path_gets_flinks_message() {
    let root = tempfile::tempdir().unwrap();
    let out = floe(root.path(), &["savepoint", "-d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with(
            "Missing required argument: savepoint path. Usage: floe savepoint -d \
             <savepoint-path>\n"
        ),
        "{}",
        text(&out.stderr)
    );
}
