//! One slow broker stalls no other job: `floe serve` (the real binary) runs two pipelines,
//! one writing exactly-once to a Kafka broker behind a proxy that the test freezes (the
//! broker stops answering, its connections stay open), the other a plain pipeline with
//! checkpoints. While the broker is silent, the Kafka job's checkpoints stop, and the other
//! pipeline's keep completing and the REST API keeps answering: the Kafka sink's flushes,
//! commits and broker calls wait on threads of their own, not on the async workers that
//! carry every job and the REST API (with 2 cores there are 2 workers, and the Kafka job's
//! two sink subtasks, each waiting for room in its full queue, would otherwise block both).

mod kafka_support;
mod serve_support;

use kafka_support::Tansu;
use serve_support::{wait_for, Layout, Serve};

fn completed(serve: &Serve, job: &str) -> u64 {
    serve.get(&format!("/jobs/{job}/checkpoints"))["counts"]["completed"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_silent_broker_stalls_neither_the_other_pipelines_checkpoints_nor_rest() {
    let Some(t) = Tansu::start_behind_proxy() else {
        return;
    };
    let proxy = t.proxy.as_ref().expect("started behind the proxy");
    t.create_topic("frozen-out", 2);
    let layout = Layout::new("parallelism.default: 2\n");
    std::fs::write(
        layout.path("pipelines/plain.yaml"),
        "name: plain
operators:
  - id: source
    type: datagen
    rate: 500
  - id: out
    type: blackhole
    inputs: [source]
",
    )
    .unwrap();
    std::fs::write(
        layout.path("pipelines/kafka.yaml"),
        format!(
            "name: to-kafka
operators:
  - id: source
    type: datagen
    rate: 2000
  - id: out
    type: kafka
    inputs: [source]
    bootstrap-servers: {}
    topic: frozen-out
    transactional-id-prefix: frozen
    # A short producer queue: once the broker is silent, every subtask's sends find it full
    # within a fraction of a second and wait, as the flushes and commits do.
    properties: {{queue.buffering.max.messages: 500}}
",
            t.bootstrap
        ),
    )
    .unwrap();
    let serve = Serve::start(&layout, &[]);
    let plain = serve.wait_running("plain.yaml");
    let kafka = serve.wait_running("kafka.yaml");
    wait_for("the Kafka job's first checkpoints", || {
        completed(&serve, &kafka) >= 2
    });

    proxy.freeze();
    // A checkpoint whose pre-commit flushed before the freeze may still complete.
    let kafka_at = completed(&serve, &kafka) + 1;
    let plain_at = completed(&serve, &plain);
    // Every `completed` is a REST call: each one answering is the REST half of the proof.
    wait_for(
        "20 more checkpoints of the plain pipeline while the broker is silent",
        || completed(&serve, &plain) >= plain_at + 20,
    );
    let kafka_now = completed(&serve, &kafka);
    assert!(
        kafka_now <= kafka_at,
        "the broker was not silent: the Kafka job completed checkpoints {kafka_at}..{kafka_now}"
    );
    assert_eq!(serve.jobs().len(), 2, "REST lists both jobs");

    proxy.thaw();
    serve.kill9();
}
