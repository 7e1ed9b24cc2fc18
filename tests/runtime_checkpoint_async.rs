//! Writing a checkpoint never stalls the data path: while the store holds a write, records
//! keep reaching the sink and the checkpoint stays pending; once released it completes.
//! And how a job ends decides what the store is told (finished, cancelled, stopped).

mod runtime_support;

use floe::checkpoint::{CheckpointId, JobTermination};
use floe::pipeline::plan::Plan;
use floe::runtime::{self, CheckpointNotice, JobOptions, JobStatus};
use runtime_support::checkpoints::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

fn plan(batches: Option<u64>, sink: tokio::sync::mpsc::UnboundedSender<usize>) -> Plan {
    let finals = FinalCounts::default();
    let vs = vec![
        counting_source(
            "src",
            Some(2),
            Counting {
                name: "w".into(),
                size: 8,
                batches,
            },
        ),
        count_words("count", &[0], Some(2), &finals),
        notify("sink", &[1], Some(2), sink),
    ];
    Plan::from_vertices("a", PathBuf::from("."), vs, 1, None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_flow_while_a_slow_store_holds_a_checkpoint() {
    let (store, mut entered) = MemoryStore::holding();
    let (sink_tx, mut sink) = unbounded_channel();
    let mut opts = JobOptions::new("a");
    opts.checkpointing = Some(checkpointing(store.clone(), Duration::from_millis(10)));
    let mut handle = runtime::start(plan(None, sink_tx), opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();

    assert_eq!(entered.recv().await, Some(CheckpointId(1)));
    // The write of checkpoint 1 is held now. Forget what the sink got before...
    while sink.try_recv().is_ok() {}
    // ...and see records keep arriving while it is held.
    let mut records = 0;
    for _ in 0..200 {
        records += sink.recv().await.expect("the sink stopped");
    }
    assert!(records >= 200);
    let stats = handle.checkpoint_stats().unwrap();
    assert_eq!(
        (stats.in_progress, stats.completed),
        (1, 0),
        "still pending"
    );
    while let Ok(n) = notices.try_recv() {
        assert!(!matches!(n, CheckpointNotice::Completed(_)), "{n:?}");
    }

    store.release();
    let completed = loop {
        if let CheckpointNotice::Completed(c) = notices.recv().await.unwrap() {
            break c;
        }
    };
    assert_eq!(completed.id, CheckpointId(1));
    assert_eq!(completed.path, PathBuf::from("mem/chk-1"));
    handle.stop();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, JobStatus::Stopped);
    assert!(report.checkpoints.unwrap().completed >= 1);
    assert_eq!(store.terminated(), vec![JobTermination::Suspended]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_tells_the_store_finished() {
    let store = Arc::new(MemoryStore::default());
    let (sink_tx, _sink) = unbounded_channel();
    let mut opts = JobOptions::new("a");
    opts.checkpointing = Some(checkpointing(store.clone(), Duration::from_millis(10)));
    let report = runtime::start(plan(Some(2000), sink_tx), opts)
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(report.status, JobStatus::Finished);
    let stats = report.checkpoints.unwrap();
    assert_eq!(
        stats.failed, 0,
        "ending sources abandon checkpoints, never fail them"
    );
    assert_eq!(store.terminated(), vec![JobTermination::Finished]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_tells_the_store_cancelled() {
    let store = Arc::new(MemoryStore::default());
    let (sink_tx, _sink) = unbounded_channel();
    let mut opts = JobOptions::new("a");
    opts.checkpointing = Some(checkpointing(store.clone(), Duration::from_millis(10)));
    let mut handle = runtime::start(plan(None, sink_tx), opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    while !matches!(notices.recv().await, Some(CheckpointNotice::Completed(_))) {}
    handle.cancel();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, JobStatus::Cancelled);
    assert_eq!(store.terminated(), vec![JobTermination::Cancelled]);
    // Completed checkpoints have every operator's subtasks, the sink's without state.
    let log = store.log.lock().unwrap();
    let m = &log.completed[0];
    assert_eq!(m.checkpoint_id, 1);
    assert_eq!(m.job_id.0, "0123456789abcdef0123456789abcdef");
    let sink = m
        .operators
        .iter()
        .find(|o| o.operator_id == "sink")
        .unwrap();
    assert_eq!(sink.subtasks.len(), 2);
    assert!(sink
        .subtasks
        .iter()
        .all(|s| s.keyed.is_none() && s.operator.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_interval_nothing_runs() {
    let store = Arc::new(MemoryStore::default());
    let (sink_tx, _sink) = unbounded_channel();
    let mut opts = JobOptions::new("a");
    let mut cp = checkpointing(store.clone(), Duration::from_millis(10));
    cp.config.interval = None;
    opts.checkpointing = Some(cp);
    let mut handle = runtime::start(plan(Some(10), sink_tx), opts).unwrap();
    // The driver runs (a savepoint may be requested) but triggers nothing on its own.
    let mut notices = handle.take_checkpoint_notices().unwrap();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.checkpoints.unwrap().triggered, 0);
    assert_eq!(notices.recv().await, None, "no checkpoint was triggered");
    assert!(store.completed_ids().is_empty());
}
