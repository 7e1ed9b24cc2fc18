//! Storage tests on real temp directories. Keyed blobs are built here in the blob header
//! format (`FLKS`, version 1) with arbitrary group bytes: the tests exercise placement,
//! files, checksums and chains, not the state engineer's group encoding.

use super::*;
use crate::checkpoint::metadata::{
    KeyedStateHandle, OperatorStateMeta, SnapshotKind, SubtaskStateMeta,
};
use crate::checkpoint::{
    CheckpointId, CheckpointStore, CompletedCheckpoint, JobTermination, OperatorSnapshot,
    SubtaskSnapshot,
};
use crate::config::{Config, ExternalizedRetention, StateBackendKind};
use crate::operators::sources::SourcePosition;
use crate::pipeline::OperatorId;
use crate::state::snapshot::EncodedBlob;
use std::fs;
use std::path::Path;

const JOB: &str = "0123456789abcdef0123456789abcdef";

/// These tests run on local disk: a location is a path to check with `std::fs`.
impl AsRef<Path> for Location {
    fn as_ref(&self) -> &Path {
        self.as_local().expect("a local location")
    }
}

trait LocalPath {
    fn as_path(&self) -> &Path;
    fn display(&self) -> std::path::Display<'_> {
        self.as_path().display()
    }
    fn exists(&self) -> bool {
        self.as_path().exists()
    }
}

impl LocalPath for Location {
    fn as_path(&self) -> &Path {
        self.as_ref()
    }
}

fn local(p: &str) -> Location {
    Location::Local(p.into())
}

fn job() -> JobId {
    JobId(JOB.into())
}

/// A blob with the given groups, each group's bytes as given.
fn blob(groups: &[(u32, &[u8])]) -> EncodedBlob {
    let mut bytes = b"FLKS".to_vec();
    bytes.extend_from_slice(&1u32.to_be_bytes());
    let mut index = Vec::new();
    for (kg, data) in groups {
        index.push(GroupIndexEntry {
            key_group: *kg,
            offset: bytes.len() as u64,
            len: data.len() as u64,
            crc32c: crc32c::crc32c(data),
            entries: 1,
        });
        bytes.extend_from_slice(data);
    }
    EncodedBlob {
        bytes,
        groups: index,
    }
}

/// A blob of exactly `size` bytes (one group holding the rest).
fn blob_of_size(size: usize) -> EncodedBlob {
    let data = vec![7u8; size - 8];
    let b = blob(&[(0, &data)]);
    assert_eq!(b.bytes.len(), size);
    b
}

fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.state.checkpoints_dir = Some(format!("file://{}", dir.display()));
    c
}

fn store(c: &Config) -> FsCheckpointStore {
    FsCheckpointStore::new(&c.state, &c.checkpointing, job(), "wordcount").unwrap()
}

fn meta(id: u64, operators: Vec<OperatorStateMeta>) -> CheckpointMetadata {
    CheckpointMetadata {
        checkpoint_id: id,
        job_id: job(),
        job_name: "wordcount".into(),
        kind: SnapshotKind::Checkpoint,
        trigger_timestamp_ms: 1000 * id,
        completion_timestamp_ms: 1000 * id + 5,
        operators,
    }
}

fn op(id: &str, subtasks: Vec<SubtaskStateMeta>) -> OperatorStateMeta {
    OperatorStateMeta {
        operator_id: id.into(),
        parallelism: subtasks.len() as u32,
        max_parallelism: 128,
        subtasks,
    }
}

/// Completes checkpoint `id` with one datagen source subtask.
fn complete_source_only(s: &FsCheckpointStore, id: u64) -> CompletedCheckpoint {
    let st = s
        .write_subtask(SubtaskSnapshot {
            checkpoint_id: CheckpointId(id),
            operator_id: OperatorId("source".into()),
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            state: OperatorSnapshot::blob(SourcePosition::Datagen { next_line: id * 10 }.to_blob()),
        })
        .unwrap();
    s.complete(meta(id, vec![op("source", vec![st])])).unwrap()
}

fn names(dir: impl AsRef<Path>) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn range_all() -> KeyGroupRange {
    KeyGroupRange { start: 0, end: 127 }
}

#[test]
fn paths_follow_flinks_layout() {
    let base = &local("/ck");
    let j = job();
    let job_dir = path(PathKind::JobDir {
        base,
        job_id: &j,
        create_subdir: true,
    });
    assert_eq!(job_dir, Path::new("/ck/0123456789abcdef0123456789abcdef"));
    let flat = path(PathKind::JobDir {
        base,
        job_id: &j,
        create_subdir: false,
    });
    assert_eq!(flat, Path::new("/ck"));
    let jd = job_dir.as_path();
    let chk = path(PathKind::CheckpointDir {
        job_dir: &job_dir,
        id: 12,
    });
    assert_eq!(chk, jd.join("chk-12"));
    assert_eq!(
        path(PathKind::SharedDir { job_dir: &job_dir }),
        jd.join("shared")
    );
    assert_eq!(
        path(PathKind::TaskOwnedDir { job_dir: &job_dir }),
        jd.join("taskowned")
    );
    assert_eq!(
        path(PathKind::Metadata { snapshot_dir: &chk }),
        jd.join("chk-12/_metadata")
    );
    assert_eq!(chk.join(METADATA_TEMP_FILE).parent(), Some(chk.clone()));
    assert_eq!(
        path(PathKind::ExclusiveFile {
            snapshot_dir: &chk,
            name: "u"
        }),
        jd.join("chk-12/u")
    );
    assert_eq!(
        path(PathKind::SharedFile {
            job_dir: &job_dir,
            name: "u"
        }),
        jd.join("shared/u")
    );
    assert_eq!(
        path(PathKind::SavepointDir {
            base: &local("/sp"),
            job_id: &j,
            random: "5b9060056a1e"
        }),
        Path::new("/sp/savepoint-012345-5b9060056a1e")
    );
    assert_eq!(checkpoint_id_of("chk-12"), Some(12));
    assert_eq!(checkpoint_id_of("chk-"), None);
    assert_eq!(checkpoint_id_of("chk-1x"), None);
    assert_eq!(checkpoint_id_of("shared"), None);
}

