//! Checkpoint benchmark (issue 3): the word count over 1M keys with checkpoints every second,
//! full and incremental, against the same job without checkpoints, in the same run.
//!
//! `cargo bench --bench checkpoint` runs datagen (unbounded, vocab FLOE_BENCH_VOCAB, default
//! 1,000,000) → flat_map → key_by count → blackhole for FLOE_BENCH_SECS seconds (default 15)
//! per run, FLOE_BENCH_RUNS runs per mode (default 1), interleaved, at parallelism
//! FLOE_BENCH_P (default 1). Printed per mode:
//! - words/s at the sink over the steady part of the run (after FLOE_BENCH_WARMUP_SECS,
//!   default 2, once the state holds most keys), and its ratio to the run without checkpoints:
//!   of the medians, and round by round (each round runs every mode once, in turn);
//! - the gaps between consecutive batches at the keyed operator and at the sink (p50, p99,
//!   max): a checkpoint that stalls the data path shows up as a long gap;
//! - each completed checkpoint's duration and size (from the job's checkpoint notices).
//!
//! With FLOE_BENCH_S3_ENDPOINT set (e.g. http://127.0.0.1:8333 of a SeaweedFS `weed mini`),
//! the checkpointing modes run a second time with checkpoints on S3 (`full-s3`,
//! `incremental-s3`) under FLOE_BENCH_S3_DIR (default s3://ckpt/bench), path-style, with the
//! credentials of the AWS environment: checkpoint duration to S3 against local disk.

use floe::runtime::{CheckpointNotice, JobOptions};
mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::{checkpointing, env_u64, max, median, wordcount_yaml, COUNT_BY_WORD};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    None,
    Full,
    Incremental,
    FullS3,
    IncrementalS3,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Full => "full",
            Mode::Incremental => "incremental",
            Mode::FullS3 => "full-s3",
            Mode::IncrementalS3 => "incremental-s3",
        }
    }

    fn incremental(self) -> bool {
        matches!(self, Mode::Incremental | Mode::IncrementalS3)
    }

    fn on_s3(self) -> bool {
        matches!(self, Mode::FullS3 | Mode::IncrementalS3)
    }
}

/// What one run measured.
#[derive(Default)]
struct RunResult {
    words_per_sec: f64,
    keyed: floe::runtime::metrics::GapSummary,
    sink: floe::runtime::metrics::GapSummary,
    /// (duration ms, size bytes) of each completed checkpoint.
    checkpoints: Vec<(u64, u64)>,
    failed: u64,
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run only for bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = env_u64("FLOE_BENCH_SECS", 15);
    let warmup = env_u64("FLOE_BENCH_WARMUP_SECS", 2).min(secs.saturating_sub(1));
    let runs = env_u64("FLOE_BENCH_RUNS", 1).max(1);
    let vocab = env_u64("FLOE_BENCH_VOCAB", 1_000_000);
    let p = env_u64("FLOE_BENCH_P", 1).max(1) as u32;
    floe::runtime::metrics::set_batch_timing(true);
    println!(
        "word count, vocab {vocab}, p {p}, {secs} s per run (rate measured after {warmup} s), \
         {runs} run(s) per mode, checkpoints every 1 s"
    );
    let mut modes = vec![Mode::None, Mode::Full, Mode::Incremental];
    if std::env::var_os("FLOE_BENCH_S3_ENDPOINT").is_some() {
        modes.extend([Mode::FullS3, Mode::IncrementalS3]);
    }
    let mut results: Vec<Vec<RunResult>> = modes.iter().map(|_| Vec::new()).collect();
    // Interleave the modes so that drift in the machine's speed hits all alike.
    for _ in 0..runs {
        for (i, &mode) in modes.iter().enumerate() {
            results[i].push(run(mode, vocab, p, secs, warmup));
        }
    }
    let base = median(results[0].iter().map(|r| r.words_per_sec).collect());
    println!();
    println!(
        "{:>12} {:>13} {:>6} | {:>27} | {:>27}",
        "mode", "words/s", "ratio", "keyed gap p50/p99/max ms", "sink gap p50/p99/max ms"
    );
    for (i, &mode) in modes.iter().enumerate() {
        let rate = median(results[i].iter().map(|r| r.words_per_sec).collect());
        let mut keyed = floe::runtime::metrics::GapSummary::default();
        let mut sink = floe::runtime::metrics::GapSummary::default();
        for r in &results[i] {
            keyed.merge(&r.keyed);
            sink.merge(&r.sink);
        }
        println!(
            "{:>12} {:>13.0} {:>6.3} | {:>27} | {:>27}",
            mode.name(),
            rate,
            rate / base,
            gaps(&keyed),
            gaps(&sink)
        );
    }
    print_round_ratios(&modes, &results);
    println!();
    println!(
        "{:>12} {:>6} {:>7} {:>22} {:>26}",
        "mode", "done", "failed", "duration ms med/max", "size MB med/max"
    );
    for (i, &mode) in modes.iter().enumerate().skip(1) {
        let all: Vec<(u64, u64)> = results[i]
            .iter()
            .flat_map(|r| r.checkpoints.iter().copied())
            .collect();
        let failed: u64 = results[i].iter().map(|r| r.failed).sum();
        let durations: Vec<f64> = all.iter().map(|c| c.0 as f64).collect();
        let sizes: Vec<f64> = all.iter().map(|c| c.1 as f64 / 1e6).collect();
        println!(
            "{:>12} {:>6} {:>7} {:>22} {:>26}",
            mode.name(),
            all.len(),
            failed,
            format!("{:.0} / {:.0}", median(durations.clone()), max(&durations)),
            format!("{:.2} / {:.2}", median(sizes.clone()), max(&sizes)),
        );
        let first: Vec<String> = all
            .iter()
            .take(8)
            .map(|(d, s)| format!("{d} ms {:.1} MB", *s as f64 / 1e6))
            .collect();
        println!("{:>12}   first: {}", "", first.join(", "));
    }
}

