//! What the benches share: their knobs, the word count they run, checkpointing configured as
//! `floe run` configures it, and the process figures they print.

// Each bench is its own crate and uses part of this module.
#![allow(dead_code)]

use floe::runtime::CheckpointingOptions;

// The jobs a bench runs in its own process allocate as the `floe` binary does.
#[global_allocator]
static GLOBAL: floe::Allocator = floe::Allocator;

use std::path::Path;
use std::sync::Arc;

/// Words per generated line, and the datagen seed, of every bench's corpus.
pub const WORDS_PER_LINE: u64 = 10;
pub const SEED: u64 = 42;

/// A number from the environment (`FLOE_BENCH_*`), else `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median (the upper one of an even count); NaN for none.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The largest; NaN for none.
pub fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// The word count the benches run, as pipeline YAML: datagen (`lines` of them, or unbounded;
/// `source_extra` adds settings) → split at spaces → `keyed` (the operator's YAML after `id:
/// count`) → `sink`.
pub fn wordcount_yaml(
    name: &str,
    lines: Option<u64>,
    vocab: u64,
    source_extra: &str,
    keyed: &str,
    sink: &str,
) -> String {
    let lines = lines.map_or(String::new(), |l| format!("\n    lines: {l}"));
    format!(
        "name: {name}
operators:
  - id: source
    type: datagen{lines}
    words-per-line: {WORDS_PER_LINE}
    vocab: {vocab}
    seed: {SEED}{source_extra}
  - id: split
    type: flat_map
    inputs: [source]
    separator: ' '
  - id: count
    inputs: [split]
{keyed}
  - id: sink
    type: {sink}
    inputs: [count]
"
    )
}

/// `key_by` counting words, for [`wordcount_yaml`].
pub const COUNT_BY_WORD: &str = "    type: key_by\n    key: word\n    aggregate: count";

/// Checkpointing for job `name`, configured as `floe run` configures it: from a conf dir of
/// the bench's own in `dir` (so no developer's conf file leaks in) holding `conf`, and the
/// `-D` settings `dynamic`. S3 settings among them apply to the process.
pub fn checkpointing(
    name: &str,
    dir: &Path,
    conf: &str,
    dynamic: Vec<String>,
) -> CheckpointingOptions {
    std::fs::write(dir.join("config.yaml"), format!("# bench\n{conf}")).expect("write config.yaml");
    let loaded = floe::config::load(&floe::config::LoadOptions {
        conf_dir: Some(dir.to_path_buf()),
        pipeline_settings: Vec::new(),
        dynamic,
    })
    .unwrap_or_else(|e| panic!("bench configuration: {e}"));
    let cfg = loaded.config;
    floe::checkpoint::storage::configure(&cfg.s3);
    let job_id = floe::checkpoint::JobId::random();
    let store = floe::checkpoint::storage::FsCheckpointStore::new(
        &cfg.state,
        &cfg.checkpointing,
        job_id.clone(),
        name,
    )
    .unwrap_or_else(|e| panic!("checkpoint store in {}: {e}", dir.display()));
    CheckpointingOptions {
        config: cfg.checkpointing.clone(),
        store: Arc::new(store),
        job_id,
        first_id: 1,
    }
}

/// Full checkpoints every `interval` to local disk under `dir`.
pub fn local_checkpoints(name: &str, dir: &Path, interval: &str) -> CheckpointingOptions {
    let dynamic = vec![
        format!("execution.checkpointing.interval={interval}"),
        format!("execution.checkpointing.dir=file://{}", dir.display()),
    ];
    checkpointing(name, dir, "", dynamic)
}

/// Peak resident set size of this process in MB (VmHWM).
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