#[test]
fn directory_settings() {
    assert_eq!(parse_dir("file:///data/ck").unwrap(), Path::new("/data/ck"));
    assert_eq!(parse_dir("file:/data/ck").unwrap(), Path::new("/data/ck"));
    assert_eq!(
        parse_dir("file://localhost/data/ck").unwrap(),
        Path::new("/data/ck")
    );
    assert_eq!(parse_dir("/data/ck").unwrap(), Path::new("/data/ck"));
    assert_eq!(parse_dir("ck/rel").unwrap(), Path::new("ck/rel"));
    assert_eq!(
        parse_dir("s3://bucket//ck/").unwrap(),
        Path::new("s3://bucket/ck")
    );
    assert_eq!(
        parse_dir("S3A://bucket").unwrap(),
        Path::new("s3a://bucket")
    );
    let e = parse_dir("hdfs://nn:8020/ck").unwrap_err().to_string();
    assert!(e.contains("scheme 'hdfs' is not supported"), "{e}");
    assert!(e.contains("supported: file://"), "{e}");
    assert!(e.contains("s3://bucket/prefix"), "{e}");
    assert!(e.contains("state.checkpoints.dir"), "{e}");
    let e = parse_dir("gs://b/x").unwrap_err().to_string();
    assert!(
        e.contains("scheme 'gs' is not supported") && !e.contains("HDFS"),
        "{e}"
    );
    let e = parse_dir("file://otherhost/x").unwrap_err().to_string();
    assert!(e.contains("host 'otherhost'"), "{e}");
}

#[test]
fn inline_threshold_boundary() {
    assert_eq!(placement(99, 100, false, false), Placement::Inline);
    assert_eq!(placement(100, 100, false, false), Placement::Exclusive);
    assert_eq!(placement(100, 100, false, true), Placement::Shared);
    assert_eq!(placement(1 << 30, 100, true, true), Placement::Inline);
}

#[test]
fn store_places_blobs_by_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.state.inline_threshold = 100;
    let s = store(&c);
    let below = s.write_blob(1, blob_of_size(99), false).unwrap();
    assert!(matches!(below.location, BlobLocation::Inline(ref b) if b.len() == 99));
    let at = s.write_blob(1, blob_of_size(100), false).unwrap();
    let BlobLocation::Exclusive(name) = &at.location else {
        panic!("expected a file, got {:?}", at.location)
    };
    assert!(uuid::Uuid::parse_str(name).is_ok(), "uuid name: {name}");
    assert_eq!(names(s.checkpoint_dir(1)), vec![name.clone()]);
    assert_eq!(at.size, 100);
}

#[test]
fn jobmanager_backend_inlines_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.state.inline_threshold = 10;
    c.state.backend = StateBackendKind::JobManager;
    let s = store(&c);
    let b = s.write_blob(1, blob_of_size(5000), true).unwrap();
    assert!(matches!(b.location, BlobLocation::Inline(_)));
}

#[test]
fn start_creates_job_shared_and_taskowned() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(&config(tmp.path()));
    assert_eq!(*s.job_dir(), tmp.path().join(JOB));
    assert_eq!(names(s.job_dir()), vec!["shared", "taskowned"]);
    let mut c = config(tmp.path());
    c.state.create_subdir = false;
    let flat = store(&c);
    assert_eq!(flat.job_dir(), tmp.path());
}

#[test]
fn missing_dir_or_bad_scheme_is_refused() {
    let c = Config::default();
    let e = FsCheckpointStore::new(&c.state, &c.checkpointing, job(), "j").unwrap_err();
    assert!(e.to_string().contains("execution.checkpointing.dir"), "{e}");
    let mut c = Config::default();
    c.state.checkpoints_dir = Some("hdfs:///ck".into());
    let e = FsCheckpointStore::new(&c.state, &c.checkpointing, job(), "j").unwrap_err();
    assert!(e.to_string().contains("scheme 'hdfs'"), "{e}");
}

#[test]
fn atomic_metadata_write_leaves_no_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(&config(tmp.path()));
    let done = complete_source_only(&s, 1);
    assert_eq!(done.path, s.checkpoint_dir(1));
    assert_eq!(names(&done.path), vec!["_metadata"]);
    let loaded = load(&done.path).unwrap();
    assert_eq!(loaded.metadata.checkpoint_id, 1);
    assert_eq!(done.size, loaded.metadata_len);
}

#[test]
fn killed_writer_leaves_no_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(&config(tmp.path()));
    complete_source_only(&s, 1);
    // A process killed after writing the temp file but before the rename.
    let chk2 = s.checkpoint_dir(2);
    fs::create_dir_all(&chk2).unwrap();
    let bytes = metadata::encode(&meta(2, vec![]));
    fs::write(chk2.join(METADATA_TEMP_FILE), &bytes).unwrap();
    assert!(!chk2.join("_metadata").exists());
    let listed: Vec<u64> = list_checkpoints(s.job_dir())
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(listed, vec![1], "only the completed checkpoint");
    let e = load(&chk2).unwrap_err().to_string();
    assert!(
        e.contains("Cannot find meta data file '_metadata' in directory"),
        "{e}"
    );
    // The previous one is intact and a store restarting over the directory retains it only.
    drop(s);
    let again = store(&config(tmp.path()));
    assert_eq!(again.retained(), vec![1]);
    assert_eq!(
        load(again.checkpoint_dir(1))
            .unwrap()
            .metadata
            .checkpoint_id,
        1
    );
}

