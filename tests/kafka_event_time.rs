//! Event time on the `kafka` source against a real broker (tansu, see `kafka_support`):
//! records carry the time of a field, and watermarks are per partition, as Flink's Kafka
//! source: a subtask reading two partitions is only as far as the slower one, and a
//! partition silent for `idle-timeout` stops holding it back.
//!
//! Driven in-process through the catalogue's builder, so the test decides exactly which
//! records the source has read before it asks for the watermark.

mod kafka_support;

use floe::operators::event_time::WatermarkEvent;
use floe::operators::{BuildContext, OperatorConfig, SourceConfig, SourceEvent};
use floe::runtime::TaskSource;
use kafka_support::{Rec, Tansu};
use std::time::{Duration, Instant};

fn config(t: &Tansu, body: &str) -> SourceConfig {
    let yaml = format!("bootstrap-servers: {}\n{body}", t.bootstrap);
    let mapping: serde_yaml::Mapping = serde_yaml::from_str(&yaml).unwrap();
    match OperatorConfig::parse("kafka", false, mapping).unwrap() {
        OperatorConfig::Source(s) => s,
        _ => panic!("expected a source"),
    }
}

fn build(c: &SourceConfig) -> TaskSource {
    let ctx = BuildContext {
        operator_id: "in".into(),
        subtask: 0,
        parallelism: 1,
        max_parallelism: 128,
        base_dir: ".".into(),
        delta_checkpoints: true,
    };
    c.build_task(&ctx, None).expect("build")
}

fn events(user: &str, times: &[i64]) -> Vec<Rec> {
    times
        .iter()
        .map(|t| Rec::value(&format!(r#"{{"user":"{user}","ts":{t}}}"#)))
        .collect()
}

/// Reads `want` records (their timestamps) and every watermark event the source reported
/// meanwhile; a deadline only guards against a hang.
async fn read(src: &mut TaskSource, want: usize) -> (Vec<i64>, Vec<WatermarkEvent>) {
    let (mut times, mut marks) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while times.len() < want {
        assert!(Instant::now() < deadline, "got {times:?} of {want} records");
        if let SourceEvent::Batch(b) = src.next().await.expect("next") {
            times.extend_from_slice(b.timestamps().expect("records carry their time"));
        }
        marks.extend(src.watermark());
    }
    (times, marks)
}

const SOURCE: &str = "topics: [ev]\nformat: json\nfields:\n  - {name: user, type: str}\n  - {name: ts, type: int}\nevent-time: {field: ts, max-out-of-orderness: 0 ms";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watermark_is_the_slowest_partitions() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("ev", 2);
    t.produce("ev", 0, &events("a", &[1000, 2000, 3000, 4000, 5000]));
    t.produce("ev", 1, &events("b", &[500]));
    let mut src = build(&config(&t, &format!("{SOURCE}}}")));
    let (mut times, marks) = read(&mut src, 6).await;
    times.sort();
    assert_eq!(times, [500, 1000, 2000, 3000, 4000, 5000]);
    // One watermark for the subtask would be 4999; partition 1 holds it at 500 - 1.
    assert_eq!(
        marks.last(),
        Some(&WatermarkEvent::Advance(499)),
        "{marks:?}"
    );
    assert!(
        marks
            .iter()
            .all(|m| matches!(m, WatermarkEvent::Advance(w) if *w <= 499)),
        "{marks:?}"
    );

    // Partition 1 catches up past partition 0: now partition 0 holds it.
    t.produce("ev", 1, &events("b", &[7000]));
    let (_, marks) = read(&mut src, 1).await;
    assert_eq!(marks, [WatermarkEvent::Advance(4999)]);
}

/// Polls `src` until it reports `want`; returns every watermark event reported on the way.
/// A deadline only guards against a hang.
async fn until(src: &mut TaskSource, want: WatermarkEvent) -> Vec<WatermarkEvent> {
    let mut marks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marks.contains(&want) {
        assert!(Instant::now() < deadline, "no {want:?}: {marks:?}");
        src.next().await.expect("next");
        marks.extend(src.watermark());
    }
    marks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_partition_stops_holding_time_back_after_the_idle_timeout() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("ev", 2);
    let mut src = build(&config(&t, &format!("{SOURCE}, idle-timeout: 1 s}}")));
    // Nothing yet: both partitions go idle after the timeout, and with them the subtask.
    assert_eq!(
        until(&mut src, WatermarkEvent::Idle).await,
        [WatermarkEvent::Idle]
    );
    // Partition 0 has records, partition 1 stays silent and idle: partition 0 alone moves
    // time. (Records first and the idle partition after, as this test had it, raced the
    // timeout: a poll delayed past it on a loaded machine found both idle.)
    t.produce("ev", 0, &events("a", &[1000, 2000, 3000]));
    let marks = until(&mut src, WatermarkEvent::Advance(2999)).await;
    // Partition 0 may go idle between two fetches of its records, but time never passes its.
    assert!(
        marks.iter().all(|m| match m {
            WatermarkEvent::Advance(w) => *w <= 2999,
            WatermarkEvent::Idle => true,
        }),
        "{marks:?}"
    );
}

#[test]
fn the_time_field_is_checked_against_the_format() {
    let yaml = "bootstrap-servers: 127.0.0.1:9\ntopics: [ev]\nevent-time: {field: ts}";
    let mapping: serde_yaml::Mapping = serde_yaml::from_str(yaml).unwrap();
    let c = OperatorConfig::parse("kafka", false, mapping).unwrap();
    let err = c.spec().output_schema(None).unwrap_err();
    assert_eq!(err[0].field, "event-time.field", "{err:?}");
    // key-value records carry their Kafka timestamp as `timestamp`.
    let yaml = "bootstrap-servers: 127.0.0.1:9\ntopics: [ev]\nformat: key-value\nevent-time: {field: timestamp}";
    let mapping: serde_yaml::Mapping = serde_yaml::from_str(yaml).unwrap();
    let c = OperatorConfig::parse("kafka", false, mapping).unwrap();
    assert!(c.spec().output_schema(None).is_ok());
}
