//! The `kafka` source against a real broker (tansu on 127.0.0.1, see `kafka_support`),
//! driven in-process through the catalogue's builder: records as raw text, JSON fields and
//! key/value with headers; partitions spread over two subtasks; positions that resume
//! exactly; starting offsets (earliest, latest, committed, timestamp); topics (and so their
//! partitions) that appear while running; offsets committed to the group.

mod kafka_support;

use floe::checkpoint::CheckpointId;
use floe::operators::sources::kafka::owner;
use floe::operators::sources::SourcePosition;
use floe::operators::{BuildContext, OperatorConfig, SourceConfig, SourceEvent};
use floe::record::Value;
use floe::runtime::{CheckpointOutcome, TaskSource};
use kafka_support::{Rec, Tansu};
use rdkafka::producer::BaseRecord;
use rdkafka::producer::Producer;
use std::time::{Duration, Instant};

fn ctx(subtask: u32, parallelism: u32) -> BuildContext {
    BuildContext {
        operator_id: "in".into(),
        subtask,
        parallelism,
        max_parallelism: 128,
        base_dir: ".".into(),
        delta_checkpoints: true,
    }
}

fn config(t: &Tansu, body: &str) -> SourceConfig {
    let yaml = format!("bootstrap-servers: {}\n{body}", t.bootstrap);
    let mapping: serde_yaml::Mapping = serde_yaml::from_str(&yaml).unwrap();
    match OperatorConfig::parse("kafka", false, mapping).unwrap() {
        OperatorConfig::Source(s) => s,
        _ => panic!("expected a source"),
    }
}

fn build(c: &SourceConfig, subtask: u32, p: u32, at: Option<&SourcePosition>) -> TaskSource {
    let restored = at.map(|pos| pos.restored(subtask, p));
    c.build_task(&ctx(subtask, p), restored.as_deref())
        .expect("build")
}

