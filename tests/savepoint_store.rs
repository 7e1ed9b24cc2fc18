//! Savepoints and the incremental chain of checkpoints (issue 5 point 2): a savepoint takes a
//! snapshot of the keyed store, which moves its change tracking on, but it is written full
//! into its own directory and never joins the chain; the checkpoint after it must then not be
//! a delta onto the checkpoint before it (that delta would miss the changes between that
//! checkpoint and the savepoint). Checked on the `_metadata` the store writes.

use floe::checkpoint::metadata::{
    CheckpointMetadata, KeyedStateHandle, OperatorStateMeta, SnapshotKind,
};
use floe::checkpoint::storage::{self, FsCheckpointStore};
use floe::checkpoint::{CheckpointId, CheckpointStore, JobId, OperatorSnapshot, SubtaskSnapshot};
use floe::config::Config;
use floe::pipeline::OperatorId;
use floe::state::keyed::KeyedStore;
use floe::state::keygroup::{hash_str, KeyGroupRange};
use std::path::Path;

const MAX_P: u32 = 128;

fn store(dir: &Path) -> FsCheckpointStore {
    let mut c = Config::default();
    c.state.checkpoints_dir = Some(dir.display().to_string());
    c.state.incremental = true;
    c.state.inline_threshold = 0;
    FsCheckpointStore::new(&c.state, &c.checkpointing, JobId::random(), "t").unwrap()
}

fn put(k: &mut KeyedStore, key: &str, v: u64) {
    *k.get_or_insert(hash_str(key.as_bytes()), key.as_bytes(), 0)
        .unwrap() = v;
}

fn snapshot(k: &mut KeyedStore, id: u64) -> SubtaskSnapshot {
    SubtaskSnapshot {
        checkpoint_id: CheckpointId(id),
        operator_id: OperatorId("count".into()),
        subtask: 0,
        parallelism: 1,
        max_parallelism: MAX_P,
        state: OperatorSnapshot::Keyed(std::sync::Arc::new(k.snapshot())),
    }
}

fn metadata(id: u64, sub: floe::checkpoint::metadata::SubtaskStateMeta) -> CheckpointMetadata {
    CheckpointMetadata {
        checkpoint_id: id,
        job_id: JobId::random(),
        job_name: "t".into(),
        kind: SnapshotKind::Checkpoint,
        trigger_timestamp_ms: 0,
        completion_timestamp_ms: 0,
        operators: vec![OperatorStateMeta {
            operator_id: "count".into(),
            parallelism: 1,
            max_parallelism: MAX_P,
            subtasks: vec![sub],
        }],
    }
}

fn chain_len(sub: &floe::checkpoint::metadata::SubtaskStateMeta) -> usize {
    match sub.keyed.as_ref().unwrap() {
        KeyedStateHandle::Incremental { chain } => chain.len(),
        KeyedStateHandle::Full(_) => 1,
    }
}

#[test]
fn the_checkpoint_after_a_savepoint_is_written_full_and_before_it_deltas_chain() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir.path().join("ck"));
    let mut k = KeyedStore::new(KeyGroupRange::for_subtask(0, 1, MAX_P), MAX_P);
    put(&mut k, "a", 1);
    let c1 = s.write_subtask(snapshot(&mut k, 1)).unwrap();
    s.complete(metadata(1, c1)).unwrap();
    put(&mut k, "b", 1);
    let c2 = s.write_subtask(snapshot(&mut k, 2)).unwrap();
    assert_eq!(
        chain_len(&c2),
        2,
        "without a savepoint, a delta onto checkpoint 1"
    );
    s.complete(metadata(2, c2)).unwrap();

    // Savepoint 3 (changes of "c" are in its snapshot only), then checkpoint 4.
    put(&mut k, "c", 7);
    let sp_dir = s
        .create_savepoint_dir(&dir.path().join("sp"), &JobId::random())
        .unwrap();
    let sp = s
        .write_savepoint_subtask(&sp_dir, snapshot(&mut k, 3))
        .unwrap();
    assert!(
        matches!(sp.keyed, Some(KeyedStateHandle::Full(_))),
        "savepoints are full"
    );
    let done = s.complete_savepoint(&sp_dir, metadata(3, sp)).unwrap();
    assert_eq!(done.path, sp_dir);
    put(&mut k, "d", 1);
    let c4 = s.write_subtask(snapshot(&mut k, 4)).unwrap();
    assert_eq!(
        chain_len(&c4),
        1,
        "after a savepoint the next checkpoint is full"
    );
    s.complete(metadata(4, c4)).unwrap();
    assert_eq!(s.retained(), vec![4], "the savepoint is not retained");

    // The savepoint is complete on its own.
    assert_eq!(
        storage::load_at(&sp_dir).unwrap().metadata.kind,
        SnapshotKind::Savepoint
    );
}
