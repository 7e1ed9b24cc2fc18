//! Restore benchmark (issue 4): a restore of 1M keys, from process start to the first record
//! processed after the restore, at the parallelism of the checkpoint and at another one.
//!
//! `cargo bench --bench restore` first takes one checkpoint of the word count (datagen, vocab
//! FLOE_BENCH_VOCAB, default 1,000,000 → flat_map → key_by count → blackhole) at parallelism 1,
//! in this process: it lets FLOE_BENCH_FILL_WORDS words (default 20M, so that every key is in
//! the state) through, waits for the next checkpoint to complete, and stops the job. Then it
//! times `floe run <pipeline> -s <chk-N>` as a separate process (the binary cargo built for this
//! bench) with a `print` sink, from spawn to the first line on its stdout: the state is loaded
//! and the first record went through the restored keyed operator. FLOE_BENCH_RUNS runs each
//! (default 5), median and max, at -p 1 and -p 2; and the same pipeline started without `-s`,
//! for the cost of the process start alone.
//!
//! The source keeps parallelism 1 (`parallelism: 1` in the pipeline): floe refuses to restore
//! a datagen position at another parallelism, so at -p 2 it is the keyed state (the 1M keys)
//! that is rescaled, key group by key group.

use floe::runtime::{CheckpointNotice, JobOptions};
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{checkpointing, env_u64, wordcount_yaml, COUNT_BY_WORD};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run only for bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let vocab = env_u64("FLOE_BENCH_VOCAB", 1_000_000);
    let fill = env_u64("FLOE_BENCH_FILL_WORDS", 20_000_000);
    let runs = env_u64("FLOE_BENCH_RUNS", 5).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let (chk, size) = take_checkpoint(dir.path(), vocab, fill);
    println!(
        "checkpoint of the word count, vocab {vocab}, after {fill} words, at p 1: {} ({:.1} MB)",
        chk.display(),
        size as f64 / 1e6
    );
    let pipeline = dir.path().join("restore.yaml");
    std::fs::write(&pipeline, pipeline_yaml(vocab, "print")).expect("write pipeline");
    println!(
        "{:>22} {:>3} {:>12} {:>12}   (spawn → first output line, {runs} runs)",
        "", "p", "median ms", "max ms"
    );
    for (label, restore) in [("fresh start (no -s)", false), ("restore -s chk", true)] {
        for p in [1u32, 2] {
            let mut times = Vec::new();
            for _ in 0..runs {
                let from = restore.then_some(chk.as_path());
                times.push(first_output(&pipeline, from, p).as_secs_f64() * 1e3);
            }
            times.sort_by(|a, b| a.total_cmp(b));
            println!(
                "{label:>22} {p:>3} {:>12.1} {:>12.1}",
                times[times.len() / 2],
                times[times.len() - 1]
            );
        }
    }
}

fn pipeline_yaml(vocab: u64, sink: &str) -> String {
    let source_extra = "\n    parallelism: 1";
    wordcount_yaml(
        "bench-restore",
        None,
        vocab,
        source_extra,
        COUNT_BY_WORD,
        sink,
    )
}

/// Runs the word count in this process until `fill` words reached the sink and the next
/// checkpoint completed; returns that checkpoint's directory and size.
fn take_checkpoint(dir: &Path, vocab: u64, fill: u64) -> (PathBuf, u64) {
    let yaml = pipeline_yaml(vocab, "blackhole");
    let pipeline = floe::pipeline::parse(&yaml, Path::new("bench-restore.yaml"))
        .unwrap_or_else(|e| panic!("bench pipeline invalid: {e}"));
    let plan = floe::pipeline::plan::Plan::build(&pipeline, 1, None)
        .unwrap_or_else(|e| panic!("bench plan: {e}"));
    let dynamic = vec![
        "execution.checkpointing.interval=500 ms".into(),
        format!("execution.checkpointing.dir=file://{}/ck", dir.display()),
    ];
    let mut options = JobOptions::new("bench-restore");
    options.checkpointing = Some(checkpointing(
        "bench-restore",
        dir,
        "parallelism.default: 1\n",
        dynamic,
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut handle = floe::runtime::start(plan, options).expect("start job");
        let mut notices = handle
            .take_checkpoint_notices()
            .expect("checkpoint notices");
        let metrics = handle.metrics();
        while metrics.operator("sink").map_or(0, |o| o.records_in()) < fill {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The first checkpoint triggered from now on holds at least `fill` words.
        let mut after = None;
        let done = loop {
            match notices.recv().await {
                Some(CheckpointNotice::Triggered(id)) if after.is_none() => after = Some(id),
                Some(CheckpointNotice::Completed(c)) if after.is_some_and(|a| c.id >= a) => {
                    break c
                }
                Some(CheckpointNotice::Failed { id, reason }) => {
                    panic!("checkpoint {id} failed: {reason}")
                }
                Some(_) => {}
                None => panic!("the job ended before a checkpoint completed"),
            }
        };
        handle.stop();
        handle.wait().await.expect("job failed");
        // Retention (num-retained 1) deletes older checkpoints: keep the newest completed.
        let mut newest = done;
        while let Ok(n) = notices.try_recv() {
            if let CheckpointNotice::Completed(c) = n {
                newest = c;
            }
        }
        (newest.path, newest.size)
    })
}

/// Spawns `floe run pipeline [-s from] -p p` and returns the time until its first stdout line.
fn first_output(pipeline: &Path, from: Option<&Path>, p: u32) -> Duration {
    let log = pipeline.with_file_name("floe.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_floe"));
    // FLOE_* variables are configuration to floe: pass none of this bench's.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FLOE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "warn")
        .arg("run")
        .arg(pipeline)
        .args(["-p", &p.to_string()])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("create floe.log"));
    if let Some(chk) = from {
        cmd.arg("-s").arg(chk);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn floe");
    let mut line = String::new();
    let n = BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read floe's stdout");
    let elapsed = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        n > 0,
        "floe printed nothing; its log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    elapsed
}