#[test]
fn load_accepts_dir_metadata_file_and_uri_with_flinks_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(&config(tmp.path()));
    let dir = complete_source_only(&s, 3).path;
    let by_dir = load(&dir).unwrap();
    let by_file = load(dir.join("_metadata")).unwrap();
    let by_uri = load(format!("file://{}", dir.display())).unwrap();
    assert_eq!(by_dir, by_file);
    assert_eq!(by_dir, by_uri);
    assert_eq!(by_dir.dir, dir);
    assert_eq!(by_dir.job_dir(), *s.job_dir());

    let missing = tmp.path().join("doesnotexist");
    let e = load(&missing).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "Cannot find checkpoint or savepoint file/directory '{}'",
            missing.display()
        )
    );
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let e = load(&empty).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "Cannot find meta data file '_metadata' in directory '{}'. Please try to load the \
             checkpoint/savepoint directly from the metadata file instead of the directory.",
            empty.display()
        )
    );
}

#[test]
fn corrupt_metadata_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(&config(tmp.path()));
    let dir = complete_source_only(&s, 1).path;
    let file = dir.join("_metadata");
    let mut bytes = fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    fs::write(&file, &bytes).unwrap();
    let e = load(&dir).unwrap_err().to_string();
    assert!(e.contains("is corrupt (checksum mismatch"), "{e}");
    assert!(e.contains(&file.display().to_string()), "{e}");
}

/// Writes a keyed subtask with the given blob as a non-incremental full snapshot and
/// completes the checkpoint.
fn complete_keyed(s: &FsCheckpointStore, id: u64, b: EncodedBlob) -> LoadedSnapshot {
    let st = s
        .write_keyed_with(id, "count", 0, range_all(), |_| b)
        .unwrap();
    let dir = s
        .complete(meta(id, vec![op("count", vec![st])]))
        .unwrap()
        .path;
    load(dir).unwrap()
}

fn only_blob(l: &LoadedSnapshot) -> StateBlob {
    match &l.metadata.operators[0].subtasks[0].keyed {
        Some(KeyedStateHandle::Full(b)) => b.clone(),
        other => panic!("expected a full blob, got {other:?}"),
    }
}

#[test]
fn reads_only_the_groups_in_range_from_files_and_inline() {
    let tmp = tempfile::tempdir().unwrap();
    for threshold in [1u64, 1 << 20] {
        let mut c = config(&tmp.path().join(threshold.to_string()));
        c.state.inline_threshold = threshold;
        let s = store(&c);
        let l = complete_keyed(
            &s,
            1,
            blob(&[(3, b"three"), (64, b"sixty-four"), (100, b"100")]),
        );
        let b = only_blob(&l);
        assert_eq!(matches!(b.location, BlobLocation::Inline(_)), threshold > 1);
        let got = read_groups(
            &l,
            &b,
            KeyGroupRange {
                start: 50,
                end: 127,
            },
        )
        .unwrap();
        let got: Vec<(u32, Vec<u8>)> = got.into_iter().map(|(g, d)| (g.key_group, d)).collect();
        assert_eq!(
            got,
            vec![(64, b"sixty-four".to_vec()), (100, b"100".to_vec())]
        );
    }
}

#[test]
fn corrupt_truncated_or_missing_state_file_names_checkpoint_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.state.inline_threshold = 1;
    let s = store(&c);
    let l = complete_keyed(&s, 1, blob(&[(3, b"three"), (64, b"sixty-four")]));
    let b = only_blob(&l);
    let file = l.blob_path(&b).unwrap();
    let original = fs::read(&file).unwrap();

    // A flipped byte in group 64: reading group 3 alone still works, group 64 fails.
    let mut bytes = original.clone();
    *bytes.last_mut().unwrap() ^= 0x01;
    fs::write(&file, &bytes).unwrap();
    assert!(read_groups(&l, &b, KeyGroupRange { start: 0, end: 10 }).is_ok());
    let e = read_groups(&l, &b, range_all()).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch in key group 64"), "{e}");
    assert!(e.contains(&file.display().to_string()), "{e}");
    assert!(e.contains(&l.dir.display().to_string()), "{e}");

    // A damaged header.
    let mut bytes = original.clone();
    bytes[0] = b'X';
    fs::write(&file, &bytes).unwrap();
    let e = read_groups(&l, &b, range_all()).unwrap_err().to_string();
    assert!(e.contains("bad magic"), "{e}");
    assert!(e.contains(&file.display().to_string()), "{e}");

    // Truncated.
    fs::write(&file, &original[..original.len() - 3]).unwrap();
    let e = read_groups(&l, &b, range_all()).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    assert!(e.contains(&file.display().to_string()), "{e}");

    // Missing.
    fs::remove_file(&file).unwrap();
    let e = read_groups(&l, &b, range_all()).unwrap_err().to_string();
    assert!(e.contains("is missing"), "{e}");
    assert!(e.contains(&file.display().to_string()), "{e}");
    assert!(e.contains(&l.dir.display().to_string()), "{e}");
}

