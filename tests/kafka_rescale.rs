//! The `kafka` source in the real binary, restored from a checkpoint at another parallelism:
//! a job at `-p 1` reads four partitions into the exactly-once `file` sink and is killed with
//! SIGKILL; more records arrive; the job restored with `-p 2` resumes every partition at its
//! checkpointed offset, now spread over two subtasks. The committed output holds every record
//! exactly once.

mod common;
mod crash_support;
mod kafka_support;

use kafka_support::Tansu;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Every line of the committed part files (`part-*`; hidden files are not committed yet).
fn committed(out: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return lines;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("part-") {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines
}

fn spawn(dir: &Path, pipeline: &Path, args: &[&str], log: &str) -> Child {
    common::floe()
        .current_dir(dir)
        .arg("run")
        .arg(pipeline)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .expect("floe")
}

/// Waits until the committed output holds `n` lines (the child must keep running).
fn wait_committed(child: &mut Child, out: &Path, n: usize, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = committed(out).len();
        if got >= n {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "floe ended ({status}) with {got} of {n} lines committed: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {n} lines committed in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn restored_at_parallelism_2_every_partition_resumes_at_its_offset() {
    let Some(t) = Tansu::start() else { return };
    t.create_topic("rescale", 4);
    let batch = |tag: &str, p: i32| -> Vec<String> {
        (0..250).map(|i| format!("{tag}-p{p}-{i}")).collect()
    };
    for p in 0..4 {
        t.produce_lines("rescale", p, &batch("first", p));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: kafka-rescale
checkpointing:
  interval: 100 ms
  checkpoint-dir: file://{ck}
operators:
  - id: source
    type: kafka
    bootstrap-servers: {b}
    topics: [rescale]
    discovery-interval: 0
  - id: out
    type: file
    inputs: [source]
    path: out
    rolling:
      rollover-interval: 0
",
            ck = dir.path().join("ck").display(),
            b = t.bootstrap
        ),
    )
    .unwrap();

    let mut first = spawn(dir.path(), &pipeline, &["-p", "1"], "first.log");
    wait_committed(&mut first, &out, 1000, &dir.path().join("first.log"));
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    // The checkpoint holds an offset per partition, as `floe inspect` shows.
    let chk = crash_support::newest_checkpoint(&dir.path().join("ck")).expect("a checkpoint");
    let shown = common::floe().arg("inspect").arg(&chk).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    for p in 0..4 {
        assert!(
            text.contains(&format!("rescale-{p} @ offset 250")),
            "{text}"
        );
    }

    for p in 0..4 {
        t.produce_lines("rescale", p, &batch("second", p));
    }
    let mut second = spawn(
        dir.path(),
        &pipeline,
        &["-p", "2", "-s", "latest"],
        "second.log",
    );
    wait_committed(&mut second, &out, 2000, &dir.path().join("second.log"));
    // One more checkpoint's worth of time may not add anything: nothing is left to read.
    let settled = committed(&out).len();
    second.kill().unwrap();
    second.wait().unwrap();

    let lines = committed(&out);
    assert_eq!(lines.len(), settled);
    let mut counts: HashMap<&str, u32> = HashMap::new();
    for l in &lines {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "records written twice: {dupes:?}");
    for p in 0..4 {
        for l in batch("first", p).iter().chain(&batch("second", p)) {
            assert!(counts.contains_key(l.as_str()), "{l} is missing");
        }
    }
    assert_eq!(lines.len(), 2000);
    // Both new subtasks wrote: the partitions were spread.
    let writers: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("part-1-"))
        .collect();
    assert!(
        !writers.is_empty(),
        "subtask 1 of the restored job wrote nothing"
    );
}
