//! Restarts of an exactly-once `kafka` sink subtask against a real broker (tansu on
//! 127.0.0.1, see `kafka_support`), driven in-process: the transactional ids and the
//! producers a subtask holds stay bounded however often it is restored. Its own test binary:
//! it counts the transactional producers open in the process.

mod common;
mod crash_support;
mod kafka_support;

use floe::checkpoint::{CheckpointId, OperatorSnapshot};
use floe::operators::sinks::kafka::{open_transactional_producers, KafkaSink, KafkaSinkConfig};
use floe::operators::sinks::kafka_txn::ID_POOL;
use floe::operators::sinks::state::SinkState;
use floe::operators::{BuildContext, DeliveryGuarantee, Operator, RestoredState};
use floe::record::{Batch, Column, DataType, Schema, StrColumnBuilder};
use kafka_support::Tansu;
use std::time::{Duration, Instant};

fn sink(t: &Tansu, topic: &str, prefix: &str) -> KafkaSink {
    let c: KafkaSinkConfig = serde_yaml::from_str(&format!(
        "bootstrap-servers: {}\ntopic: {topic}\ntransactional-id-prefix: {prefix}",
        t.bootstrap
    ))
    .unwrap();
    let ctx = BuildContext {
        operator_id: "out".into(),
        subtask: 0,
        parallelism: 1,
        max_parallelism: 128,
        base_dir: ".".into(),
        delta_checkpoints: true,
    };
    let schema = Schema::new([("line", DataType::Str)]);
    let mut s = KafkaSink::new(&c, &schema, &ctx).unwrap();
    s.open(DeliveryGuarantee::ExactlyOnce).unwrap();
    s
}

fn batch(lines: &[String]) -> Batch {
    let mut b = StrColumnBuilder::default();
    for l in lines {
        b.push(l.as_bytes());
    }
    Batch::new(vec![Column::Str(b.finish())])
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// What a read_committed reader sees of `topic` (decided from the log's markers).
fn values(t: &Tansu, topic: &str) -> Vec<String> {
    sorted(
        t.read_committed(topic)
            .into_iter()
            .map(|g| g.value)
            .collect(),
    )
}

/// Awaits the blocking work the sink's last call left pending, as the runtime does.
fn settle(s: &mut KafkaSink) {
    if let Some(work) = s.take_pending() {
        work.wait_blocking().expect("the sink's pending work");
    }
}

fn sink_state(snapshot: Option<OperatorSnapshot>) -> SinkState {
    match snapshot {
        Some(OperatorSnapshot::Blob { blob, .. }) => SinkState::from_blob(&blob).unwrap(),
        other => panic!("expected the sink's state, got {other:?}"),
    }
}

/// Waits until at most `n` transactional producers are open in this process (a dropped sink
/// closes its producers on a thread of its own); the number open at the deadline.
fn open_producers_settle_to(n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_transactional_producers() > n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    open_transactional_producers()
}

/// Thirty crashes and restores of one exactly-once subtask, each leaving a pre-committed
/// transaction the checkpoint lists and an open one after it: every restore commits the
/// first and aborts the second, the subtask's ids stay within its pool (the restore fences
/// the pool, never ids beyond it, so restarts do not add ids), and the producers the
/// restore made to fence them are closed, not kept. Before the pool each restart added
/// three ids and kept a producer for each (a 300-kill soak of kafka_crash made tansu stop
/// answering after 56 restarts).
#[test]
fn restarts_keep_the_transactional_ids_and_producers_bounded() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("loop", 1);
    let mut out = Vec::new();
    let mut expected = Vec::new();
    let mut state: Option<SinkState> = None;
    let mut checkpoint = 0;
    let mut most_open = 0;
    for round in 0..30 {
        let mut s = sink(&t, "loop", "loop");
        if let Some(st) = state.take() {
            s.restore_state(RestoredState::sink(vec![st])).unwrap();
        }
        settle(&mut s);
        // A completed checkpoint, a pre-committed transaction its successor lists, then
        // records after that checkpoint: the crash comes before its completion is heard.
        let committed = lines(&format!("r{round}-a"), 3);
        let listed = lines(&format!("r{round}-b"), 3);
        for (batch_lines, complete) in [(&committed, true), (&listed, false)] {
            s.process(batch(batch_lines), &mut out).unwrap();
            settle(&mut s);
            checkpoint += 1;
            let st = sink_state(s.snapshot_state_at(CheckpointId(checkpoint)).unwrap());
            settle(&mut s);
            if complete {
                s.notify_checkpoint_complete(CheckpointId(checkpoint))
                    .unwrap();
                settle(&mut s);
            }
            state = Some(st);
        }
        expected.extend(committed);
        expected.extend(listed);
        s.process(batch(&lines(&format!("r{round}-lost"), 3)), &mut out)
            .unwrap();
        settle(&mut s);
        most_open = most_open.max(open_transactional_producers());
        let Some(SinkState::KafkaPooled { state: k, id_pool }) = &state else {
            panic!("expected the pooled kafka state, got {state:?}");
        };
        assert_eq!(*id_pool, ID_POOL);
        assert!(k.slots <= ID_POOL, "round {round}: {} slots", k.slots);
        for txn in &k.pending {
            let slot: u32 = txn
                .transactional_id
                .rsplit('-')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(slot < ID_POOL, "round {round}: {}", txn.transactional_id);
        }
        drop(s);
        let open = open_producers_settle_to(0);
        assert_eq!(
            open, 0,
            "round {round}: producers left open after the crash"
        );
    }
    // What a live subtask holds at most: the open transaction's producer, the pre-committed
    // ones and the one made ahead; never one per fenced id.
    assert!(
        most_open <= ID_POOL as usize,
        "{most_open} transactional producers open at once"
    );
    let mut last = sink(&t, "loop", "loop");
    last.restore_state(RestoredState::sink(vec![state.unwrap()]))
        .unwrap();
    settle(&mut last);
    last.end_of_input(floe::operators::EndOfInput::Finished);
    last.finish(&mut out).unwrap();
    settle(&mut last);
    assert_eq!(values(&t, "loop"), sorted(expected));
}
