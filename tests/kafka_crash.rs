//! The crash test of the recovery issue, Kafka to Kafka: the word count reads a topic of two
//! partitions (bounded) with two subtasks, counts, and writes every update `(w,n)` into a
//! topic through the exactly-once sink, with checkpoints every 150 ms. It is killed with
//! SIGKILL at random moments (while processing, as a checkpoint starts, while it is written,
//! right after it completed, while the sink commits) and restarted from the newest
//! checkpoint, until a run finishes. Then a read_committed reader must see exactly the output
//! of a run that never failed: every `(w,n)` for n = 1..=count(w) once, counts computed from
//! the generator's definition.
//!
//! The reader decides read_committed from the log's markers (`kafka_support::committed`):
//! tansu does not report aborted transactions to consumers. When the check fails, the run's
//! directory (attempt logs, checkpoints) is kept and every batch of the output topic is
//! described in `output-log.txt` there: producer id, epoch and the marker that ended it.
//!
//! `FLOE_CRASH_SOAK=<kills>` runs that many kills instead of CI's 8; `FLOE_CRASH_SEED` picks
//! the seed. The corpus grows with the kills asked for, so that the job cannot end before the
//! last one, and the final run's time limit with the input its checkpoint leaves: it guards
//! against a hang, never races the work.

mod crash_support;
mod kafka_support;

use crash_support::{floe_bin, limit_for_input, CrashRun, Rng};
use floe::operators::sources::datagen::{line_text, DatagenConfig};
use kafka_support::Tansu;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn corpus(lines: u64) -> DatagenConfig {
    DatagenConfig {
        lines: Some(lines),
        words_per_line: 5,
        vocab: 300,
        seed: 11,
        ..DatagenConfig::default()
    }
}

fn write_pipeline(dir: &Path, t: &Tansu) -> std::path::PathBuf {
    let path = dir.join("wc.yaml");
    let head = kafka_support::checkpointing_head("150 ms", &dir.join("ck"));
    let yaml = kafka_support::WordCountYaml {
        name: "kafka-crash-wordcount",
        head: &head,
        bootstrap: &t.bootstrap,
        input: "lines",
        source_extra: "bounded: true",
        output: "counts",
        sink_extra: "transactional-id-prefix: crash-wc",
    }
    .render();
    std::fs::write(&path, yaml).expect("write pipeline");
    path
}

/// Problems with `updates` against the counts of the corpus, one line per kind, or none.
fn check_exactly_once(updates: &[String], expected: &HashMap<String, u64>) -> Vec<String> {
    let mut seen: HashMap<(String, u64), u32> = HashMap::new();
    let mut garbled = Vec::new();
    for u in updates {
        let parsed = u
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|s| s.rsplit_once(','))
            .and_then(|(w, n)| Some((w.to_string(), n.parse::<u64>().ok()?)));
        match parsed {
            Some(k) => *seen.entry(k).or_default() += 1,
            None => garbled.push(u.clone()),
        }
    }
    let (mut missing, mut duplicated) = (Vec::new(), Vec::new());
    for (w, &count) in expected {
        for n in 1..=count {
            match seen.remove(&(w.clone(), n)).unwrap_or(0) {
                0 => missing.push(format!("({w},{n})")),
                1 => {}
                k => duplicated.push(format!("({w},{n}) x{k}")),
            }
        }
    }
    let extra: Vec<String> = seen.keys().map(|(w, n)| format!("({w},{n})")).collect();
    let mut problems = Vec::new();
    for (what, mut v) in [
        ("updates missing", missing),
        ("updates duplicated", duplicated),
        ("updates that should not exist", extra),
        ("records that are not (word,count)", garbled),
    ] {
        if !v.is_empty() {
            v.sort();
            problems.push(format!(
                "{} {what}, e.g. {}",
                v.len(),
                v[..v.len().min(8)].join(" ")
            ));
        }
    }
    problems
}

