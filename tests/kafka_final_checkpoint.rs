//! How a bounded Kafka-to-Kafka job ends with exactly-once output, through the real binary,
//! under `execution.checkpointing.checkpoints-after-tasks-finish` (Flink's flag):
//! - `true` (the default): the job ends with a final checkpoint, and the sink commits its
//!   last transactions with it: read_committed sees every update;
//! - `false`: no final checkpoint; as in Flink, what was written after the last completed
//!   checkpoint is never committed (the open transaction is aborted). With checkpoints an
//!   hour apart there is none, so the job ends at once and read_committed sees nothing,
//!   although every update reached the topic's log.

mod common;
mod kafka_support;

use kafka_support::Tansu;
use std::path::Path;
use std::process::Stdio;

const WORDS: usize = 400;

/// Runs the word count over `lines` (bounded) into `counts` with `head`, to its end.
fn run_to_end(t: &Tansu, dir: &Path, head: &str, prefix: &str) {
    let yaml = kafka_support::WordCountYaml {
        name: prefix,
        head,
        bootstrap: &t.bootstrap,
        input: "lines",
        source_extra: "bounded: true",
        output: prefix,
        sink_extra: &format!("transactional-id-prefix: {prefix}\ndelivery-guarantee: exactly-once"),
    }
    .render();
    let pipeline = dir.join(format!("{prefix}.yaml"));
    std::fs::write(&pipeline, yaml).unwrap();
    let log = dir.join(format!("{prefix}.log"));
    // The job's own end is the event waited for (a hang shows in the test harness's timeout).
    let status = common::floe()
        .current_dir(dir)
        .arg("run")
        .arg(&pipeline)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .expect("floe");
    assert!(
        status.success(),
        "floe ended with {status}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

fn setup() -> Option<(Tansu, tempfile::TempDir)> {
    let t = Tansu::start()?;
    t.create_topic("lines", 1);
    let lines: Vec<String> = (0..WORDS / 4)
        .map(|i| format!("a{} b{} c{} d{}", i % 7, i % 11, i % 13, i % 17))
        .collect();
    t.produce_lines("lines", 0, &lines);
    Some((t, tempfile::tempdir().unwrap()))
}

#[test]
fn a_bounded_job_commits_its_last_transactions_with_the_final_checkpoint() {
    let Some((t, dir)) = setup() else { return };
    t.create_topic("with-final", 1);
    let head = kafka_support::checkpointing_head("200 ms", &dir.path().join("ck"));
    run_to_end(&t, dir.path(), &head, "with-final");
    assert_eq!(t.read_committed("with-final").len(), WORDS);
}

#[test]
fn without_checkpoints_after_tasks_finish_nothing_after_the_last_checkpoint_is_committed() {
    let Some((t, dir)) = setup() else { return };
    t.create_topic("no-final", 1);
    let head = format!(
        "{}config:\n  execution.checkpointing.checkpoints-after-tasks-finish: false\n",
        kafka_support::checkpointing_head("1 h", &dir.path().join("ck"))
    );
    run_to_end(&t, dir.path(), &head, "no-final");
    let (committed, all) = t.log_counts("no-final");
    assert_eq!(committed, 0, "{}", t.describe_log("no-final"));
    assert!(
        all >= WORDS,
        "{all} records in the log: {}",
        t.describe_log("no-final")
    );
}