/// One record as text: its fields joined by `|`.
fn text(v: &[Value<'_>]) -> String {
    v.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("|")
}

/// Polls `src` until it ends or `want` rows came (then a little more, to catch extras),
/// or panics after a deadline.
async fn read(src: &mut TaskSource, want: usize) -> (Vec<String>, bool) {
    let mut rows = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ended = false;
    while rows.len() < want {
        assert!(
            Instant::now() < deadline,
            "got {} of {want} records: {rows:?}",
            rows.len()
        );
        match src.next().await.expect("next") {
            SourceEvent::Batch(b) => rows.extend((0..b.len()).map(|i| text(&b.row(i)))),
            SourceEvent::Idle => {}
            SourceEvent::End => {
                ended = true;
                break;
            }
        }
    }
    (rows, ended)
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_records_of_every_partition_in_order_then_the_end() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("raw", 2);
    t.produce_lines("raw", 0, &lines("a", 300));
    t.produce_lines("raw", 1, &lines("b", 200));
    let c = config(&t, "topics: [raw]\nbounded: true");
    let mut src = build(&c, 0, 1, None);
    let (rows, ended) = read(&mut src, usize::MAX).await;
    assert!(ended, "a bounded source ends");
    assert_eq!(rows.len(), 500);
    let a: Vec<String> = rows
        .iter()
        .filter(|r| r.starts_with('a'))
        .cloned()
        .collect();
    assert_eq!(a, lines("a", 300), "one partition's records stay in order");
    match src.position() {
        Some(SourcePosition::Kafka(offsets)) => {
            let got: Vec<(String, i32, i64)> = offsets
                .into_iter()
                .map(|o| (o.topic, o.partition, o.offset))
                .collect();
            assert_eq!(got, [("raw".into(), 0, 300), ("raw".into(), 1, 200)]);
        }
        other => panic!("expected kafka offsets, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_values_become_typed_fields() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("json", 1);
    let recs: Vec<Rec> = [
        r#"{"word":"w1","n":3,"score":1.5,"ok":true,"extra":1}"#,
        r#"{"n":-2,"word":"w2","score":0,"ok":false}"#,
    ]
    .iter()
    .map(|v| Rec::value(v))
    .collect();
    t.produce("json", 0, &recs);
    let c = config(
        &t,
        "topics: [json]\nbounded: true\nformat: json\nfields:\n  - {name: word, type: str}\n  - {name: n, type: int}\n  - {name: score, type: float}\n  - {name: ok, type: bool}",
    );
    let mut src = build(&c, 0, 1, None);
    let (rows, _) = read(&mut src, usize::MAX).await;
    assert_eq!(rows, ["w1|3|1.5|true", "w2|-2|0.0|false"]);

    // A record without a declared field fails with where it is.
    t.produce("json", 0, &[Rec::value(r#"{"word":"w3"}"#)]);
    let mut src = build(&c, 0, 1, None);
    let mut err = None;
    for _ in 0..1000 {
        match src.next().await {
            Err(e) => {
                err = Some(e.to_string());
                break;
            }
            Ok(SourceEvent::End) => break,
            Ok(_) => {}
        }
    }
    let err = err.expect("a record missing a field is an error");
    assert!(
        err.contains("json-0 offset 2") && err.contains("field \"n\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_records_carry_key_headers_and_coordinates() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("kv", 1);
    t.produce(
        "kv",
        0,
        &[
            Rec {
                key: Some("k1".into()),
                value: "v1".into(),
                headers: vec![("trace".into(), "abc".into())],
            },
            Rec::value("v2"),
        ],
    );
    let c = config(&t, "topics: [kv]\nbounded: true\nformat: key-value");
    let mut src = build(&c, 0, 1, None);
    let (rows, _) = read(&mut src, usize::MAX).await;
    assert_eq!(rows.len(), 2);
    let first: Vec<&str> = rows[0].split('|').collect();
    assert_eq!(
        &first[..6],
        ["k1", "v1", r#"{"trace":"abc"}"#, "kv", "0", "0"]
    );
    assert!(
        first[6].parse::<i64>().unwrap() > 1_600_000_000_000,
        "{rows:?}"
    );
    let second: Vec<&str> = rows[1].split('|').collect();
    assert_eq!(&second[..6], ["", "v2", "{}", "kv", "0", "1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subtasks_share_the_partitions_and_resume_from_their_positions() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("spread", 4);
    for p in 0..4 {
        t.produce_lines("spread", p, &lines(&format!("p{p}-"), 50));
    }
    let c = config(&t, "topics: [spread]\ndiscovery-interval: 0");
    let mut all = Vec::new();
    let mut positions = Vec::new();
    for subtask in 0..2 {
        let mut src = build(&c, subtask, 2, None);
        let (rows, _) = read(&mut src, 100).await;
        // Each subtask reads exactly the partitions the assignment gives it.
        let mine: Vec<i32> = (0..4)
            .filter(|p| owner("spread", *p, 2) == subtask)
            .collect();
        assert_eq!(mine.len(), 2);
        for r in &rows {
            let p: i32 = r[1..r.find('-').unwrap()].parse().unwrap();
            assert!(mine.contains(&p), "subtask {subtask} read {r}");
        }
        all.extend(rows);
        positions.push(src.position().expect("a position"));
    }
    all.sort();
    let mut expected: Vec<String> = (0..4).flat_map(|p| lines(&format!("p{p}-"), 50)).collect();
    expected.sort();
    assert_eq!(all, expected);

    // More records; each subtask rebuilt at its position reads exactly the new ones.
    for p in 0..4 {
        t.produce_lines("spread", p, &lines(&format!("p{p}-new"), 10));
    }
    let mut again = Vec::new();
    for (subtask, pos) in positions.iter().enumerate() {
        let mut src = build(&c, subtask as u32, 2, Some(pos));
        let (rows, _) = read(&mut src, 20).await;
        // Nothing more arrives: no record of before the position comes again.
        let (more, _) = read_for(&mut src, Duration::from_millis(300)).await;
        assert!(more.is_empty(), "{more:?}");
        again.extend(rows);
    }
    assert_eq!(again.len(), 40);
    assert!(again.iter().all(|r| r.contains("new")), "{again:?}");
}

/// Everything `src` gives within `d`.
async fn read_for(src: &mut TaskSource, d: Duration) -> (Vec<String>, bool) {
    let until = Instant::now() + d;
    let mut rows = Vec::new();
    while Instant::now() < until {
        match src.next().await.expect("next") {
            SourceEvent::Batch(b) => rows.extend((0..b.len()).map(|i| text(&b.row(i)))),
            SourceEvent::Idle => {}
            SourceEvent::End => return (rows, true),
        }
    }
    (rows, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_offsets_earliest_latest_committed_and_timestamp() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("start", 1);
    let p = t.producer();
    for i in 0..10i64 {
        let v = format!("r{i}");
        p.send(
            BaseRecord::<(), _>::to("start")
                .partition(0)
                .payload(&v)
                .timestamp(1_000_000 + i * 1000),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        // One batch per record: tansu 0.6 answers ListOffsets(latest) with the base offset
        // of the last batch plus one, so only single-record batches give the true end.
        p.flush(Duration::from_secs(10)).unwrap();
    }

    let (rows, _) = read(
        &mut build(&config(&t, "topics: [start]\nbounded: true"), 0, 1, None),
        usize::MAX,
    )
    .await;
    assert_eq!(rows.len(), 10, "earliest: {rows:?}");

    let latest = config(
        &t,
        "topics: [start]\nbounded: true\nstarting-offsets: latest",
    );
    let (rows, ended) = read(&mut build(&latest, 0, 1, None), usize::MAX).await;
    assert!(ended && rows.is_empty(), "latest: {rows:?}");

    let ts = config(
        &t,
        "topics: [start]\nbounded: true\nstarting-offsets: timestamp\nstarting-timestamp: 1006500",
    );
    let (rows, _) = read(&mut build(&ts, 0, 1, None), usize::MAX).await;
    assert_eq!(rows, ["r7", "r8", "r9"], "timestamp");

    // The group's committed offset: commit one with an independent client first.
    commit(&t, "g-start", "start", 0, 4);
    let committed = config(
        &t,
        "topics: [start]\nbounded: true\nstarting-offsets: committed\ngroup-id: g-start\ncommit-offsets: false",
    );
    let (rows, _) = read(&mut build(&committed, 0, 1, None), usize::MAX).await;
    assert_eq!(rows, lines("r", 10)[4..].to_vec(), "committed");

    // No committed offset for this group: from the earliest.
    let none = config(
        &t,
        "topics: [start]\nbounded: true\nstarting-offsets: committed\ngroup-id: g-none",
    );
    let (rows, _) = read(&mut build(&none, 0, 1, None), usize::MAX).await;
    assert_eq!(rows.len(), 10, "committed without a commit");
}

fn commit(t: &Tansu, group: &str, topic: &str, partition: i32, offset: i64) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &t.bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))
        .unwrap();
    c.commit(&tpl, CommitMode::Sync).expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_matching_topics_and_their_partitions_are_picked_up() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("grow-a", 1);
    t.produce_lines("grow-a", 0, &lines("a0-", 5));
    let c = config(&t, "topic-pattern: 'grow-.*'\ndiscovery-interval: 100 ms");
    let mut src = build(&c, 0, 1, None);
    let (rows, _) = read(&mut src, 5).await;
    assert_eq!(rows, lines("a0-", 5));

    // tansu 0.6 has no CreatePartitions ("UnsupportedFeature"): a new topic of two
    // partitions stands in for new partitions (the same discovery finds both).
    t.create_topic("grow-c", 1);
    t.produce_lines("grow-c", 0, &lines("a1-", 5));
    t.create_topic("grow-b", 1);
    t.produce_lines("grow-b", 0, &lines("b0-", 5));
    t.create_topic("other", 1);
    t.produce_lines("other", 0, &lines("x-", 5));
    let (mut rows, _) = read(&mut src, 10).await;
    rows.sort();
    let mut expected = [lines("a1-", 5), lines("b0-", 5)].concat();
    expected.sort();
    assert_eq!(
        rows, expected,
        "a new partition and a new topic, from their start"
    );
    let (more, _) = read_for(&mut src, Duration::from_millis(300)).await;
    assert!(
        more.is_empty(),
        "a topic not matching the pattern is not read: {more:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_checkpoints_offsets_are_committed_to_the_group_and_an_aborted_ones_never() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("mon", 1);
    t.produce_lines("mon", 0, &lines("m", 20));
    let c = config(&t, "topics: [mon]\ngroup-id: g-mon");
    let mut src = build(&c, 0, 1, None);
    let offset_of = |p: Option<SourcePosition>| match p {
        Some(SourcePosition::Kafka(o)) => o[0].offset,
        other => panic!("expected a kafka position, got {other:?}"),
    };
    let _ = read(&mut src, 20).await;
    assert_eq!(offset_of(src.snapshot_position(CheckpointId(1))), 20);
    t.produce_lines("mon", 0, &lines("n", 10));
    let _ = read(&mut src, 10).await;
    assert_eq!(offset_of(src.snapshot_position(CheckpointId(2))), 30);
    // Nothing is committed before a completion.
    assert_eq!(t.committed("g-mon", "mon", 0), None);

    // Checkpoint 1 completes: its offsets, not the newer snapshot's, go to the group.
    src.notify(CheckpointOutcome::Completed(CheckpointId(1)))
        .unwrap();
    wait_committed(&t, &mut src, 20).await;

    // Checkpoint 2 is aborted and 3 completes: 3's offsets are committed, 2's never were.
    src.notify(CheckpointOutcome::Aborted(CheckpointId(2)))
        .unwrap();
    t.produce_lines("mon", 0, &lines("o", 5));
    let _ = read(&mut src, 5).await;
    assert_eq!(offset_of(src.snapshot_position(CheckpointId(3))), 35);
    assert_eq!(
        t.committed("g-mon", "mon", 0),
        Some(20),
        "an aborted checkpoint's offsets"
    );
    src.notify(CheckpointOutcome::Completed(CheckpointId(3)))
        .unwrap();
    wait_committed(&t, &mut src, 35).await;
}

/// Waits until the group's committed offset of mon-0 is `want`, polling the source meanwhile
/// (librdkafka serves the asynchronous commit's answer in the consumer's poll).
async fn wait_committed(t: &Tansu, src: &mut TaskSource, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.committed("g-mon", "mon", 0) != Some(want) {
        assert!(
            Instant::now() < deadline,
            "offset {want} never committed (committed: {:?})",
            t.committed("g-mon", "mon", 0)
        );
        let _ = read_for(src, Duration::from_millis(50)).await;
    }
}

/// A restored partition that the source cannot read now (its topic is gone) keeps its offset
/// in every later position, so that a later restore still resumes it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_partition_not_read_now_keeps_its_offset() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("here", 1);
    t.produce_lines("here", 0, &lines("h", 5));
    let c = config(&t, "topics: [here, gone]\ndiscovery-interval: 0");
    let offset = |topic: &str, partition: i32, offset: i64| floe::operators::sources::KafkaOffset {
        topic: topic.into(),
        partition,
        offset,
    };
    let at = SourcePosition::Kafka(vec![offset("gone", 0, 7), offset("here", 0, 2)]);
    let mut src = build(&c, 0, 1, Some(&at));
    let (rows, _) = read(&mut src, 3).await;
    assert_eq!(rows, lines("h", 5)[2..].to_vec());
    let Some(SourcePosition::Kafka(now)) = src.position() else {
        panic!("expected a kafka position");
    };
    assert!(now.contains(&offset("here", 0, 5)), "{now:?}");
    assert!(
        now.iter().any(|o| o.topic == "gone" && o.offset == 7),
        "the unread partition keeps its restored offset: {now:?}"
    );
}