#[test]
fn retention_keeps_exactly_num_retained() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.state.num_retained = 3;
    c.state.inline_threshold = 1;
    let s = store(&c);
    for id in 1..=6 {
        complete_keyed(&s, id, blob(&[(1, b"x")]));
    }
    assert_eq!(s.retained(), vec![4, 5, 6]);
    assert_eq!(
        names(s.job_dir()),
        vec!["chk-4", "chk-5", "chk-6", "shared", "taskowned"]
    );
    // Each kept checkpoint still has its state file.
    for id in 4..=6 {
        assert_eq!(names(s.checkpoint_dir(id)).len(), 2);
    }
}

fn run_then_terminate(mode: ExternalizedRetention, how: JobTermination) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.state.num_retained = 2;
    c.checkpointing.externalized_retention = mode;
    let s = store(&c);
    for id in 1..=3 {
        complete_source_only(&s, id);
    }
    s.terminate(how);
    names(s.job_dir())
}

#[test]
fn termination_modes() {
    use ExternalizedRetention::*;
    use JobTermination::*;
    let kept = vec!["chk-2", "chk-3", "shared", "taskowned"];
    let gone = vec!["shared", "taskowned"];
    let cases = [
        (NoExternalizedCheckpoints, Cancelled, &gone),
        (NoExternalizedCheckpoints, Failed, &gone),
        (NoExternalizedCheckpoints, Finished, &gone),
        (NoExternalizedCheckpoints, Suspended, &kept),
        (DeleteOnCancellation, Cancelled, &gone),
        (DeleteOnCancellation, Failed, &kept),
        (DeleteOnCancellation, Finished, &gone),
        (DeleteOnCancellation, Suspended, &kept),
        (RetainOnCancellation, Cancelled, &kept),
        (RetainOnCancellation, Failed, &kept),
        (RetainOnCancellation, Finished, &gone),
        (RetainOnCancellation, Suspended, &kept),
    ];
    for (mode, how, want) in cases {
        assert_eq!(&run_then_terminate(mode, how), want, "{mode:?} on {how:?}");
    }
}

#[test]
fn abort_removes_what_the_checkpoint_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.state.inline_threshold = 1;
    let s = store(&c);
    complete_keyed(&s, 1, blob(&[(1, b"x")]));
    s.write_keyed_with(2, "count", 0, range_all(), |_| blob(&[(1, b"y")]))
        .unwrap();
    assert!(s.checkpoint_dir(2).exists());
    s.abort(CheckpointId(2));
    assert!(!s.checkpoint_dir(2).exists());
    assert!(s.checkpoint_dir(1).join("_metadata").exists());
}

/// Incremental store with files for everything (threshold 1 byte).
fn incremental(tmp: &Path, num_retained: u32) -> FsCheckpointStore {
    let mut c = config(tmp);
    c.state.incremental = true;
    c.state.inline_threshold = 1;
    c.state.num_retained = num_retained;
    store(&c)
}

/// Writes and completes checkpoint `id` of the incremental store; returns the chain's shared
/// file names and the encoding that was asked for.
fn step(s: &FsCheckpointStore, id: u64, size: usize) -> (Vec<String>, Encoding) {
    let mut asked = None;
    let st = s
        .write_keyed_with(id, "count", 0, range_all(), |e| {
            asked = Some(e);
            blob_of_size(size)
        })
        .unwrap();
    let Some(KeyedStateHandle::Incremental { chain }) = &st.keyed else {
        panic!("expected a chain: {st:?}")
    };
    let files = chain
        .iter()
        .map(|b| match &b.location {
            BlobLocation::Shared(n) => n.clone(),
            other => panic!("expected shared, got {other:?}"),
        })
        .collect();
    s.complete(meta(id, vec![op("count", vec![st])])).unwrap();
    (files, asked.unwrap())
}

#[test]
fn incremental_chain_and_shared_refcounts() {
    let tmp = tempfile::tempdir().unwrap();
    let s = incremental(tmp.path(), 2);
    let shared = s.job_dir().join("shared");
    let (c1, e1) = step(&s, 1, 1000);
    assert_eq!(e1, Encoding::Full);
    assert_eq!(c1.len(), 1);
    let (c2, e2) = step(&s, 2, 20);
    assert_eq!(e2, Encoding::Delta);
    assert_eq!(c2[..1], c1[..]);
    let (c3, _) = step(&s, 3, 20);
    assert_eq!(c3.len(), 3);
    // chk-1 is gone, but its base file stays: chk-2 and chk-3 use it.
    assert_eq!(s.retained(), vec![2, 3]);
    assert!(!s.checkpoint_dir(1).exists());
    assert!(shared.join(&c1[0]).exists());
    assert_eq!(s.shared_users(&c1[0]), 2);
    assert!(s.checkpoint_dir(3).join("_metadata").exists());
    assert_eq!(names(s.checkpoint_dir(3)), vec!["_metadata"]);
    assert_eq!(names(&shared).len(), 3);
}

#[test]
fn chains_compact_after_max_deltas() {
    let tmp = tempfile::tempdir().unwrap();
    let s = incremental(tmp.path(), 1);
    let shared = s.job_dir().join("shared");
    let mut encodings = Vec::new();
    let mut last = Vec::new();
    for id in 1..=(MAX_DELTAS as u64 + 2) {
        let (files, e) = step(&s, id, if id == 1 { 10_000 } else { 20 });
        encodings.push(e);
        last = files;
    }
    let mut want = vec![Encoding::Full];
    want.extend(std::iter::repeat_n(Encoding::Delta, MAX_DELTAS));
    want.push(Encoding::Full);
    assert_eq!(encodings, want);
    // After compaction only the new full blob is referenced: the old chain's files are gone.
    assert_eq!(last.len(), 1);
    assert_eq!(names(&shared), last);
}

