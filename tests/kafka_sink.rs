//! The `kafka` sink against a real broker (tansu on 127.0.0.1, see `kafka_support`):
//! the two-phase commit driven in-process step by step (pre-commit at a snapshot, commit on
//! completion, a restore committing the checkpoint's transaction and aborting what came
//! after), and the real binary writing with at-least-once and with exactly-once through a
//! kill -9 and a restore.

mod common;
mod crash_support;
mod kafka_support;

use floe::checkpoint::{CheckpointId, OperatorSnapshot};
use floe::operators::sinks::kafka::{KafkaSink, KafkaSinkConfig};
use floe::operators::sinks::kafka_txn::ID_POOL;
use floe::operators::sinks::state::SinkState;
use floe::operators::sources::datagen::{line_text, DatagenConfig};
use floe::operators::{BuildContext, DeliveryGuarantee, Operator, RestoredState};
use floe::record::{Batch, Column, DataType, Schema, StrColumnBuilder};
use kafka_support::Tansu;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn ctx() -> BuildContext {
    BuildContext {
        operator_id: "out".into(),
        subtask: 0,
        parallelism: 1,
        max_parallelism: 128,
        base_dir: ".".into(),
        delta_checkpoints: true,
    }
}

fn schema() -> Schema {
    Schema::new([("line", DataType::Str)])
}

fn batch(lines: &[String]) -> Batch {
    let mut b = StrColumnBuilder::default();
    for l in lines {
        b.push(l.as_bytes());
    }
    Batch::new(vec![Column::Str(b.finish())])
}

fn sink(t: &Tansu, topic: &str, prefix: &str) -> KafkaSink {
    sink_with(t, topic, prefix, DeliveryGuarantee::ExactlyOnce)
}

fn sink_with(t: &Tansu, topic: &str, prefix: &str, guarantee: DeliveryGuarantee) -> KafkaSink {
    let c: KafkaSinkConfig = serde_yaml::from_str(&format!(
        "bootstrap-servers: {}\ntopic: {topic}\ntransactional-id-prefix: {prefix}",
        t.bootstrap
    ))
    .unwrap();
    let mut s = KafkaSink::new(&c, &schema(), &ctx()).unwrap();
    s.open(guarantee).unwrap();
    s
}

