//! `stop()` ends the sources, the pipeline drains and every sink finishes: everything the
//! sources produced reaches the sinks. `cancel()` stops at once without finishing.

mod runtime_support;

use floe::pipeline::plan::Plan;
use floe::runtime::{self, JobHandle, JobOptions, JobStatus};
use runtime_support::*;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn start_unbounded() -> (JobHandle, NumbersSpec, Collected) {
    let spec = NumbersSpec::new(None, 32);
    let sink = Collected::default();
    let vs = vec![
        numbers("source", Some(2), spec.clone()),
        collect("sink", &[0], Some(3), &sink),
    ];
    let plan = Plan::from_vertices("unbounded", PathBuf::from("."), vs, 1, None).unwrap();
    (
        runtime::start(plan, JobOptions::new("unbounded")).unwrap(),
        spec,
        sink,
    )
}

/// Waits (without asserting any timing) until the sink has seen some records; the deadline
/// only turns a hang into a failure.
async fn until_running(handle: &JobHandle) {
    let metrics = handle.metrics();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while metrics.operator("sink").unwrap().records_in() < 1000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never got going"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_the_pipeline_and_finishes_the_sinks() {
    let (handle, spec, sink) = start_unbounded();
    until_running(&handle).await;
    handle.stop();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, JobStatus::Stopped);
    let produced = spec.produced.load(Ordering::SeqCst);
    assert_eq!(
        sink.records.lock().unwrap().len() as u64,
        produced,
        "nothing lost in flight"
    );
    assert_eq!(report.operator("sink").unwrap().records_in, produced);
    assert_eq!(sink.finishes.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_at_once_without_finishing() {
    let (handle, _spec, sink) = start_unbounded();
    until_running(&handle).await;
    let control = handle.control();
    control.cancel();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.status, JobStatus::Cancelled);
    assert_eq!(sink.finishes.load(Ordering::SeqCst), 0);
}