#[test]
fn chains_compact_when_deltas_outgrow_the_base() {
    let tmp = tempfile::tempdir().unwrap();
    let s = incremental(tmp.path(), 1);
    assert_eq!(step(&s, 1, 100).1, Encoding::Full);
    assert_eq!(step(&s, 2, 60).1, Encoding::Delta);
    assert_eq!(step(&s, 3, 60).1, Encoding::Delta);
    // 120 bytes of deltas > 100 of base.
    assert_eq!(step(&s, 4, 60).1, Encoding::Full);
}

#[test]
fn choose_encoding_rules() {
    let c = |last, deltas, base, ds| {
        Some(ChainInfo {
            last_checkpoint: last,
            deltas,
            base_size: base,
            deltas_size: ds,
        })
    };
    assert_eq!(choose_encoding(false, c(1, 0, 10, 0), 2), Encoding::Full);
    assert_eq!(choose_encoding(true, None, 2), Encoding::Full);
    assert_eq!(choose_encoding(true, c(1, 0, 10, 0), 2), Encoding::Delta);
    assert_eq!(choose_encoding(true, c(5, 0, 10, 0), 5), Encoding::Full);
    assert_eq!(choose_encoding(true, c(1, 7, 10, 10), 2), Encoding::Delta);
    assert_eq!(choose_encoding(true, c(1, 8, 10, 0), 2), Encoding::Full);
    assert_eq!(choose_encoding(true, c(1, 1, 10, 11), 2), Encoding::Full);
}

#[test]
fn aborted_delta_stays_while_the_chain_needs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let s = incremental(tmp.path(), 1);
    let shared = s.job_dir().join("shared");
    step(&s, 1, 1000);
    // Checkpoint 2 is written for this subtask, then aborted (another subtask timed out).
    s.write_keyed_with(2, "count", 0, range_all(), |_| blob_of_size(20))
        .unwrap();
    s.abort(CheckpointId(2));
    assert_eq!(
        names(&shared).len(),
        2,
        "the delta of 2 is part of the chain"
    );
    let (c3, e3) = step(&s, 3, 20);
    assert_eq!(e3, Encoding::Delta);
    assert_eq!(c3.len(), 3);
    let mut on_disk = names(&shared);
    on_disk.sort();
    let mut want = c3.clone();
    want.sort();
    assert_eq!(on_disk, want);
}

#[test]
fn termination_deletes_shared_files_of_deleted_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let s = incremental(tmp.path(), 2);
    step(&s, 1, 1000);
    step(&s, 2, 20);
    s.terminate(JobTermination::Cancelled);
    assert_eq!(names(s.job_dir()), vec!["shared", "taskowned"]);
    assert!(names(s.job_dir().join("shared")).is_empty());
}

#[test]
fn restart_rebuilds_shared_refcounts_from_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let s = incremental(tmp.path(), 2);
    let (c1, _) = step(&s, 1, 1000);
    step(&s, 2, 20);
    drop(s); // killed: nothing cleaned up
    let again = incremental(tmp.path(), 2);
    assert_eq!(again.retained(), vec![1, 2]);
    assert_eq!(again.shared_users(&c1[0]), 2);
    again.terminate(JobTermination::Failed);
    assert!(names(again.job_dir().join("shared")).is_empty());
}

#[test]
fn a_write_that_lands_after_its_abort_is_cleaned_up_by_the_next_completion() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.state.inline_threshold = 1;
    let s = store(&c);
    s.abort(CheckpointId(1));
    // The writer of checkpoint 1 was still running when it was aborted.
    s.write_keyed_with(1, "count", 0, range_all(), |_| blob(&[(1, b"late")]))
        .unwrap();
    assert!(s.checkpoint_dir(1).exists());
    complete_keyed(&s, 2, blob(&[(1, b"x")]));
    assert!(!s.checkpoint_dir(1).exists());
    assert_eq!(names(s.job_dir()), vec!["chk-2", "shared", "taskowned"]);
}

#[test]
fn read_handle_returns_a_chains_groups_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let s = incremental(tmp.path(), 1);
    s.write_keyed_with(1, "count", 0, range_all(), |_| {
        blob(&[(1, b"base-1"), (90, b"base-90")])
    })
    .unwrap();
    let st = s
        .write_keyed_with(2, "count", 0, range_all(), |_| blob(&[(1, b"delta-1")]))
        .unwrap();
    let dir = s
        .complete(meta(2, vec![op("count", vec![st.clone()])]))
        .unwrap()
        .path;
    let l = load(dir).unwrap();
    let got = read_handle(
        &l,
        st.keyed.as_ref().unwrap(),
        KeyGroupRange { start: 0, end: 10 },
    )
    .unwrap();
    let got: Vec<Vec<u8>> = got.into_iter().map(|(_, d)| d).collect();
    assert_eq!(got, vec![b"base-1".to_vec(), b"delta-1".to_vec()]);
}

#[test]
fn local_metadata_is_created_once_and_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let chk = Location::Local(dir.path().join("chk-1"));
    let target = write_metadata(&chk, b"first").unwrap();
    // The same bytes: a retry of a write that succeeded.
    write_metadata(&chk, b"first").unwrap();
    let e = write_metadata(&chk, b"second").unwrap_err().to_string();
    assert!(
        e.contains("already exists") && e.contains("_metadata"),
        "{e}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"first");
    assert!(
        !chk.join(METADATA_TEMP_FILE).exists(),
        "no temp file left behind"
    );
}