/// Each mode's rate over the rate without checkpoints of the same round (the runs of a round
/// follow one another, so the machine's drift between rounds cancels), and their median.
fn print_round_ratios(modes: &[Mode], results: &[Vec<RunResult>]) {
    println!();
    for (i, &mode) in modes.iter().enumerate().skip(1) {
        let ratios: Vec<f64> = results[i]
            .iter()
            .zip(&results[0])
            .map(|(r, none)| r.words_per_sec / none.words_per_sec)
            .collect();
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
        println!(
            "{:>12}   ratio per round: {} (median {:.3})",
            mode.name(),
            each.join(", "),
            median(ratios)
        );
    }
}

fn gaps(g: &floe::runtime::metrics::GapSummary) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "{:.2} / {:.2} / {:.1}",
        ms(g.quantile(0.5)),
        ms(g.quantile(0.99)),
        ms(g.max)
    )
}

/// The job's options for `mode`, built from configuration as `floe run` builds them.
fn options(mode: Mode, dir: &Path) -> JobOptions {
    let mut options = JobOptions::new("bench-checkpoint");
    if mode == Mode::None {
        return options;
    }
    let mut dynamic = vec![
        "execution.checkpointing.interval=1 s".into(),
        format!("execution.checkpointing.incremental={}", mode.incremental()),
    ];
    if mode.on_s3() {
        let root = std::env::var("FLOE_BENCH_S3_DIR").unwrap_or_else(|_| "s3://ckpt/bench".into());
        let endpoint = std::env::var("FLOE_BENCH_S3_ENDPOINT").unwrap_or_default();
        dynamic.extend([
            format!("execution.checkpointing.dir={root}"),
            format!("s3.endpoint={endpoint}"),
            "s3.path.style.access=true".into(),
        ]);
    } else {
        dynamic.push(format!(
            "execution.checkpointing.dir=file://{}",
            dir.display()
        ));
    }
    options.checkpointing = Some(checkpointing(
        "bench-checkpoint",
        dir,
        "parallelism.default: 1\n",
        dynamic,
    ));
    options
}

fn run(mode: Mode, vocab: u64, p: u32, secs: u64, warmup: u64) -> RunResult {
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = wordcount_yaml(
        "bench-checkpoint",
        None,
        vocab,
        "",
        COUNT_BY_WORD,
        "blackhole",
    );
    let pipeline = floe::pipeline::parse(&yaml, Path::new("bench-checkpoint.yaml"))
        .unwrap_or_else(|e| panic!("bench pipeline invalid: {e}"));
    let plan = floe::pipeline::plan::Plan::build(&pipeline, p, None)
        .unwrap_or_else(|e| panic!("bench plan: {e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        let mut handle = floe::runtime::start(plan, options(mode, dir.path())).expect("start job");
        let mut notices = handle.take_checkpoint_notices();
        let metrics = handle.metrics();
        let sink_words = || metrics.operator("sink").map_or(0, |o| o.records_in());
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(warmup)).await;
        let (t0, w0) = (Instant::now(), sink_words());
        tokio::time::sleep(Duration::from_secs(secs - warmup)).await;
        let (t1, w1) = (Instant::now(), sink_words());
        handle.stop();
        let report = handle.wait().await.expect("job failed");
        let mut r = RunResult {
            words_per_sec: (w1 - w0) as f64 / (t1 - t0).as_secs_f64(),
            keyed: metrics
                .operator("count")
                .map(|o| o.batch_gaps())
                .unwrap_or_default(),
            sink: metrics
                .operator("sink")
                .map(|o| o.batch_gaps())
                .unwrap_or_default(),
            ..RunResult::default()
        };
        if let Some(rx) = notices.as_mut() {
            while let Ok(n) = rx.try_recv() {
                match n {
                    CheckpointNotice::Completed(c) => r.checkpoints.push((c.duration_ms, c.size)),
                    CheckpointNotice::Failed { .. } => r.failed += 1,
                    _ => {}
                }
            }
        }
        eprintln!(
            "  {:>11}: {:.0} words/s, {} words in {:.1} s, {} checkpoints",
            mode.name(),
            r.words_per_sec,
            report.operator("sink").map_or(0, |o| o.records_in),
            start.elapsed().as_secs_f64(),
            r.checkpoints.len()
        );
        r
    });
    // The runtime's blocking writers are done (wait() settled the driver); drop it here, not
    // inside async code.
    drop(rt);
    result
}
