//! Failed checkpoints count: a store whose writes fail, or a checkpoint that times out, fails
//! the job after `tolerable-failed-checkpoints` + 1 consecutive failures, with Flink's message,
//! and the store is told the job failed.

mod runtime_support;

use floe::checkpoint::{CheckpointId, JobTermination};
use floe::pipeline::plan::Plan;
use floe::runtime::{self, CheckpointNotice, JobError, JobOptions};
use runtime_support::checkpoints::*;
use std::path::PathBuf;
use std::time::Duration;

fn plan() -> Plan {
    let finals = FinalCounts::default();
    let vs = vec![
        counting_source(
            "src",
            Some(2),
            Counting {
                name: "w".into(),
                size: 8,
                batches: None,
            },
        ),
        count_words("count", &[0], Some(2), &finals),
    ];
    Plan::from_vertices("f", PathBuf::from("."), vs, 1, None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_writes_fail_the_job_after_tolerable_plus_one() {
    let store = MemoryStore::failing();
    let mut opts = JobOptions::new("f");
    let mut cp = checkpointing(store.clone(), Duration::from_millis(10));
    cp.config.tolerable_failed = 2;
    opts.checkpointing = Some(cp);
    let mut handle = runtime::start(plan(), opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    let mut failed = Vec::new();
    while failed.len() < 3 {
        let n = notices.recv().await.expect("notices ended");
        match n {
            CheckpointNotice::Failed { id, reason } => {
                assert!(
                    reason.starts_with("Asynchronous task checkpoint failed. Cause: operator \""),
                    "{reason}"
                );
                assert!(reason.contains("disk full (test)"), "{reason}");
                failed.push(id);
            }
            CheckpointNotice::Completed(c) => panic!("checkpoint {} completed", c.id),
            _ => {}
        }
    }
    // The notices end when the driver ended, after the job failed.
    assert_eq!(
        failed,
        vec![CheckpointId(1), CheckpointId(2), CheckpointId(3)]
    );
    let err = handle.wait().await.unwrap_err();
    // No fourth checkpoint: the job failed at the third failure.
    while let Ok(n) = notices.try_recv() {
        assert!(!matches!(n, CheckpointNotice::Triggered(_)), "{n:?}");
    }
    let JobError::Checkpoint { message, .. } = &err else {
        panic!("expected a checkpoint failure, got {err}");
    };
    assert!(
        message.starts_with(
            "Exceeded checkpoint tolerable failure threshold. The latest checkpoint failed due to \
             Asynchronous task checkpoint failed., view the Checkpoint History tab or the Job \
             Manager log to find out why continuous checkpoints failed."
        ),
        "{message}"
    );
    assert!(err
        .to_string()
        .starts_with("job \"f\" failed: Exceeded checkpoint"));
    assert_eq!(store.terminated(), vec![JobTermination::Failed]);
    let aborted = store.log.lock().unwrap().aborted.clone();
    for id in 1..=3 {
        assert!(
            aborted.contains(&CheckpointId(id)),
            "checkpoint {id} aborted in storage"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_resets_the_count() {
    // Checkpoints 1, 3, 5 fail and 2, 4, 6 succeed, decided by the store from the id (not by
    // when the test hears a notice): with tolerable 1 the job never fails.
    let store = MemoryStore::failing_at(|id| id.0 % 2 == 1);
    let mut opts = JobOptions::new("f");
    let mut cp = checkpointing(store.clone(), Duration::from_millis(10));
    cp.config.tolerable_failed = 1;
    opts.checkpointing = Some(cp);
    let mut handle = runtime::start(plan(), opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    let (mut failed, mut completed) = (Vec::new(), Vec::new());
    while completed.len() < 3 {
        match notices.recv().await.expect("the job ended early") {
            CheckpointNotice::Failed { id, reason } => {
                assert!(reason.contains("disk full (test)"), "{reason}");
                failed.push(id.0);
            }
            CheckpointNotice::Completed(c) => completed.push(c.id.0),
            _ => {}
        }
    }
    assert_eq!((failed, completed), (vec![1, 3, 5], vec![2, 4, 6]));
    handle.stop();
    let report = handle.wait().await.unwrap();
    let stats = report.checkpoints.unwrap();
    assert!(stats.completed >= 3 && stats.failed >= 3);
    assert_eq!(store.terminated(), vec![JobTermination::Suspended]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_expires_the_checkpoint_and_fails_the_job() {
    let (store, _entered) = MemoryStore::holding();
    let mut opts = JobOptions::new("f");
    let mut cp = checkpointing(store.clone(), Duration::from_millis(10));
    cp.config.timeout = Duration::from_millis(50);
    opts.checkpointing = Some(cp);
    let mut handle = runtime::start(plan(), opts).unwrap();
    let mut notices = handle.take_checkpoint_notices().unwrap();
    // Every write is held, so checkpoint 1 can only expire. (Whether a write started before
    // the 50 ms ran out depends on the machine's speed, so the test does not ask.)
    let reason = loop {
        match notices
            .recv()
            .await
            .expect("the job ended without a failure")
        {
            CheckpointNotice::Failed { id, reason } => {
                assert_eq!(id, CheckpointId(1));
                break reason;
            }
            CheckpointNotice::Completed(c) => panic!("checkpoint {} completed", c.id),
            _ => {}
        }
    };
    assert_eq!(reason, "Checkpoint expired before completing.");
    // Let the held write thread go, so the runtime can shut down.
    store.release();
    let err = handle.wait().await.unwrap_err();
    assert!(
        err.to_string().contains(
            "The latest checkpoint failed due to Checkpoint expired before completing., view"
        ),
        "{err}"
    );
    assert_eq!(store.terminated(), vec![JobTermination::Failed]);
    assert!(store.completed_ids().is_empty());
}