/// A delete on S3 is a network round trip: the store decides under its lock what to delete
/// and deletes after releasing it, so no other call on it (a subtask's write, another job's
/// view of it) waits on the network. Every deletion here (subsumed checkpoints, an aborted
/// one, the job's end) finds the lock free.
#[test]
fn deletions_run_with_the_lock_released() {
    use std::cell::Cell;
    use std::rc::Rc;
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.state.num_retained = 1;
    c.checkpointing.externalized_retention = ExternalizedRetention::DeleteOnCancellation;
    let s = std::sync::Arc::new(store(&c));
    let (runs, locked) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let (seen, r, l) = (s.clone(), runs.clone(), locked.clone());
    store::BEFORE_DELETIONS.with(|h| {
        *h.borrow_mut() = Some(Box::new(move || {
            r.set(r.get() + 1);
            if seen.is_locked() {
                l.set(l.get() + 1);
            }
        }))
    });
    for id in 1..=4 {
        complete_source_only(&s, id);
    }
    s.write_subtask(SubtaskSnapshot {
        checkpoint_id: CheckpointId(5),
        operator_id: OperatorId("source".into()),
        subtask: 0,
        parallelism: 1,
        max_parallelism: 128,
        state: OperatorSnapshot::blob(SourcePosition::Datagen { next_line: 50 }.to_blob()),
    })
    .unwrap();
    s.abort(CheckpointId(5));
    s.terminate(crate::checkpoint::JobTermination::Cancelled);
    store::BEFORE_DELETIONS.with(|h| *h.borrow_mut() = None);
    assert!(runs.get() >= 5, "deletions ran {} times", runs.get());
    assert_eq!(locked.get(), 0, "a deletion ran under the lock");
    assert!(names(tmp.path().join(job().0))
        .iter()
        .all(|n| !n.starts_with("chk-")));
}

/// Callers match on what went wrong, not on the message: each kind of failure has its variant.
#[test]
fn errors_say_what_kind_of_failure_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(&config(tmp.path()));
    let dir = complete_source_only(&s, 1).path;
    let missing = tmp.path().join("nothing-here");
    assert!(matches!(load(&missing), Err(CheckpointError::NotFound(_))));
    fs::create_dir(&missing).unwrap();
    assert!(matches!(load(&missing), Err(CheckpointError::NotFound(_))));
    assert!(matches!(
        parse_dir("hdfs://nn/ck"),
        Err(CheckpointError::Refused(_))
    ));
    assert!(matches!(
        write_metadata(&dir, b"other bytes"),
        Err(CheckpointError::AlreadyExists(_))
    ));
    let file = dir.join(METADATA_FILE);
    let bytes = fs::read(&file).unwrap();
    fs::write(&file, &bytes[..bytes.len() - 1]).unwrap();
    let e = load(&dir).unwrap_err();
    assert!(matches!(e, CheckpointError::Corrupt(_)), "{e:?}");
    assert!(e.is_damaged_snapshot());
}

/// A restore that failed on a damaged checkpoint names an older intact one; one refused for
/// its location (or failed by the storage) does not go looking: the others would fail alike.
#[test]
fn restore_looks_for_an_older_checkpoint_only_when_the_snapshot_is_damaged() {
    use crate::checkpoint::restore::RestoreError;
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.state.num_retained = 2;
    let s = store(&c);
    let older = complete_source_only(&s, 1).path;
    let newer = complete_source_only(&s, 2).path;
    let older_of = |e: CheckpointError| match RestoreError::unreadable(&newer, None, e) {
        RestoreError::Unreadable { intact_older, .. } => intact_older,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        older_of(CheckpointError::Corrupt("x".into())),
        Some(older.to_path_buf())
    );
    assert_eq!(
        older_of(CheckpointError::NotFound("x".into())),
        Some(older.to_path_buf())
    );
    assert_eq!(older_of(CheckpointError::Refused("x".into())), None);
    let io = std::io::Error::other("disk gone");
    let e = CheckpointError::Io {
        context: "x".into(),
        source: io,
    };
    assert_eq!(older_of(e), None);
}

/// Keyed state tracks its changes only for a store that writes deltas.
#[test]
fn only_an_incremental_store_asks_for_change_tracking() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(!store(&config(tmp.path())).writes_deltas());
    let tmp = tempfile::tempdir().unwrap();
    assert!(incremental(tmp.path(), 1).writes_deltas());
}

/// A keyed snapshot of 1.5 MB: more than one piece of a streamed encoding.
fn big_snapshot() -> std::sync::Arc<crate::state::keyed::KeyedSnapshot> {
    let mut ks = crate::state::keyed::KeyedStore::new(range_all(), 128);
    for i in 0..60_000 {
        let k = format!("word-{i}");
        let h = crate::state::keygroup::hash_str(k.as_bytes());
        *ks.get_or_insert(h, k.as_bytes(), 0).unwrap() = i;
    }
    std::sync::Arc::new(ks.snapshot())
}

/// Subtask 0 of operator `count` with keyed state `snap`, for checkpoint `id`.
fn keyed_subtask(
    id: u64,
    snap: std::sync::Arc<dyn crate::state::KeyedStateSnapshot>,
) -> SubtaskSnapshot {
    SubtaskSnapshot {
        checkpoint_id: CheckpointId(id),
        operator_id: OperatorId("count".into()),
        subtask: 0,
        parallelism: 1,
        max_parallelism: 128,
        state: OperatorSnapshot::Keyed(snap),
    }
}

/// Every group's run of `blob`, read back in order: the blob without its header.
fn group_bytes(l: &LoadedSnapshot, blob: &StateBlob) -> Vec<u8> {
    read_groups(l, blob, range_all())
        .unwrap()
        .into_iter()
        .flat_map(|(_, d)| d)
        .collect()
}

