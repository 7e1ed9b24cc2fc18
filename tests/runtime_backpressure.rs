//! Bounded memory behind a slow sink: the channels are bounded, so the source waits instead of
//! piling batches up. Measured as the most records ever produced but not yet consumed, not by
//! timing.

mod runtime_support;

use floe::pipeline::plan::Plan;
use floe::runtime::{self, JobOptions};
use runtime_support::*;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_slows_the_source() {
    const BATCH: usize = 10;
    const BATCHES: u64 = 400;
    const CAPACITY: usize = 2;
    let sink = Collected::default();
    let mut spec = NumbersSpec::new(Some(BATCHES), BATCH);
    spec.consumed = Some(sink.consumed.clone());
    let into = sink.clone();
    let vs = vec![
        numbers("source", Some(1), spec.clone()),
        operator("slow", &[0], Some(2), move |ctx| {
            Box::new(Collect {
                into: into.clone(),
                subtask: ctx.subtask,
                delay: Some(Duration::from_micros(500)),
            })
        }),
    ];
    let plan = Plan::from_vertices("slow", PathBuf::from("."), vs, 1, None).unwrap();
    let mut opts = JobOptions::new("slow");
    opts.channel_capacity = CAPACITY;
    runtime::start(plan, opts).unwrap().wait().await.unwrap();

    assert_eq!(sink.consumed.load(Ordering::SeqCst), BATCHES * BATCH as u64);
    // In flight at most: every channel full (2 channels x CAPACITY), one batch in each sink
    // subtask's hands, one being sent by the source.
    let bound = ((2 * CAPACITY + 2 + 1) * BATCH) as u64;
    let seen = spec.max_in_flight.load(Ordering::SeqCst);
    assert!(seen <= bound, "{seen} records in flight, bound {bound}");
    assert!(
        seen >= (CAPACITY * BATCH) as u64,
        "the channels did fill ({seen})"
    );
}
