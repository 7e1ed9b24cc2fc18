//! The hash exchange puts every key on the subtask Flink's formula names:
//! `operator_index(murmur(hashCode(key)) % maxParallelism, parallelism, maxParallelism)`.

mod runtime_support;

use floe::pipeline::plan::{Exchange, Plan, Vertex};
use floe::runtime::{self, JobOptions};
use floe::state::keygroup::{hash_int, hash_str, operator_index};
use runtime_support::*;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn keyed(mut v: Vertex, field: &str) -> Vertex {
    v.keyed = true;
    v.key_field = Some(field.into());
    v
}

async fn run(field: &str, sink_parallelism: u32, max_parallelism: Option<u32>) -> (Collected, u32) {
    let sink = Collected::default();
    let vs = vec![
        numbers("source", Some(3), NumbersSpec::new(Some(10), 64)),
        keyed(collect("count", &[0], Some(sink_parallelism), &sink), field),
    ];
    let plan = Plan::from_vertices("hash", PathBuf::from("."), vs, 1, max_parallelism).unwrap();
    assert!(matches!(
        plan.tasks[1].inputs[0].exchange,
        Exchange::Hash { .. }
    ));
    let max = plan.max_parallelism;
    runtime::start(plan, JobOptions::new("hash"))
        .unwrap()
        .wait()
        .await
        .unwrap();
    (sink, max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_keys_land_on_the_subtask_of_their_key_group() {
    let (sink, max) = run("word", 4, None).await;
    assert_eq!(max, 128);
    let records = sink.records.lock().unwrap();
    assert_eq!(records.len(), 3 * 10 * 64);
    let mut used = BTreeSet::new();
    for s in records.iter() {
        let group = hash_str(s.word.as_bytes()).key_group(max);
        assert_eq!(s.subtask, operator_index(group, 4, max), "{s:?}");
        used.insert(s.subtask);
    }
    assert!(used.len() > 1, "50 words spread over several subtasks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int_keys_with_a_given_max_parallelism() {
    let (sink, max) = run("n", 3, Some(16)).await;
    assert_eq!(max, 16);
    let records = sink.records.lock().unwrap();
    assert_eq!(records.len(), 3 * 10 * 64);
    for s in records.iter() {
        let group = hash_int(s.n).key_group(16);
        assert_eq!(s.subtask, operator_index(group, 3, 16), "{s:?}");
    }
}
