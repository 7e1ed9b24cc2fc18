//! Scaling out (issue 7, point 6): two floe instances share one topic's four partitions
//! (`instance: "1/2"` and `"2/2"`), each counting words of its share into a Kafka topic
//! through the exactly-once sink, checkpoints on S3 (a real SeaweedFS) from the same conf.
//!
//! Instance 2 runs first, unbounded (so the kill cannot race its end), over the first half of
//! the input; once three checkpoints of its own are complete on S3 it is killed with SIGKILL.
//! The second half of the input is produced, and then instance 1 and instance 2 again run
//! side by side, both `bounded: true` to the end: instance 2 from a NEW working directory
//! (another machine: nothing of the first directory is used) with `-s latest`, which finds
//! its newest checkpoint on S3 by pipeline name; it must resume past the start of its
//! partitions. The input is keyed by the word (the producer gives each
//! record the word as its Kafka key, so a word's records are all in one partition, read by
//! one instance): the union of both instances' committed output must hold every update
//! `(w,n)` for n = 1..=count(w) exactly once, so the final per-word counts are exact.

mod kafka_support;
mod s3_support;

use floe::operators::sources::datagen::{line_text, DatagenConfig};
use kafka_support::Tansu;
use rdkafka::producer::{BaseRecord, Producer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LINES: u64 = 16_000;

fn corpus() -> DatagenConfig {
    DatagenConfig {
        lines: Some(LINES),
        words_per_line: 5,
        vocab: 400,
        seed: 17,
        ..DatagenConfig::default()
    }
}

/// Every word of `lines` of the corpus as one record, keyed by the word: the producer's partitioner
/// puts all of a word's records into one partition. Counts them into `counts`.
fn produce_keyed(
    t: &Tansu,
    topic: &str,
    lines: std::ops::Range<u64>,
    counts: &mut HashMap<String, u64>,
) {
    let cfg = corpus();
    let producer = t.producer();
    for l in lines {
        for w in line_text(&cfg, l).split(' ') {
            *counts.entry(w.to_string()).or_insert(0) += 1;
            let mut rec = BaseRecord::to(topic).key(w).payload(w);
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((e, back)) => {
                        assert!(
                            matches!(
                                e,
                                rdkafka::error::KafkaError::MessageProduction(
                                    rdkafka::types::RDKafkaErrorCode::QueueFull
                                )
                            ),
                            "send: {e}"
                        );
                        rec = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// One machine's working directory: `conf/flink-conf.yaml` (the same on every machine) and
/// the pipeline of instance `i` of 2.
fn machine(dir: &Path, conf: &str, t: &Tansu, i: u32, bounded: bool) -> PathBuf {
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::write(dir.join("conf/flink-conf.yaml"), conf).unwrap();
    let pipeline = dir.join(format!("wordcount-{i}.yaml"));
    let yaml = kafka_support::WordCountYaml {
        name: &format!("scaleout-wordcount-{i}"),
        head: "",
        bootstrap: &t.bootstrap,
        input: "words",
        source_extra: &format!("instance: \"{i}/2\"\nbounded: {bounded}"),
        output: "counts",
        sink_extra: &format!("transactional-id-prefix: scaleout-wc-{i}"),
    }
    .render();
    std::fs::write(&pipeline, yaml).unwrap();
    pipeline
}

fn start(dir: &Path, pipeline: &Path, log: &Path, restore: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_floe"));
    cmd.current_dir(dir)
        .env_remove("FLOE_CONF_DIR")
        .env("RUST_LOG", "info")
        .env("FLOE_REST_PORT", "0")
        .args(["run", "-p", "2"])
        .arg(pipeline);
    if restore {
        cmd.args(["-s", "latest"]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("floe run")
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Ids of the complete checkpoints on S3 under `root` of the pipeline named `name`.
fn checkpoints_of(root: &str, name: &str) -> Vec<u64> {
    progress_of(root, name)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// The complete checkpoints on S3 under `root` of the pipeline named `name`: each id, and
/// whether its Kafka source had read past the start of some partition.
fn progress_of(root: &str, name: &str) -> Vec<(u64, bool)> {
    use floe::operators::sources::SourcePosition;
    floe::checkpoint::storage::parse_dir(root)
        .and_then(|at| floe::checkpoint::storage::scan_checkpoints(&at))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(_, l)| l.ok())
        .filter(|l| l.metadata.job_name == name)
        .map(|l| {
            let read = l.metadata.operators.iter().any(|o| {
                o.subtasks.iter().any(|s| {
                    let position = s.operator.as_ref().map(SourcePosition::from_blob);
                    matches!(position, Some(Ok(SourcePosition::Kafka(offsets)))
                        if offsets.iter().any(|k| k.offset > 0))
                })
            });
            (l.metadata.checkpoint_id, read)
        })
        .collect()
}

fn wait_exit(child: &mut Child, log: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{what} failed ({status}):\n{}", tail(log));
            return;
        }
        assert!(Instant::now() < deadline, "{what} hung:\n{}", tail(log));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_instances_share_the_partitions_and_one_resumes_elsewhere_from_s3_with_exact_counts() {
    let Some(t) = Tansu::start() else { return };
    let Some(s3) = s3_support::server() else {
        return;
    };
    s3.configure_library();
    t.create_topic("words", 4);
    t.create_topic("counts", 2);
    let mut expected = HashMap::new();
    produce_keyed(&t, "words", 0..LINES / 2, &mut expected);

    let root = s3.prefix("scaleout");
    let conf = format!(
        "execution.checkpointing.interval: 100 ms\n\
         execution.checkpointing.dir: {root}\n\
         s3.endpoint: {endpoint}\n\
         s3.path.style.access: true\n\
         s3.access-key: {ak}\n\
         s3.secret-key: {sk}\n",
        endpoint = s3.endpoint,
        ak = s3_support::ACCESS_KEY,
        sk = s3_support::SECRET_KEY,
    );
    let tmp = tempfile::tempdir().unwrap();
    let (m1, m2, m3) = (
        tmp.path().join("machine-1"),
        tmp.path().join("machine-2"),
        tmp.path().join("machine-3"),
    );
    let p2 = machine(&m2, &conf, &t, 2, false);
    let log2 = m2.join("floe.log");
    let mut two = start(&m2, &p2, &log2, false);

    // Kill instance 2 once its third checkpoint is complete on S3 and holds progress (the
    // consumer may take a while to fetch its first records on a slow machine).
    let deadline = Instant::now() + Duration::from_secs(120);
    // (Only the newest is retained: look at the highest id.)
    while !progress_of(&root, "scaleout-wordcount-2")
        .into_iter()
        .max()
        .is_some_and(|(id, read)| id >= 3 && read)
    {
        assert!(
            two.try_wait().unwrap().is_none(),
            "instance 2 (unbounded) ended:\n{}",
            tail(&log2)
        );
        assert!(
            Instant::now() < deadline,
            "no checkpoint of instance 2 on S3:\n{}",
            tail(&log2)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    two.kill().unwrap();
    two.wait().unwrap();
    let before = checkpoints_of(&root, "scaleout-wordcount-2");

    produce_keyed(&t, "words", LINES / 2..LINES, &mut expected);

    // Instance 1 on its machine; instance 2 on another machine: a fresh directory with the
    // same conf and pipeline, state from S3.
    let p1 = machine(&m1, &conf, &t, 1, true);
    let log1 = m1.join("floe.log");
    let mut one = start(&m1, &p1, &log1, false);
    // Instance 1's checkpoints on S3 under the same directory are newer than instance 2's:
    // `-s latest` must still pick instance 2's (by pipeline name).
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&log1)
        .unwrap_or_default()
        .contains("Completed checkpoint")
    {
        if one.try_wait().unwrap().is_some() {
            break; // finished already; checked below
        }
        assert!(
            Instant::now() < deadline,
            "instance 1 never checkpointed:\n{}",
            tail(&log1)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let p3 = machine(&m3, &conf, &t, 2, true);
    let log3 = m3.join("floe.log");
    let mut again = start(&m3, &p3, &log3, true);
    wait_exit(&mut again, &log3, "instance 2, restarted from S3");
    wait_exit(&mut one, &log1, "instance 1");
    let restored = std::fs::read_to_string(&log3).unwrap_or_default();
    let newest = before.iter().max().unwrap();
    let restore_line = restored
        .lines()
        .find(|l| l.contains("Restoring job"))
        .unwrap_or_else(|| panic!("the restart restored nothing:\n{}", tail(&log3)));
    assert!(
        restore_line.contains(&root) && restore_line.contains(&format!("/chk-{newest}")),
        "the restart did not restore instance 2's newest checkpoint chk-{newest} on S3: \
         {restore_line}"
    );
    // It resumed mid-stream: some partition from an offset past its start.
    let offsets: Vec<i64> = restored
        .lines()
        .filter(|l| l.contains("kafka source reads a partition"))
        .filter_map(|l| l.rsplit_once("offset=")?.1.trim().parse().ok())
        .collect();
    assert!(
        offsets.iter().any(|o| *o > 0),
        "instance 2 was killed before it had checkpointed any progress: offsets {offsets:?}"
    );
    eprintln!(
        "scaleout: instance 2 killed after checkpoints {before:?}, resumed elsewhere at offsets \
         {offsets:?}"
    );

    // Each instance read its own partitions only, and between them all four.
    let read = |log: &Path| -> HashSet<String> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("kafka source reads a partition"))
            .filter_map(|l| {
                let at = l.find("partition=")? + "partition=".len();
                Some(l[at..].split_whitespace().next()?.to_string())
            })
            .collect()
    };
    let (r1, r2) = (read(&log1), read(&log3));
    assert!(
        r1.is_disjoint(&r2) && r1.len() + r2.len() == 4,
        "instance 1 read partitions {r1:?}, instance 2 (restarted) {r2:?}"
    );

    let updates: Vec<String> = t
        .read_committed("counts")
        .into_iter()
        .map(|g| g.value)
        .collect();
    let mut seen: BTreeMap<(String, u64), u32> = BTreeMap::new();
    for u in &updates {
        let (w, n) = u
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|s| s.rsplit_once(','))
            .unwrap_or_else(|| panic!("not a (word,count) record: {u:?}"));
        *seen.entry((w.to_string(), n.parse().unwrap())).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).take(8).collect();
    assert!(twice.is_empty(), "updates written twice: {twice:?}");
    let mut finals: HashMap<String, u64> = HashMap::new();
    for (w, n) in seen.keys() {
        let e = finals.entry(w.clone()).or_default();
        *e = (*e).max(*n);
    }
    assert_eq!(
        finals.len(),
        expected.len(),
        "words with a final count, against words in the input"
    );
    for (w, c) in &expected {
        assert_eq!(finals.get(w), Some(c), "final count of {w}");
    }
    assert_eq!(
        updates.len() as u64,
        expected.values().sum::<u64>(),
        "one update per input word, nothing lost or doubled"
    );
}
