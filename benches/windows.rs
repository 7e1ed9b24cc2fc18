//! Window benchmark: the workload Flink 2.3 was measured on.
//!
//! `cargo bench --bench windows` runs datagen's 20M words (2M lines of 10, seed 42), line `L`
//! stamped with event time `L × 0.1 ms` (10,000 lines per second of event time, in order) →
//! flat_map → a tumbling 1 s event-time window counting each word → blackhole, with
//! checkpoints every second to local disk, for vocabularies of 10k and 1M words at
//! parallelism 1 and 2. Each run is its own process (this binary again), so its peak RSS is
//! its own. Printed per case: words/s over the whole job (start to end, as Flink's figure),
//! peak RSS, window results, and the checkpoints taken while windows were open (duration,
//! size). Each case also runs the plain word count (`key_by` count per word, no event time)
//! with the same source, checkpoints and sink, in the same run, so the window's cost shows as
//! the ratio of the two. `FLOE_BENCH_WORDS` changes the size, `FLOE_BENCH_RUNS` the runs per
//! case (the median is printed).
//!
//! Flink 2.3 (MiniCluster, `keyBy(word).window(TumblingEventTimeWindows.of(1 s)).sum(1)`) on
//! the same workload: 10k keys 0.81M words/s at p 1 and 0.79M at p 2 (730–790 MB RSS); 1M
//! keys 0.39M at p 1 and 0.48M at p 2 (2.0 GB RSS, 19.0M window results).

use floe::runtime::{CheckpointNotice, JobOptions};
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;
use support::{
    env_u64, local_checkpoints, max, median, peak_rss_mb, wordcount_yaml, COUNT_BY_WORD,
    WORDS_PER_LINE,
};

/// Set in the child process: `<window|keyby>,<vocab>,<parallelism>`.
const CHILD: &str = "FLOE_BENCH_WINDOWS_CASE";

/// What one run measured.
#[derive(Debug, Clone, Default)]
struct RunResult {
    words_per_sec: f64,
    peak_rss_mb: f64,
    results: u64,
    /// (duration ms, size bytes) of each completed checkpoint.
    checkpoints: Vec<(u64, u64)>,
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run only for bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let lines = env_u64("FLOE_BENCH_WORDS", 20_000_000) / WORDS_PER_LINE;
    if let Ok(case) = std::env::var(CHILD) {
        let parts: Vec<&str> = case.split(',').collect();
        let (window, vocab, p) = match parts[..] {
            [kind, v, p] => (
                kind == "window",
                v.parse().unwrap_or_else(|_| panic!("bad {CHILD}: {case}")),
                p.parse().unwrap_or_else(|_| panic!("bad {CHILD}: {case}")),
            ),
            _ => panic!("bad {CHILD}: {case}"),
        };
        let r = run(window, lines, vocab, p);
        let cks: Vec<String> = r
            .checkpoints
            .iter()
            .map(|(d, s)| format!("{d}:{s}"))
            .collect();
        println!(
            "RESULT {} {} {} {}",
            r.words_per_sec,
            r.peak_rss_mb,
            r.results,
            cks.join(",")
        );
        return;
    }
    let runs = env_u64("FLOE_BENCH_RUNS", 1).max(1);
    println!(
        "windowed word count: {} words ({lines} lines x {WORDS_PER_LINE}), event time 0.1 ms \
         per line, tumbling 1 s window, count per word, checkpoints every 1 s, blackhole; \
         key_by: the plain word count (rolling count per word) with the same source, checkpoints \
         and sink; median of {runs} run(s)",
        lines * WORDS_PER_LINE
    );
    println!(
        "{:>9} {:>3} {:>14} {:>11} {:>14} {:>5} {:>15} {:>15} {:>14} {:>11} {:>6}",
        "vocab",
        "p",
        "window words/s",
        "peak RSS MB",
        "window results",
        "ckpts",
        "ckpt ms med/max",
        "ckpt MB med/max",
        "key_by words/s",
        "key_by RSS",
        "ratio"
    );
    for vocab in [10_000u64, 1_000_000] {
        for p in [1u32, 2] {
            // Interleaved, so drift in the machine's speed hits both alike.
            let (mut windows, mut plain) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                windows.push(child("window", vocab, p));
                plain.push(child("keyby", vocab, p));
            }
            let (r, k) = (median_run(windows), median_run(plain));
            let durations: Vec<f64> = r.checkpoints.iter().map(|c| c.0 as f64).collect();
            let sizes: Vec<f64> = r.checkpoints.iter().map(|c| c.1 as f64 / 1e6).collect();
            println!(
                "{vocab:>9} {p:>3} {:>14.0} {:>11.0} {:>14} {:>5} {:>15} {:>15} {:>14.0} {:>11.0} {:>6.2}",
                r.words_per_sec,
                r.peak_rss_mb,
                r.results,
                r.checkpoints.len(),
                format!("{:.0} / {:.0}", median(durations.clone()), max(&durations)),
                format!("{:.1} / {:.1}", median(sizes.clone()), max(&sizes)),
                k.words_per_sec,
                k.peak_rss_mb,
                r.words_per_sec / k.words_per_sec,
            );
        }
    }
}

