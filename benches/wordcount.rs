//! Word-count benchmark: floe against the hand-written single-thread reference
//! (`benches/reference/wordcount_limit.rs`), measured in the same run on the same machine.
//!
//! `cargo bench --bench wordcount` runs datagen → flat_map → key_by count → blackhole over
//! FLOE_BENCH_WORDS words (default 20M) with vocab 10k and 1M, at parallelism 1 and 2, each
//! without checkpoints and with checkpoints every second (full, to local disk), and the
//! reference over the same words in two modes: `--gen` (a plain hash map of owned strings) and
//! `--text-prefetch` (formats, splits and counts the text with overlapped cache misses: the
//! limit for this pipeline on one core). Each figure is the median of FLOE_BENCH_RUNS runs
//! (default 3), the runs of a vocab interleaved so that drift in the machine's speed hits all
//! alike.
//!
//! Each floe run is a fresh child process (this bench executable again, FLOE_BENCH_CHILD set),
//! so that its peak RSS is its own. Printed per case: words/s over the job's wall time, words
//! per CPU-second (user + system time of the whole process, every thread), peak RSS (VmHWM)
//! and the rate as a fraction of `--text-prefetch`'s.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use support::{
    env_u64, local_checkpoints, median, peak_rss_mb, wordcount_yaml, COUNT_BY_WORD, SEED,
    WORDS_PER_LINE,
};

const CHILD: &str = "FLOE_BENCH_CHILD";

