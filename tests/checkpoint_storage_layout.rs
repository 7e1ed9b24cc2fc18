//! Flink's on-disk layout through the public storage API, on a real temp directory: job
//! directory with `shared/` and `taskowned/`, `chk-<n>/_metadata`, exactly `num-retained`
//! checkpoints left, a killed writer leaving the previous checkpoint restorable, and
//! `inspect` on the job directory.
//!
//! Keyed state goes through `write_keyed_with` with hand-made blobs, so this test does not
//! depend on the state engine's encoding.

use floe::checkpoint::inspect::{inspect, render_text, InspectReport};
use floe::checkpoint::metadata::{
    encode, CheckpointMetadata, GroupIndexEntry, OperatorStateMeta, SnapshotKind,
};
use floe::checkpoint::storage::{list_checkpoints, load, FsCheckpointStore, Location};
use floe::checkpoint::{
    CheckpointId, CheckpointStore, JobId, JobTermination, OperatorSnapshot, SubtaskSnapshot,
};
use floe::config::{Config, ExternalizedRetention};
use floe::operators::sources::SourcePosition;
use floe::pipeline::OperatorId;
use floe::state::keygroup::KeyGroupRange;
use floe::state::snapshot::EncodedBlob;
use std::path::Path;

fn blob(size: usize) -> EncodedBlob {
    let mut bytes = b"FLKS".to_vec();
    bytes.extend_from_slice(&1u32.to_be_bytes());
    let data = vec![b'x'; size - 8];
    let groups = vec![GroupIndexEntry {
        key_group: 9,
        offset: 8,
        len: data.len() as u64,
        crc32c: crc32c::crc32c(&data),
        entries: 4,
    }];
    bytes.extend_from_slice(&data);
    EncodedBlob { bytes, groups }
}

fn checkpoint(s: &FsCheckpointStore, id: u64, keyed_size: usize) {
    let src = s
        .write_subtask(SubtaskSnapshot {
            checkpoint_id: CheckpointId(id),
            operator_id: OperatorId("gen".into()),
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            state: OperatorSnapshot::blob(SourcePosition::Datagen { next_line: id }.to_blob()),
        })
        .unwrap();
    let keyed = s
        .write_keyed_with(id, "count", 0, KeyGroupRange { start: 0, end: 127 }, |_| {
            blob(keyed_size)
        })
        .unwrap();
    let op = |name: &str, st| OperatorStateMeta {
        operator_id: name.into(),
        parallelism: 1,
        max_parallelism: 128,
        subtasks: vec![st],
    };
    s.complete(CheckpointMetadata {
        checkpoint_id: id,
        job_id: s.job_id().clone(),
        job_name: s.job_name().into(),
        kind: SnapshotKind::Checkpoint,
        trigger_timestamp_ms: id * 1000,
        completion_timestamp_ms: id * 1000 + 10,
        operators: vec![op("gen", src), op("count", keyed)],
    })
    .unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn layout_retention_and_a_killed_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.state.checkpoints_dir = Some(format!("file://{}", tmp.path().display()));
    c.state.num_retained = 2;
    c.state.inline_threshold = 100;
    c.checkpointing.externalized_retention = ExternalizedRetention::RetainOnCancellation;
    let job = JobId::random();
    let s = FsCheckpointStore::new(&c.state, &c.checkpointing, job.clone(), "wc").unwrap();
    assert_eq!(names(tmp.path()), vec![job.0.clone()]);
    assert!(JobId::is_valid(&job.0));

    checkpoint(&s, 1, 99); // inline
    checkpoint(&s, 2, 100); // a file
    checkpoint(&s, 3, 100);
    let job_dir = tmp.path().join(&job.0);
    assert_eq!(
        names(&job_dir),
        vec!["chk-2", "chk-3", "shared", "taskowned"]
    );
    assert_eq!(
        names(&job_dir.join("chk-3")).len(),
        2,
        "_metadata + one state file"
    );

    // Killed while writing checkpoint 4: a state file and the temp _metadata, no rename.
    let chk4 = job_dir.join("chk-4");
    std::fs::create_dir(&chk4).unwrap();
    std::fs::write(
        chk4.join("7f1c0d7e-0000-4000-8000-000000000000"),
        b"partial",
    )
    .unwrap();
    let temp = chk4.join("_metadata.inprogress");
    std::fs::write(
        &temp,
        &encode(&load(job_dir.join("chk-3")).unwrap().metadata)[..50],
    )
    .unwrap();
    let ids: Vec<u64> = list_checkpoints(&Location::Local(job_dir.clone()))
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, vec![3, 2]);
    assert_eq!(
        load(job_dir.join("chk-3")).unwrap().metadata.checkpoint_id,
        3
    );

    let report = inspect(&job_dir).unwrap();
    let InspectReport::JobDir(j) = &report else {
        panic!("expected a job directory report: {report:?}")
    };
    let listed: Vec<(u64, Option<u64>)> = j
        .checkpoints
        .iter()
        .map(|c| (c.checkpoint_id, c.size))
        .collect();
    let meta3 = std::fs::metadata(job_dir.join("chk-3/_metadata"))
        .unwrap()
        .len();
    assert_eq!(listed[0], (3, Some(meta3 + 100)));
    assert_eq!(listed.len(), 2);
    assert!(render_text(&report).contains("2 retained checkpoints"));

    // Cancelled with RETAIN_ON_CANCELLATION: both stay for a later `run -s`.
    s.terminate(JobTermination::Cancelled);
    assert!(job_dir.join("chk-2/_metadata").is_file());
    assert!(job_dir.join("chk-3/_metadata").is_file());
}