/// A keyed snapshot bigger than a piece goes to its state file while it is encoded (full to
/// the checkpoint's directory, incremental to the shared one): the file holds the blob a
/// whole encoding makes and its size and index are the same; an abort deletes the
/// checkpoint's own directory (a shared file stays while the subtask's chain holds it).
#[test]
fn a_big_keyed_snapshot_is_streamed_to_its_state_file() {
    let snap = big_snapshot();
    let whole = crate::state::snapshot::encode_full(&snap);
    assert!(whole.bytes.len() > 1 << 20);
    let tmp = tempfile::tempdir().unwrap();
    for (name, s) in [
        ("full", store(&config(&tmp.path().join("full")))),
        ("incremental", incremental(&tmp.path().join("incr"), 1)),
    ] {
        let write = |id: u64| s.write_subtask(keyed_subtask(id, snap.clone())).unwrap();
        let dir = s
            .complete(meta(1, vec![op("count", vec![write(1)])]))
            .unwrap();
        let l = load(dir.path).unwrap();
        let b = match &l.metadata.operators[0].subtasks[0].keyed {
            Some(KeyedStateHandle::Incremental { chain }) => chain[0].clone(),
            _ => only_blob(&l),
        };
        let shared = matches!(b.location, BlobLocation::Shared(_));
        assert_eq!(shared, name == "incremental");
        assert!(!matches!(b.location, BlobLocation::Inline(_)), "{name}");
        assert_eq!(b.size, whole.bytes.len() as u64, "{name}");
        assert_eq!(b.groups, whole.groups, "{name}");
        assert_eq!(group_bytes(&l, &b), whole.bytes[8..], "{name}");

        write(2);
        s.abort(CheckpointId(2));
        assert!(!s.checkpoint_dir(2).exists(), "{name}");
    }
}

/// The buffers of a state file's pieces are kept for the next files, and a file written from
/// reused buffers holds its blob and nothing of the earlier files' bytes.
#[test]
fn state_files_written_from_reused_piece_buffers_hold_their_blobs() {
    let mut ks = crate::state::keyed::KeyedStore::new(range_all(), 128);
    let tmp = tempfile::tempdir().unwrap();
    let s = store(&config(tmp.path()));
    for id in 1..=3u64 {
        // Each checkpoint's state differs, so bytes left from an earlier file would show.
        for i in 0..200_000u64 {
            let k = format!("word-{i}");
            let h = crate::state::keygroup::hash_str(k.as_bytes());
            *ks.get_or_insert(h, k.as_bytes(), 0).unwrap() = i * id;
        }
        let snap = std::sync::Arc::new(ks.snapshot());
        let whole = crate::state::snapshot::encode_full(&snap);
        assert!(whole.bytes.len() > 3 << 20, "several pieces");
        let written = s.write_subtask(keyed_subtask(id, snap)).unwrap();
        let dir = s
            .complete(meta(id, vec![op("count", vec![written])]))
            .unwrap();
        let l = load(dir.path).unwrap();
        let b = only_blob(&l);
        assert_eq!(group_bytes(&l, &b), whole.bytes[8..], "checkpoint {id}");
        let kept = s.kept_pieces();
        assert!(
            (1..=5).contains(&kept),
            "checkpoint {id}: {kept} buffers kept"
        );
    }
}

/// A keyed snapshot whose last drop waits until the test lets it go.
#[derive(Debug)]
struct HeldDrop {
    inner: std::sync::Arc<crate::state::keyed::KeyedSnapshot>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    dropped: std::sync::mpsc::Sender<()>,
}