/// Waits until the log of `topic` holds `n` data records (committed, aborted or open).
fn wait_logged(t: &Tansu, topic: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.log_counts(topic).1 < n {
        assert!(
            Instant::now() < deadline,
            "{n} records never reached {topic}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// The values of `topic`: every record, or what a read_committed reader sees (decided from
/// the log's markers, see `kafka_support::committed`).
fn values(t: &Tansu, topic: &str, read_committed: bool) -> Vec<String> {
    let got = if read_committed {
        t.read_committed(topic)
    } else {
        t.read_all(topic, false)
    };
    let mut v: Vec<String> = got.into_iter().map(|g| g.value).collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Awaits the blocking work the sink's last call left pending, as the runtime does after
/// every call (the first time also the work of its start: a restore or a fresh start).
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

#[test]
fn transactions_become_visible_on_completion_and_a_restore_commits_or_aborts() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("eo", 1);
    let mut out = Vec::new();

    // Checkpoint 1 pre-commits a, then completes: a is visible to read_committed.
    let mut s = sink(&t, "eo", "unit");
    settle(&mut s);
    s.process(batch(&lines("a", 10)), &mut out).unwrap();
    settle(&mut s);
    let _ = sink_state(s.snapshot_state_at(CheckpointId(1)).unwrap());
    settle(&mut s);
    assert_eq!(
        values(&t, "eo", true),
        Vec::<String>::new(),
        "pre-committed only"
    );
    s.notify_checkpoint_complete(CheckpointId(1)).unwrap();
    settle(&mut s);
    assert_eq!(values(&t, "eo", true), sorted(lines("a", 10)));

    // Checkpoint 2 pre-commits b; c is written after it; the process dies before the
    // completion of 2 reaches the sink (the sink is dropped without a commit).
    s.process(batch(&lines("b", 10)), &mut out).unwrap();
    settle(&mut s);
    let state2 = sink_state(s.snapshot_state_at(CheckpointId(2)).unwrap());
    settle(&mut s);
    s.process(batch(&lines("c", 10)), &mut out).unwrap();
    settle(&mut s);
    match &state2 {
        SinkState::KafkaPooled { state: k, id_pool } => {
            assert_eq!(*id_pool, ID_POOL);
            assert_eq!(k.pending.len(), 1);
            // Slot 1: slot 0's transaction is committed, and its id waits until a checkpoint
            // taken after the commit completes (so a restore of checkpoint 1 still finds it).
            assert_eq!(k.pending[0].transactional_id, "unit-0-1");
            assert!(k.pending[0].producer_id >= 0);
        }
        other => panic!("expected the kafka sink's state, got {other:?}"),
    }
    // c reaches the broker (librdkafka sends after `linger.ms`) in the open transaction.
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.log_counts("eo").1 < 30 {
        assert!(
            Instant::now() < deadline,
            "b and c never reached the broker"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(t.log_counts("eo").0, 10, "b and c are not committed");
    drop(s);

    // A restore of checkpoint 2 commits b (the checkpoint completed) and aborts c; later
    // records are visible past the aborted transaction (the last stable offset moved on).
    let mut r = sink(&t, "eo", "unit");
    r.restore_state(RestoredState::sink(vec![state2.clone()]))
        .unwrap();
    settle(&mut r);
    r.process(batch(&lines("d", 5)), &mut out).unwrap();
    settle(&mut r);
    r.end_of_input(floe::operators::EndOfInput::Finished);
    r.finish(&mut out).unwrap();
    settle(&mut r);
    let expected = sorted([lines("a", 10), lines("b", 10), lines("d", 5)].concat());
    assert_eq!(values(&t, "eo", true), expected);

    // Restoring checkpoint 2 again (a second failure) does not commit b twice: the broker
    // answers the commit as done before (its id was not initialised again since).
    let mut again = sink(&t, "eo", "unit");
    again
        .restore_state(RestoredState::sink(vec![state2]))
        .unwrap();
    settle(&mut again);
    assert_eq!(values(&t, "eo", true), expected);
}

/// An exactly-once checkpoint restored by an at-least-once sink (the delivery guarantee
/// changed): its transaction is committed and the one left open after it is aborted, so that
/// read_committed readers (which stop at the first open transaction) see what comes next.
#[test]
fn an_at_least_once_restore_commits_the_checkpoint_and_aborts_what_followed() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("mixed", 1);
    let mut out = Vec::new();
    let mut s = sink(&t, "mixed", "mixed");
    settle(&mut s);
    s.process(batch(&lines("a", 10)), &mut out).unwrap();
    settle(&mut s);
    let state1 = sink_state(s.snapshot_state_at(CheckpointId(1)).unwrap());
    settle(&mut s);
    s.process(batch(&lines("c", 10)), &mut out).unwrap();
    settle(&mut s);
    wait_logged(&t, "mixed", 20);
    drop(s);

    let mut r = sink_with(&t, "mixed", "mixed", DeliveryGuarantee::AtLeastOnce);
    r.restore_state(RestoredState::sink(vec![state1])).unwrap();
    settle(&mut r);
    r.process(batch(&lines("d", 5)), &mut out).unwrap();
    settle(&mut r);
    r.end_of_input(floe::operators::EndOfInput::Finished);
    r.finish(&mut out).unwrap();
    settle(&mut r);
    let expected = sorted([lines("a", 10), lines("d", 5)].concat());
    assert_eq!(values(&t, "mixed", true), expected);
    // A real read_committed consumer: with c still open it would stop before d.
    let seen: Vec<String> = t
        .read_all("mixed", true)
        .into_iter()
        .map(|g| g.value)
        .collect();
    assert!(
        lines("d", 5).iter().all(|d| seen.contains(d)),
        "d is visible to read_committed: {seen:?}"
    );
}

/// The log lines of every thread of this test binary from now on (the sink logs from the
/// threads its broker calls run on).
fn capture_logs() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> =
        std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
    .clone()
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Restoring a checkpoint older than the newest: its transaction was committed and its id
/// used again since, so the coordinator refuses the commit (`PRODUCER_FENCED`; tansu closes
/// the connection instead, which the test's proxy turns into Kafka's answer). The refusal is
/// final, so it is logged as an error and the restore goes on: the ids are cleaned up and
/// new output is committed.
#[test]
fn a_refused_commit_of_an_old_checkpoint_is_logged_and_the_restore_goes_on() {
    let Some(t) = Tansu::start_with_kafka_errors() else {
        return;
    };
    t.create_topic("old", 1);
    let mut out = Vec::new();
    let mut s = sink(&t, "old", "old");
    settle(&mut s);
    let mut state1 = None;
    // Three checkpoints, each completed: slot 0 (checkpoint 1's) is free again after
    // checkpoint 2 and initialised anew for checkpoint 3's successor.
    for (c, prefix) in [(1, "a"), (2, "b"), (3, "c")] {
        s.process(batch(&lines(prefix, 5)), &mut out).unwrap();
        settle(&mut s);
        let state = sink_state(s.snapshot_state_at(CheckpointId(c)).unwrap());
        settle(&mut s);
        s.notify_checkpoint_complete(CheckpointId(c)).unwrap();
        settle(&mut s);
        state1.get_or_insert(state);
    }
    // The next transaction opens in slot 0, whose id is initialised anew now (a new epoch).
    s.process(batch(&lines("e", 5)), &mut out).unwrap();
    settle(&mut s);
    drop(s);
    let committed = sorted([lines("a", 5), lines("b", 5), lines("c", 5)].concat());
    assert_eq!(values(&t, "old", true), committed);

    let logs = capture_logs();
    let mut r = sink(&t, "old", "old");
    r.restore_state(RestoredState::sink(vec![state1.unwrap()]))
        .unwrap();
    settle(&mut r);
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(
        logged.contains("ERROR")
            && logged.contains("refused to commit a transaction of the restored checkpoint")
            && logged.contains("old-0-0")
            && logged.contains("PRODUCER_FENCED"),
        "the refusal is logged as an error naming the transaction: {logged}"
    );
    r.process(batch(&lines("d", 5)), &mut out).unwrap();
    settle(&mut r);
    r.end_of_input(floe::operators::EndOfInput::Finished);
    r.finish(&mut out).unwrap();
    settle(&mut r);
    let expected = sorted([lines("a", 5), lines("b", 5), lines("c", 5), lines("d", 5)].concat());
    assert_eq!(values(&t, "old", true), expected);
}

/// Client settings this build cannot speak are refused when the job starts, with exit 78 and
/// the reason, before any broker is contacted: TLS (librdkafka is built without OpenSSL),
/// and SASL SCRAM (the mechanism tansu 0.6 offers: librdkafka has no provider for it here).
/// SASL PLAIN is what both librdkafka and floe's own EndTxn client speak (see
/// `kafka_resume.rs`). Where librdkafka could speak a setting that floe's EndTxn client
/// cannot, exactly-once alone is refused (the unit tests of `sinks::kafka`).
#[test]
fn security_settings_this_build_cannot_speak_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (name, properties, reason) in [
        (
            "tls",
            "{security.protocol: SSL}",
            "OpenSSL not available at build time",
        ),
        (
            "scram",
            "{security.protocol: SASL_PLAINTEXT, sasl.mechanism: SCRAM-SHA-256, \
             sasl.username: floe, sasl.password: s3cret}",
            "No provider for SASL mechanism SCRAM-SHA-256",
        ),
    ] {
        let yaml = format!(
            "name: refused-{name}
checkpointing:
  interval: 1 s
  checkpoint-dir: file://{ck}
operators:
  - id: source
    type: datagen
    lines: 10
  - id: out
    type: kafka
    inputs: [source]
    bootstrap-servers: 127.0.0.1:1
    topic: t
    properties: {properties}
",
            ck = dir.path().join("ck").display()
        );
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let out = common::floe()
            .current_dir(dir.path())
            .arg("run")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{name}: {err}");
        assert!(err.contains("(id \"out\").properties"), "{name}: {err}");
        assert!(err.contains(reason), "{name}: {err}");
        assert!(
            !err.contains("s3cret"),
            "{name}: the password is shown: {err}"
        );
    }
}

/// Runs `floe run <pipeline>` in `dir` to its end, with `args`; panics with its log on failure.
fn run_to_end(dir: &Path, pipeline: &Path, args: &[&str]) {
    let log = dir.join("run.log");
    let mut child = common::floe()
        .current_dir(dir)
        .arg("run")
        .arg(pipeline)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("floe");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "floe failed ({status}): {}",
                crash_support::tail(&log, 30)
            );
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("floe did not finish: {}", crash_support::tail(&log, 30));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn datagen_pipeline(
    dir: &Path,
    t: &Tansu,
    lines: u64,
    rate: Option<u64>,
    sink: &str,
) -> std::path::PathBuf {
    let rate = rate.map(|r| format!("    rate: {r}\n")).unwrap_or_default();
    let yaml = format!(
        "name: kafka-sink
checkpointing:
  interval: 100 ms
  checkpoint-dir: file://{ck}
operators:
  - id: source
    type: datagen
    lines: {lines}
    words-per-line: 3
    vocab: 50
{rate}  - id: out
    type: kafka
    inputs: [source]
    bootstrap-servers: {bootstrap}
{sink}",
        ck = dir.join("ck").display(),
        bootstrap = t.bootstrap,
    );
    let path = dir.join("p.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn generated(lines: u64) -> Vec<String> {
    let cfg = DatagenConfig {
        lines: Some(lines),
        words_per_line: 3,
        vocab: 50,
        ..DatagenConfig::default()
    };
    sorted((0..lines).map(|l| line_text(&cfg, l)).collect())
}

#[test]
fn at_least_once_delivers_every_record() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("alo", 2);
    let dir = tempfile::tempdir().unwrap();
    let p = datagen_pipeline(
        dir.path(),
        &t,
        3000,
        None,
        "    topic: alo\n    delivery-guarantee: at-least-once\n",
    );
    run_to_end(dir.path(), &p, &["-p", "2"]);
    assert_eq!(values(&t, "alo", false), generated(3000));
}

#[test]
fn exactly_once_after_kill_9_each_record_once() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("eo", 1);
    let dir = tempfile::tempdir().unwrap();
    let total = 6000;
    let p = datagen_pipeline(
        dir.path(),
        &t,
        total,
        Some(1000),
        "    topic: eo\n    transactional-id-prefix: crash\n",
    );
    let log = dir.path().join("first.log");
    let mut child = common::floe()
        .current_dir(dir.path())
        .arg("run")
        .arg(&p)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("floe");
    // Kill once some records are committed and others sit in an open transaction.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "floe ended before the kill: {}",
            crash_support::tail(&log, 20)
        );
        let (committed, written) = t.log_counts("eo");
        if committed > 0 && written > committed {
            break;
        }
        assert!(Instant::now() < deadline, "no open transaction seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = t.read_committed("eo").len();
    assert!(before < total as usize, "the kill came before the end");
    assert!(crash_support::newest_checkpoint(&dir.path().join("ck")).is_some());

    run_to_end(dir.path(), &p, &["-s", "latest"]);
    let got = values(&t, "eo", true);
    let expected = generated(total);
    assert_eq!(got.len(), expected.len(), "every record once, nothing more");
    assert_eq!(got, expected);
    // Whether the log also holds aborted records depends on where the kill landed: the open
    // transaction seen above may belong to a checkpoint that completed just before the kill,
    // and then the restore commits it. The abort of a lingering transaction is checked step
    // by step, without that race, in
    // `transactions_become_visible_on_completion_and_a_restore_commits_or_aborts`.
}
