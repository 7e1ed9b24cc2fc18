//! A job started with restored state: operators get their keyed state and sources their
//! positions before the first record, and checkpoint numbering continues after the restored
//! id.

mod runtime_support;

use floe::checkpoint::{CheckpointId, OperatorSnapshot};
use floe::operators::sources::SourcePosition;
use floe::operators::RestoredState;
use floe::pipeline::plan::Plan;
use floe::pipeline::OperatorId;
use floe::runtime::{self, CheckpointNotice, JobOptions, RestoreState, RuntimeError};
use floe::state::keyed::KeyedStore;
use floe::state::keygroup::{hash_str, KeyGroupRange};
use floe::state::snapshot::runs_of;
use runtime_support::checkpoints::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn plan(batches: Option<u64>, finals: &FinalCounts) -> Plan {
    let vs = vec![
        counting_source(
            "src",
            Some(1),
            Counting {
                name: "w".into(),
                size: 10,
                batches,
            },
        ),
        count_words("count", &[0], Some(2), finals),
    ];
    Plan::from_vertices("r", PathBuf::from("."), vs, 1, None).unwrap()
}

/// `w3 = 500` in whichever count subtask owns it, the source at 1000, as checkpoint 7.
fn restore(max_parallelism: u32) -> RestoreState {
    let mut r = RestoreState {
        checkpoint_id: CheckpointId(7),
        ..RestoreState::default()
    };
    for s in 0..2 {
        let range = KeyGroupRange::for_subtask(s, 2, max_parallelism);
        let mut store = KeyedStore::new(range, max_parallelism);
        let h = hash_str(b"w3");
        if range.contains(h.key_group(max_parallelism)) {
            *store.get_or_insert(h, b"w3", 0).unwrap() = 500;
        }
        r.operators.insert(
            (OperatorId("count".into()), s),
            RestoredState::Keyed(runs_of(&mut store)),
        );
    }
    r.operators.insert(
        (OperatorId("src".into()), 0),
        RestoredState::Blobs(SourcePosition::Datagen { next_line: 1000 }.restored(0, 1)),
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_state_and_positions_are_in_place_before_the_first_record() {
    let finals = FinalCounts::default();
    let plan = plan(Some(10), &finals);
    let mut opts = JobOptions::new("r");
    opts.restore = Some(restore(plan.max_parallelism));
    runtime::start(plan, opts).unwrap().wait().await.unwrap();
    let finals = finals.lock().unwrap();
    // 100 records from n = 1000: ten of each word, on top of the restored 500.
    assert_eq!(finals.get("w3"), Some(&510));
    assert_eq!(finals.get("w4"), Some(&10));
    assert_eq!(finals.values().sum::<u64>(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbering_continues_after_the_restored_checkpoint() {
    let finals = FinalCounts::default();
    let plan = plan(None, &finals);
    let store = Arc::new(MemoryStore::default());
    let mut opts = JobOptions::new("r");
    opts.restore = Some(restore(plan.max_parallelism));
    opts.checkpointing = Some(checkpointing(store.clone(), Duration::from_millis(10)));
    let mut handle = runtime::start(plan, opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    assert_eq!(
        notices.recv().await,
        Some(CheckpointNotice::Triggered(CheckpointId(8)))
    );
    loop {
        match notices.recv().await.unwrap() {
            CheckpointNotice::Completed(c) => {
                assert_eq!(c.id, CheckpointId(8));
                break;
            }
            CheckpointNotice::Failed { id, reason } => panic!("{id}: {reason}"),
            _ => {}
        }
    }
    handle.stop();
    handle.wait().await.unwrap();
    // Checkpoint 8 holds the restored counts plus exactly the records since position 1000.
    let snaps = store.snapshots(8);
    let Some(OperatorSnapshot::Blob { blob, .. }) = snaps.get(&("src".to_string(), 0)) else {
        panic!("no source position in checkpoint 8");
    };
    let Ok(SourcePosition::Datagen { next_line }) = SourcePosition::from_blob(blob) else {
        panic!("not a datagen position: {blob:?}");
    };
    let next_line = &next_line;
    let keyed: Vec<_> = snaps
        .values()
        .filter_map(|s| s.keyed_values().cloned())
        .collect();
    assert_eq!(keyed.len(), 2);
    let counts = counts_by_prefix(&keyed);
    assert!(*next_line >= 1000);
    assert_eq!(counts["w"], 500 + (next_line - 1000));
    assert_eq!(store.completed_ids()[0], 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_errors_name_the_operator_and_start_nothing() {
    let finals = FinalCounts::default();
    let plan = plan(Some(1), &finals);
    // State for key groups this subtask does not own: the operator refuses it.
    let mut r = restore(plan.max_parallelism);
    let mut wrong = KeyedStore::new(KeyGroupRange { start: 0, end: 0 }, plan.max_parallelism);
    r.operators.insert(
        (OperatorId("count".into()), 1),
        RestoredState::Keyed(runs_of(&mut wrong)),
    );
    let mut opts = JobOptions::new("r");
    opts.restore = Some(r);
    let err = runtime::start(plan, opts).err().unwrap();
    assert!(
        matches!(err, RuntimeError::Restore { subtask: 1, .. }),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("operator \"count\" (subtask 2/2) cannot restore its state: "));

    // State for an operator the job does not have is a bug of the restore mapping.
    let plan = self::plan(Some(1), &finals);
    let mut r = restore(plan.max_parallelism);
    r.operators.insert(
        (OperatorId("gone".into()), 0),
        RestoredState::Blobs(SourcePosition::Datagen { next_line: 1 }.restored(0, 1)),
    );
    let mut opts = JobOptions::new("r");
    opts.restore = Some(r);
    let err = runtime::start(plan, opts).err().unwrap();
    assert!(
        matches!(err, RuntimeError::UnusedRestoreState { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("\"gone\""), "{err}");
}