impl crate::state::KeyedStateSnapshot for HeldDrop {
    fn format(&self) -> crate::state::StateFormat {
        self.inner.format()
    }
    fn range(&self) -> KeyGroupRange {
        self.inner.range()
    }
    fn sequence(&self) -> u64 {
        crate::state::KeyedStateSnapshot::sequence(&*self.inner)
    }
    fn delta_base(&self) -> crate::state::keyed::DeltaBase {
        crate::state::KeyedStateSnapshot::delta_base(&*self.inner)
    }
    fn encode_full(&self) -> EncodedBlob {
        self.inner.encode_full()
    }
    fn encode_delta(&self) -> EncodedBlob {
        self.inner.encode_delta()
    }
    fn encode_into(&self, full: bool, out: &mut dyn crate::state::BlobOut) -> Vec<GroupIndexEntry> {
        self.inner.encode_into(full, out)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Drop for HeldDrop {
    fn drop(&mut self) {
        let _ = self.release.lock().unwrap().recv();
        let _ = self.dropped.send(());
    }
}

/// Freeing a big snapshot's shard copies is not part of the checkpoint: the subtask's state
/// is written (and acknowledged) while its snapshot is still being let go.
#[test]
fn a_keyed_snapshot_is_let_go_off_the_checkpoint_path() {
    use std::sync::mpsc::channel;
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(store(&config(tmp.path())));
    let (release, held) = channel();
    let (dropped_tx, dropped) = channel();
    let snap = HeldDrop {
        inner: big_snapshot(),
        release: std::sync::Mutex::new(held),
        dropped: dropped_tx,
    };
    let subtask = keyed_subtask(1, std::sync::Arc::new(snap));
    let (written_tx, written) = channel();
    let writer = s.clone();
    std::thread::spawn(move || written_tx.send(writer.write_subtask(subtask).is_ok()));
    // Only a broken build waits this long: the write would wait for the drop, which waits
    // for the release below.
    let ok = written.recv_timeout(Duration::from_secs(120));
    release.send(()).unwrap();
    assert_eq!(
        ok,
        Ok(true),
        "the write waited for the snapshot to be dropped"
    );
    dropped.recv_timeout(Duration::from_secs(120)).unwrap();
}

/// Run by hand in release: `cargo test --release --lib storage::tests::timing -- --ignored
/// --nocapture`. A full checkpoint of 1M keys to local disk, streamed (as a job writes it)
/// against encoded whole and then written, in alternating rounds of the same process.
#[test]
#[ignore = "timing; run by hand in release"]
fn timing_full_checkpoint_of_a_million_keys_streamed_and_whole() {
    let mut ks = crate::state::keyed::KeyedStore::new(range_all(), 128);
    for i in 0..1_000_000u64 {
        let k = format!("w{i}");
        let h = crate::state::keygroup::hash_str(k.as_bytes());
        *ks.get_or_insert(h, k.as_bytes(), 0).unwrap() += 1;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = store(&config(tmp.path()));
    let (mut streamed, mut whole) = (Vec::new(), Vec::new());
    for id in 1..=10u64 {
        let snap = std::sync::Arc::new(ks.snapshot());
        let t = std::time::Instant::now();
        if id % 2 == 0 {
            s.write_subtask(keyed_subtask(id, snap)).unwrap();
            streamed.push(t.elapsed().as_millis());
        } else {
            let encode = |_| crate::state::snapshot::encode_full(&snap);
            s.write_keyed_with(id, "count", 0, range_all(), encode)
                .unwrap();
            whole.push(t.elapsed().as_millis());
        }
        s.abort(CheckpointId(id));
    }
    streamed.sort();
    whole.sort();
    println!("streamed ms {streamed:?}, whole ms {whole:?}");
}

/// Deleting a checkpoint does not wait for the kernel to free its files' cached pages (8 ms
/// for a 24 MB state file): each file is still open when its name goes, and is closed off
/// the path. Only plain files are opened: a link is not followed, a FIFO not waited on.
#[test]
fn a_deleted_checkpoints_files_are_closed_off_the_path() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chk-1");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(METADATA_FILE), b"meta").unwrap();
    fs::write(
        dir.join("7f1c0d7e-0000-4000-8000-000000000000"),
        vec![7u8; 1 << 20],
    )
    .unwrap();
    let outside = tmp.path().join("outside");
    fs::write(&outside, b"not floe's").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
    use rustix::fs::{FileType, Mode, CWD};
    rustix::fs::mknodat(CWD, dir.join("fifo"), FileType::Fifo, Mode::from(0o600), 0).unwrap();

    local::HELD.with(|h| *h.borrow_mut() = Some(Vec::new()));
    let deleted = delete_snapshot_dir(&Location::Local(dir.clone()));
    let held = local::HELD.with(|h| h.borrow_mut().take()).unwrap();
    deleted.unwrap();
    assert!(!dir.exists());
    assert_eq!(fs::read(&outside).unwrap(), b"not floe's");
    let sizes: Vec<(u64, u64)> = held
        .iter()
        .map(|f| f.metadata().map(|m| (m.len(), m.nlink())).unwrap())
        .collect();
    assert_eq!(
        sizes,
        vec![(4, 0), (1 << 20, 0)],
        "_metadata, then the state file, unlinked"
    );
}

/// A directory of many files is deleted whole, holding no more than a few of them open.
#[test]
fn a_deletion_holds_a_bounded_number_of_files_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chk-1");
    fs::create_dir(&dir).unwrap();
    for i in 0..200 {
        fs::write(dir.join(format!("f{i}")), b"x").unwrap();
    }
    local::HELD.with(|h| *h.borrow_mut() = Some(Vec::new()));
    let deleted = delete_snapshot_dir(&Location::Local(dir.clone()));
    let held = local::HELD.with(|h| h.borrow_mut().take()).unwrap();
    deleted.unwrap();
    assert!(!dir.exists());
    assert_eq!(held.len(), 64);
}

/// A store restored from a checkpoint (perhaps an older floe's, in an older state format)
/// never continues a chain: its first checkpoint is a new chain's full blob, in this floe's
/// format, even where the store had a chain going.
#[test]
fn a_restored_stores_first_checkpoint_starts_a_new_chain() {
    use crate::state::keyed::{DeltaBase, KeyedSnapshot, KeyedStore};
    use crate::state::snapshot::{restore_keyed_values, runs_of};
    let tmp = tempfile::tempdir().unwrap();
    let s = incremental(tmp.path(), 3);
    let put = |ks: &mut KeyedStore, i: u64| {
        let k = format!("w{i}");
        let h = crate::state::keygroup::hash_str(k.as_bytes());
        *ks.get_or_insert(h, k.as_bytes(), 0).unwrap() = i + 1;
    };
    let chain_len = |id: u64, snap: KeyedSnapshot| {
        let st = s
            .write_subtask(keyed_subtask(id, std::sync::Arc::new(snap)))
            .unwrap();
        let Some(KeyedStateHandle::Incremental { chain }) = &st.keyed else {
            panic!("expected a chain: {st:?}")
        };
        let len = chain.len();
        s.complete(meta(id, vec![op("count", vec![st])])).unwrap();
        len
    };
    let mut ks = KeyedStore::new(range_all(), 128);
    (0..1000).for_each(|i| put(&mut ks, i));
    assert_eq!(chain_len(1, ks.snapshot()), 1);
    put(&mut ks, 1);
    assert_eq!(
        chain_len(2, ks.snapshot()),
        2,
        "a delta continues the chain"
    );
    let mut restored = restore_keyed_values(&runs_of(&mut ks)).unwrap();
    put(&mut restored, 2);
    let snap = restored.snapshot();
    assert_eq!(snap.delta_base(), DeltaBase::Restored);
    assert_eq!(chain_len(3, snap), 1, "a new chain");
}