/// The run with the median rate.
fn median_run(mut all: Vec<RunResult>) -> RunResult {
    all.sort_by(|a, b| a.words_per_sec.total_cmp(&b.words_per_sec));
    let mid = all.len() / 2;
    all.swap_remove(mid)
}

/// One case in a process of its own.
fn child(kind: &str, vocab: u64, p: u32) -> RunResult {
    let exe = std::env::current_exe().expect("the bench binary");
    let out = Command::new(exe)
        .arg("--bench")
        .env(CHILD, format!("{kind},{vocab},{p}"))
        .output()
        .expect("run a bench case");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "bench case {kind} vocab {vocab} p {p} failed: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let f: Vec<&str> = line.split(' ').collect();
    RunResult {
        words_per_sec: f[0].parse().unwrap_or(f64::NAN),
        peak_rss_mb: f[1].parse().unwrap_or(f64::NAN),
        results: f[2].parse().unwrap_or(0),
        checkpoints: f
            .get(3)
            .map(|c| {
                c.split(',')
                    .filter_map(|x| x.split_once(':'))
                    .filter_map(|(d, s)| Some((d.parse().ok()?, s.parse().ok()?)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn pipeline_yaml(window: bool, lines: u64, vocab: u64) -> String {
    let name = "bench-windows";
    if !window {
        return wordcount_yaml(name, Some(lines), vocab, "", COUNT_BY_WORD, "blackhole");
    }
    let event_time = "\n    event-time: {start: 0, step: 100us}";
    let keyed = "    type: window\n    key: word\n    tumbling: 1 s\n    aggregates: {n: count()}";
    wordcount_yaml(name, Some(lines), vocab, event_time, keyed, "blackhole")
}

/// Checkpoints every second to local disk under `dir`, configured as `floe run` does.
fn options(dir: &Path) -> JobOptions {
    let mut options = JobOptions::new("bench-windows");
    options.checkpointing = Some(local_checkpoints("bench-windows", dir, "1 s"));
    options
}

fn run(window: bool, lines: u64, vocab: u64, p: u32) -> RunResult {
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = pipeline_yaml(window, lines, vocab);
    let pipeline = floe::pipeline::parse(&yaml, Path::new("bench-windows.yaml"))
        .unwrap_or_else(|e| panic!("bench pipeline invalid: {e}"));
    let plan = floe::pipeline::plan::Plan::build(&pipeline, p, None)
        .unwrap_or_else(|e| panic!("bench plan: {e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        let start = Instant::now();
        let mut handle = floe::runtime::start(plan, options(dir.path())).expect("start job");
        let mut notices = handle.take_checkpoint_notices();
        let report = handle.wait().await.expect("job failed");
        let secs = start.elapsed().as_secs_f64();
        let mut r = RunResult {
            words_per_sec: (lines * WORDS_PER_LINE) as f64 / secs,
            results: report.operator("sink").map_or(0, |o| o.records_in),
            ..RunResult::default()
        };
        assert_eq!(
            report.operator("count").map(|o| o.records_in),
            Some(lines * WORDS_PER_LINE),
            "the counting operator must see every word"
        );
        if let Some(rx) = notices.as_mut() {
            while let Ok(n) = rx.try_recv() {
                if let CheckpointNotice::Completed(c) = n {
                    r.checkpoints.push((c.duration_ms, c.size));
                }
            }
        }
        r
    });
    drop(rt);
    RunResult {
        peak_rss_mb: peak_rss_mb(),
        ..result
    }
}
