//! Barriers injected at the sources travel through chains and exchanges: every subtask of
//! every task aligns each barrier once (a keyed subtask gets it from every upstream subtask).

mod runtime_support;

use floe::pipeline::plan::Plan;
use floe::runtime::{
    self, Barrier, BarrierKind, CheckpointId, CheckpointingMode, JobOptions, TaskEvent,
};
use runtime_support::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

async fn barriers_reach_every_subtask(mode: CheckpointingMode) {
    let sink = Collected::default();
    let finishes = Arc::new(AtomicUsize::new(0));
    let mut keyed = collect("count", &[1], Some(3), &sink);
    keyed.keyed = true;
    keyed.key_field = Some("word".into());
    let vs = vec![
        numbers("source", Some(2), NumbersSpec::new(None, 8)),
        pass("split", &[0], Some(2), &finishes),
        keyed,
    ];
    let plan = Plan::from_vertices("b", PathBuf::from("."), vs, 1, None).unwrap();
    assert_eq!(plan.tasks.len(), 2);
    let mut opts = JobOptions::new("b");
    opts.checkpointing_mode = mode;
    opts.task_events = true;
    let mut handle = runtime::start(plan, opts).unwrap();
    let mut events = handle.take_events().unwrap();
    let control = handle.control();
    for n in 1..=3 {
        let barrier = Barrier {
            checkpoint_id: CheckpointId(n),
            timestamp: 0,
            kind: BarrierKind::Checkpoint,
        };
        assert!(control.inject_barrier(barrier));
        let mut seen = BTreeSet::new();
        while seen.len() < 5 {
            let Some(TaskEvent::Snapshot {
                task,
                subtask,
                barrier,
            }) = events.recv().await
            else {
                panic!("events ended");
            };
            assert_eq!(barrier.checkpoint_id, CheckpointId(n));
            assert!(
                seen.insert((task, subtask)),
                "snapshot twice at {task}/{subtask}"
            );
        }
        let want: BTreeSet<(usize, u32)> = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)].into();
        assert_eq!(seen, want);
    }
    handle.stop();
    handle.wait().await.unwrap();
    assert!(events.try_recv().is_err(), "no snapshot beyond those");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aligned_barriers_reach_every_subtask() {
    barriers_reach_every_subtask(CheckpointingMode::ExactlyOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unaligned_at_least_once_barriers_reach_every_subtask() {
    barriers_reach_every_subtask(CheckpointingMode::AtLeastOnce).await;
}
