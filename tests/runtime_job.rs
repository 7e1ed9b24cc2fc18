//! Bounded jobs run to the end: every record arrives once, `finish` runs once per subtask,
//! union and fan-out deliver what they should, the report counts records per operator.

mod runtime_support;

use floe::pipeline::plan::{Plan, Vertex};
use floe::runtime::{self, JobOptions, JobStatus};
use runtime_support::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn plan(vertices: Vec<Vertex>, parallelism: u32) -> Plan {
    Plan::from_vertices("test", PathBuf::from("."), vertices, parallelism, None).unwrap()
}

fn expected(subtasks: u32, batches: u64, size: usize) -> Vec<i64> {
    let mut v: Vec<i64> = (0..subtasks)
        .flat_map(|s| (0..batches * size as u64).map(move |q| record_n(s, q)))
        .collect();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_job_completes_and_finishes_every_subtask_once() {
    let sink = Collected::default();
    let pass_finishes = Arc::new(AtomicUsize::new(0));
    // source x2 -> pass x2 (chained) -> sink x3 (rebalance)
    let vs = vec![
        numbers("source", None, NumbersSpec::new(Some(20), 100)),
        pass("pass", &[0], None, &pass_finishes),
        collect("sink", &[1], Some(3), &sink),
    ];
    let plan = plan(vs, 2);
    assert_eq!(plan.tasks.len(), 2, "{plan}");
    let report = runtime::start(plan, JobOptions::new("test"))
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(report.status, JobStatus::Finished);
    assert_eq!(sink.sorted_ns(), expected(2, 20, 100));
    assert_eq!(pass_finishes.load(Ordering::SeqCst), 2);
    assert_eq!(sink.finishes.load(Ordering::SeqCst), 3);
    let subtasks: BTreeSet<u32> = sink
        .records
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.subtask)
        .collect();
    assert_eq!(
        subtasks,
        BTreeSet::from([0, 1, 2]),
        "rebalance reaches every subtask"
    );
    let source = report.operator("source").unwrap();
    assert_eq!((source.records_in, source.records_out), (0, 4000));
    let pass = report.operator("pass").unwrap();
    assert_eq!((pass.records_in, pass.records_out), (4000, 4000));
    assert_eq!(report.operator("sink").unwrap().records_in, 4000);
    assert_eq!(report.operator("sink").unwrap().parallelism, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn union_of_two_sources_gets_both() {
    let sink = Collected::default();
    let vs = vec![
        numbers("a", Some(1), NumbersSpec::new(Some(3), 10)),
        numbers("b", Some(2), NumbersSpec::new(Some(5), 10)),
        collect("sink", &[0, 1], Some(2), &sink),
    ];
    let plan = plan(vs, 2);
    assert_eq!(plan.tasks[2].inputs.len(), 2);
    let report = runtime::start(plan, JobOptions::new("union"))
        .unwrap()
        .wait()
        .await
        .unwrap();
    let mut want = expected(1, 3, 10);
    want.extend(expected(2, 5, 10));
    want.sort_unstable();
    assert_eq!(sink.sorted_ns(), want);
    assert_eq!(sink.finishes.load(Ordering::SeqCst), 2);
    assert_eq!(report.operator("sink").unwrap().records_in, 130);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_sends_every_record_to_each_reader() {
    let left = Collected::default();
    let right = Collected::default();
    let vs = vec![
        numbers("source", None, NumbersSpec::new(Some(7), 33)),
        collect("left", &[0], None, &left),
        collect("right", &[0], Some(1), &right),
    ];
    let plan = plan(vs, 2);
    assert_eq!(plan.tasks.len(), 3, "fan-out is not chained: {plan}");
    runtime::start(plan, JobOptions::new("fan-out"))
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(left.sorted_ns(), expected(2, 7, 33));
    assert_eq!(right.sorted_ns(), expected(2, 7, 33));
    // Forward: subtask i of the source feeds subtask i of `left`.
    for s in left.records.lock().unwrap().iter() {
        assert_eq!(s.n / 1_000_000, s.subtask as i64, "{s:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn fully_chained_job_runs_as_one_task() {
    let sink = Collected::default();
    let finishes = Arc::new(AtomicUsize::new(0));
    let vs = vec![
        numbers("source", None, NumbersSpec::new(Some(4), 8)),
        pass("a", &[0], None, &finishes),
        pass("b", &[1], None, &finishes),
        collect("sink", &[2], None, &sink),
    ];
    let plan = plan(vs, 1);
    assert_eq!(plan.tasks.len(), 1);
    assert_eq!(plan.tasks[0].name(), "source -> a -> b -> sink");
    let report = runtime::start(plan, JobOptions::new("chain"))
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(sink.sorted_ns(), expected(1, 4, 8));
    assert_eq!(finishes.load(Ordering::SeqCst), 2);
    assert_eq!(report.operators.len(), 4);
}

#[test]
fn starting_outside_a_tokio_runtime_is_an_error() {
    let plan = plan(vec![numbers("s", None, NumbersSpec::new(Some(1), 1))], 1);
    let err = runtime::start(plan, JobOptions::new("x")).err().unwrap();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
