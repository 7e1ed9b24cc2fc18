//! Word-count benchmark: floe against the hand-written single-thread reference
//! (`benches/reference/wordcount_limit.rs`), measured in the same run on the same machine.
//!
//! `cargo bench --bench wordcount` runs datagen → flat_map → key_by count → blackhole over
//! FLOE_BENCH_WORDS words (default 20M) with vocab 10k and 1M, at parallelism 1 and 2, and the
//! reference over the same words (`--gen`). Each figure is the median of FLOE_BENCH_RUNS runs
//! (default 3). Printed: words/s of each and floe's rate as a fraction of the reference's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const WORDS_PER_LINE: u64 = 10;
const SEED: u64 = 42;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run only for bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let words = env_u64("FLOE_BENCH_WORDS", 20_000_000);
    let runs = env_u64("FLOE_BENCH_RUNS", 3).max(1) as usize;
    let lines = words / WORDS_PER_LINE;
    let reference = build_reference();
    println!(
        "word count, {} words ({} lines x {}), median of {runs} runs",
        lines * WORDS_PER_LINE,
        lines,
        WORDS_PER_LINE
    );
    println!(
        "{:>9} {:>3} {:>16} {:>16} {:>8}",
        "vocab", "p", "floe words/s", "limit words/s", "ratio"
    );
    for vocab in [10_000u64, 1_000_000] {
        for p in [1u32, 2] {
            let mut floe_rates = Vec::new();
            let mut ref_rates = Vec::new();
            // Interleave the two so that drift in the machine's speed hits both alike.
            for _ in 0..runs {
                ref_rates.push(run_reference(&reference, lines, vocab));
                let secs = run_floe(lines, vocab, p).as_secs_f64();
                floe_rates.push((lines * WORDS_PER_LINE) as f64 / secs);
            }
            let f = median(&mut floe_rates);
            let r = median(&mut ref_rates);
            println!("{vocab:>9} {p:>3} {:>16.0} {:>16.0} {:>8.2}", f, r, f / r);
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
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

/// Words per second of the reference, as it reports them.
fn run_reference(bin: &Path, lines: u64, vocab: u64) -> f64 {
    let out = Command::new(bin)
        .args(["--gen", &lines.to_string(), &WORDS_PER_LINE.to_string()])
        .args([vocab.to_string(), SEED.to_string()])
        .output()
        .expect("run the reference");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix("words_per_sec="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected reference output: {text}"))
}

/// Wall time of one floe run of the word count, from job start to the end of the job.
fn run_floe(lines: u64, vocab: u64, parallelism: u32) -> Duration {
    let yaml = format!(
        "name: bench-wordcount
operators:
  - id: source
    type: datagen
    lines: {lines}
    words-per-line: {WORDS_PER_LINE}
    vocab: {vocab}
    seed: {SEED}
  - id: split
    type: flat_map
    inputs: [source]
    separator: ' '
  - id: count
    type: key_by
    inputs: [split]
    key: word
    aggregate: count
  - id: sink
    type: blackhole
    inputs: [count]
"
    );
    let pipeline = floe::pipeline::parse(&yaml, Path::new("bench-wordcount.yaml"))
        .unwrap_or_else(|e| panic!("bench pipeline invalid: {e}"));
    let plan = floe::pipeline::plan::Plan::build(&pipeline, parallelism, None)
        .unwrap_or_else(|e| panic!("bench plan: {e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let start = Instant::now();
        let handle = floe::runtime::start(plan, floe::runtime::JobOptions::new("bench-wordcount"))
            .expect("start job");
        let report = handle.wait().await.expect("job failed");
        let elapsed = start.elapsed();
        assert_eq!(
            report.operator("sink").map(|o| o.records_in),
            Some(lines * WORDS_PER_LINE),
            "the sink must see one update per word"
        );
        elapsed
    })
}
