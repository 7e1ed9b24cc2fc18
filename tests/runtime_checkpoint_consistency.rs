//! Two sources count into one keyed operator. Under EXACTLY_ONCE every completed checkpoint
//! is consistent: the counts in the operator's snapshot are exactly the records the sources
//! had emitted at their barriers (their positions). Under AT_LEAST_ONCE no input channel is
//! ever held back, and the counts hold at least those records.

mod runtime_support;

use floe::operators::sources::SourcePosition;
use floe::pipeline::plan::Plan;
use floe::runtime::{self, CheckpointNotice, CheckpointingMode, JobOptions, JobStatus};
use runtime_support::checkpoints::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

struct Run {
    store: Arc<MemoryStore>,
    channels_blocked: u64,
}

/// Runs `a, b -> count (x2, keyed) ` until `n` checkpoints completed, then stops it.
async fn run(mode: CheckpointingMode, n: usize) -> Run {
    let finals = FinalCounts::default();
    let spec = |name: &str, size| Counting {
        name: name.into(),
        size,
        batches: None,
    };
    let vs = vec![
        counting_source("a", Some(1), spec("a", 16)),
        // A different batch size, so the two inputs do not move in step.
        counting_source("b", Some(1), spec("b", 5)),
        count_words("count", &[0, 1], Some(2), &finals),
    ];
    let plan = Plan::from_vertices("two", PathBuf::from("."), vs, 1, None).unwrap();
    let store = Arc::new(MemoryStore::default());
    let mut opts = JobOptions::new("two");
    opts.checkpointing_mode = mode;
    let mut cp = checkpointing(store.clone(), Duration::from_millis(10));
    cp.config.mode = mode;
    opts.checkpointing = Some(cp);
    let mut handle = runtime::start(plan, opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    let mut completed = 0;
    while completed < n {
        match notices.recv().await.expect("notices ended") {
            CheckpointNotice::Completed(_) => completed += 1,
            CheckpointNotice::Failed { id, reason } => panic!("checkpoint {id} failed: {reason}"),
            _ => {}
        }
    }
    let metrics = handle.metrics();
    handle.stop();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, JobStatus::Stopped);
    let stats = report.checkpoints.unwrap();
    assert!(stats.completed >= n as u64);
    assert_eq!(stats.failed, 0);
    Run {
        store,
        channels_blocked: metrics.channels_blocked(),
    }
}

/// One completed checkpoint: its id, source positions by name, counts by source name.
type View = (u64, BTreeMap<String, u64>, BTreeMap<String, u64>);

fn checkpoint_views(store: &MemoryStore) -> Vec<View> {
    let log = store.log.lock().unwrap();
    let mut out = Vec::new();
    for m in &log.completed {
        // Every subtask of every operator acked: the metadata lists them all.
        let ops: Vec<(&str, u32, usize)> = m
            .operators
            .iter()
            .map(|o| (o.operator_id.as_str(), o.parallelism, o.subtasks.len()))
            .collect();
        assert_eq!(ops, vec![("a", 1, 1), ("b", 1, 1), ("count", 2, 2)]);
        let mut positions = BTreeMap::new();
        for o in &m.operators[..2] {
            let position = o.subtasks[0]
                .operator
                .as_ref()
                .map(|b| SourcePosition::from_blob(b).unwrap());
            let Some(SourcePosition::Datagen { next_line }) = &position else {
                panic!(
                    "source {} has no position in checkpoint {}",
                    o.operator_id, m.checkpoint_id
                );
            };
            positions.insert(o.operator_id.clone(), *next_line);
        }
        assert!(m.operators[2].subtasks.iter().all(|s| s.keyed.is_some()));
        let keyed: Vec<_> = log
            .writes
            .iter()
            .filter(|w| w.checkpoint_id.0 == m.checkpoint_id && w.operator_id.0 == "count")
            .filter_map(|w| w.state.keyed_values().cloned())
            .collect();
        assert_eq!(keyed.len(), 2, "one keyed snapshot per count subtask");
        let counts = counts_by_prefix(&keyed);
        out.push((m.checkpoint_id, positions, counts));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_snapshots_hold_exactly_the_records_before_the_barriers() {
    let run = run(CheckpointingMode::ExactlyOnce, 4).await;
    let views = checkpoint_views(&run.store);
    assert!(views.len() >= 4);
    let ids: Vec<u64> = views.iter().map(|v| v.0).collect();
    assert_eq!(&ids[..4], &[1, 2, 3, 4], "ids start at 1, in order");
    for (id, positions, counts) in &views {
        for name in ["a", "b"] {
            assert_eq!(
                counts.get(name).copied().unwrap_or(0),
                positions[name],
                "checkpoint {id}: counts of {name} vs its position"
            );
        }
    }
    assert!(
        run.channels_blocked > 0,
        "aligned barriers hold inputs back"
    );
    assert_eq!(
        run.store.terminated(),
        vec![floe::checkpoint::JobTermination::Suspended]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_never_holds_an_input_back() {
    let run = run(CheckpointingMode::AtLeastOnce, 4).await;
    assert_eq!(
        run.channels_blocked, 0,
        "no channel blocked under AT_LEAST_ONCE"
    );
    let views = checkpoint_views(&run.store);
    assert!(views.len() >= 4);
    for (id, positions, counts) in &views {
        for name in ["a", "b"] {
            assert!(
                counts.get(name).copied().unwrap_or(0) >= positions[name],
                "checkpoint {id}: at least every record before the barrier of {name}"
            );
        }
    }
}