/// What one floe run measured.
#[derive(Debug, Clone, Copy)]
struct Measured {
    words_per_sec: f64,
    words_per_cpu_sec: f64,
    peak_rss_mb: f64,
    checkpoints: u64,
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run only for bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let words = env_u64("FLOE_BENCH_WORDS", 20_000_000);
    let runs = env_u64("FLOE_BENCH_RUNS", 3).max(1) as usize;
    let lines = words / WORDS_PER_LINE;
    let reference = build_reference();
    println!(
        "word count, {} words ({} lines x {}), median of {runs} runs; load average {}",
        lines * WORDS_PER_LINE,
        lines,
        WORDS_PER_LINE,
        load_average()
    );
    println!(
        "{:>9} {:>3} {:>5} {:>14} {:>14} {:>9} {:>6} {:>10}",
        "vocab", "p", "ckpt", "words/s", "words/CPU-s", "peak MB", "ckpts", "/text-pf"
    );
    for vocab in [10_000u64, 1_000_000] {
        let cases: Vec<(u32, bool)> = vec![(1, false), (1, true), (2, false), (2, true)];
        let mut floe: Vec<Vec<Measured>> = vec![Vec::new(); cases.len()];
        let (mut plain, mut text) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            plain.push(run_reference(&reference, "--gen", lines, vocab));
            text.push(run_reference(&reference, "--text-prefetch", lines, vocab));
            for (i, &(p, ckpt)) in cases.iter().enumerate() {
                floe[i].push(run_floe(lines, vocab, p, ckpt));
            }
        }
        let text_rate = median(text.clone());
        let plain_rate = median(plain.clone());
        for (i, &(p, ckpt)) in cases.iter().enumerate() {
            let m = |f: fn(&Measured) -> f64| median(floe[i].iter().map(f).collect());
            let rate = m(|r| r.words_per_sec);
            println!(
                "{vocab:>9} {p:>3} {:>5} {:>14.0} {:>14.0} {:>9.0} {:>6.0} {:>10.2}",
                if ckpt { "1 s" } else { "-" },
                rate,
                m(|r| r.words_per_cpu_sec),
                m(|r| r.peak_rss_mb),
                m(|r| r.checkpoints as f64),
                rate / text_rate
            );
        }
        println!("{vocab:>9}   reference --gen           {plain_rate:>14.0}");
        println!("{vocab:>9}   reference --text-prefetch {text_rate:>14.0}");
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Compile the reference with rustc -O into the target directory.
fn build_reference() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = manifest.join("benches/reference/wordcount_limit.rs");
    let out_dir = manifest.join("target/bench-reference");
    std::fs::create_dir_all(&out_dir).expect("create target/bench-reference");
    let bin = out_dir.join("wordcount_limit");
    let status = Command::new("rustc")
        .args(["--edition", "2021", "-C", "opt-level=3", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("cannot run rustc for {}: {e}", src.display()));
    assert!(status.success(), "rustc failed on {}", src.display());
    bin
}

/// Words per second of the reference in `mode`, as it reports them.
fn run_reference(bin: &Path, mode: &str, lines: u64, vocab: u64) -> f64 {
    let out = Command::new(bin)
        .args([mode, &lines.to_string(), &WORDS_PER_LINE.to_string()])
        .args([vocab.to_string(), SEED.to_string()])
        .output()
        .expect("run the reference");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix("words_per_sec="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected reference output of {mode}: {text}"))
}

/// One floe run in a fresh process of this executable.
fn run_floe(lines: u64, vocab: u64, p: u32, checkpoints: bool) -> Measured {
    let exe = std::env::current_exe().expect("the bench's own path");
    let out = Command::new(exe)
        .env(CHILD, format!("{lines} {vocab} {p} {}", checkpoints as u8))
        .output()
        .expect("run the bench child");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> f64 {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "bench child: no {name} in its output: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    };
    Measured {
        words_per_sec: field("words_per_sec="),
        words_per_cpu_sec: field("words_per_cpu_sec="),
        peak_rss_mb: field("peak_rss_mb="),
        checkpoints: field("checkpoints=") as u64,
    }
}

/// The child: runs one job, then prints what it measured of itself.
fn child(spec: &str) {
    let n: Vec<u64> = spec
        .split_whitespace()
        .map(|v| v.parse().expect("FLOE_BENCH_CHILD: numbers"))
        .collect();
    let (lines, vocab, p, checkpoints) = (n[0], n[1], n[2] as u32, n[3] == 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = wordcount_yaml(
        "bench-wordcount",
        Some(lines),
        vocab,
        "",
        COUNT_BY_WORD,
        "blackhole",
    );
    let pipeline = floe::pipeline::parse(&yaml, Path::new("bench-wordcount.yaml"))
        .unwrap_or_else(|e| panic!("bench pipeline invalid: {e}"));
    let plan = floe::pipeline::plan::Plan::build(&pipeline, p, None)
        .unwrap_or_else(|e| panic!("bench plan: {e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut options = floe::runtime::JobOptions::new("bench-wordcount");
    if checkpoints {
        options.checkpointing = Some(local_checkpoints("bench-wordcount", dir.path(), "1 s"));
    }
    let (secs, done) = rt.block_on(async {
        let start = Instant::now();
        let mut handle = floe::runtime::start(plan, options).expect("start job");
        let mut notices = handle.take_checkpoint_notices();
        let report = handle.wait().await.expect("job failed");
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(
            report.operator("sink").map(|o| o.records_in),
            Some(lines * WORDS_PER_LINE),
            "the sink must see one update per word"
        );
        let mut done = 0u64;
        if let Some(rx) = notices.as_mut() {
            while let Ok(n) = rx.try_recv() {
                if let floe::runtime::CheckpointNotice::Completed(_) = n {
                    done += 1;
                }
            }
        }
        (secs, done)
    });
    drop(rt);
    let words = (lines * WORDS_PER_LINE) as f64;
    println!(
        "words_per_sec={:.0} words_per_cpu_sec={:.0} peak_rss_mb={:.1} checkpoints={done}",
        words / secs,
        words / cpu_seconds(),
        peak_rss_mb()
    );
}

/// User + system CPU time of this process so far (every thread), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the command name (which may hold spaces) start at field 3, "state".
    let rest = &stat[stat.rfind(')').expect("/proc/self/stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f[i - 3].parse::<u64>().expect("/proc/self/stat tick count");
    (ticks(14) + ticks(15)) as f64 / rustix::param::clock_ticks_per_second() as f64
}