fn expected_counts(cfg: &DatagenConfig, lines: u64) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for l in 0..lines {
        for w in line_text(cfg, l).split(' ') {
            *counts.entry(w.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

fn kills() -> u32 {
    std::env::var("FLOE_CRASH_SOAK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

/// Lines of input for `kills` kills: an attempt reads a few thousand lines before its kill
/// (kills come within 0.7 s of a start, or at a checkpoint), so 5,000 per kill keeps input
/// for most kills and the final run however fast the machine reads.
fn lines_for(kills: u32) -> u64 {
    20_000 + 5_000 * u64::from(kills)
}

/// How long an attempt that is to be killed may wait for the moment of its kill (a
/// checkpoint, or less than a second of work) before it counts as hung: nothing it waits
/// for grows with the input.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(120);

/// The hang guard's rate for the final attempt: 100 lines a second (the debug build reads
/// thousands a second on a loaded 2-core machine); `limit_for_input` allows twice the time.
const GUARD_RATE: u64 = 200;

/// Lines the checkpoint in `checkpoint` has not read yet, of a `lines` topic whose partition
/// `p` holds `sizes[p]` records (one per line, offsets from 0): what a run restored from it
/// still reads. All of them without a checkpoint (or one that cannot be read).
fn kafka_lines_left(checkpoint: Option<&Path>, sizes: &[u64]) -> u64 {
    use floe::operators::sources::SourcePosition;
    let total = sizes.iter().sum();
    let Some(loaded) = checkpoint.and_then(|c| floe::checkpoint::storage::load(c).ok()) else {
        return total;
    };
    let Some(source) = loaded
        .metadata
        .operators
        .iter()
        .find(|o| o.operator_id == "source")
    else {
        return total;
    };
    let mut read = vec![0u64; sizes.len()];
    for s in &source.subtasks {
        let position = s.operator.as_ref().map(SourcePosition::from_blob);
        if let Some(Ok(SourcePosition::Kafka(offsets))) = &position {
            for o in offsets.iter().filter(|o| o.topic == "lines") {
                if let Some(r) = usize::try_from(o.partition)
                    .ok()
                    .and_then(|p| read.get_mut(p))
                {
                    *r = u64::try_from(o.offset).unwrap_or(0);
                }
            }
        }
    }
    sizes
        .iter()
        .zip(&read)
        .map(|(size, r)| size.saturating_sub(*r))
        .sum()
}

#[test]
fn kafka_to_kafka_wordcount_is_exactly_once_through_kill_9() {
    let Some(t) = Tansu::start() else { return };
    let kills = kills();
    let lines = lines_for(kills);
    let cfg = corpus(lines);
    t.create_topic("lines", 2);
    t.create_topic("counts", 2);
    let all: Vec<String> = (0..lines).map(|l| line_text(&cfg, l)).collect();
    let half = all.len() / 2;
    t.produce_lines("lines", 0, &all[..half]);
    t.produce_lines("lines", 1, &all[half..]);

    let dir = tempfile::tempdir().expect("temp dir");
    let run = CrashRun {
        bin: floe_bin(),
        dir: dir.path().to_path_buf(),
        pipeline: write_pipeline(dir.path(), &t),
        checkpoints: dir.path().join("ck"),
        output: dir.path().join("unused"),
        parallelism: 2,
        attempt_limit: ATTEMPT_LIMIT,
    };
    let seed = crash_support::seed(20_261_201);
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    // The final run restores the newest checkpoint and reads what it left: its limit grows
    // with that (a long soak can leave minutes of input), so it never races the work.
    let sizes = [half as u64, (all.len() - half) as u64];
    let final_limit = |newest: Option<&Path>| {
        let left = kafka_lines_left(newest, &sizes);
        let limit = limit_for_input(ATTEMPT_LIMIT, left, GUARD_RATE);
        eprintln!("kafka crash test: final run, {left} lines left, limit {limit:?}");
        limit
    };
    let summary = match run.run_until(kills, &mut rng, final_limit) {
        Ok(s) => s,
        Err(e) => {
            let kept = dir.keep();
            panic!(
                "kafka crash test (seed {seed}): {e}\nkept: {} (attempt logs)",
                kept.display()
            )
        }
    };
    eprintln!("kafka crash test: {summary} ({:?})", started.elapsed());
    // The source reads as fast as the machine does (no rate): at least half the kills must
    // land before the input ends, or the corpus is too short for this machine.
    assert!(
        summary.total_kills() >= kills.div_ceil(2),
        "the job finished after {summary}, before half the {kills} kills asked for: make the \
         corpus longer (lines_for)"
    );
    let updates: Vec<String> = t
        .read_committed("counts")
        .into_iter()
        .map(|g| g.value)
        .collect();
    let problems = check_exactly_once(&updates, &expected_counts(&cfg, lines));
    if problems.is_empty() {
        return;
    }
    // Keep what explains it: the attempts' logs, the checkpoints, the output's batches.
    let kept = dir.keep();
    let described = kept.join("output-log.txt");
    let _ = std::fs::write(&described, t.describe_log("counts"));
    panic!(
        "kafka crash test (seed {seed}; {summary}): read_committed output is not exactly once \
         ({} records):\n  {}\nkept: {} (attempt logs; the output's batches in {})",
        updates.len(),
        problems.join("\n  "),
        kept.display(),
        described.display()
    );
}

#[test]
fn the_checker_finds_missing_duplicated_and_extra_updates() {
    let expected: HashMap<String, u64> = [("w1".to_string(), 2), ("w2".to_string(), 1)].into();
    let good: Vec<String> = ["(w1,1)", "(w2,1)", "(w1,2)"].map(String::from).to_vec();
    assert!(check_exactly_once(&good, &expected).is_empty());
    let bad: Vec<String> = ["(w1,1)", "(w1,1)", "(w2,2)", "x"]
        .map(String::from)
        .to_vec();
    let problems = check_exactly_once(&bad, &expected);
    assert_eq!(problems.len(), 4, "{problems:?}");
}
