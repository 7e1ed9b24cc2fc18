//! Crash test of an event-time window: the real binary counts words per 50 ms tumbling window
//! of event time (datagen lines stamped 1 ms apart, up to 20 ms out of order), with
//! checkpoints every 150 ms into the transactional `file` sink, is killed with SIGKILL at
//! random moments and restarted with `-s latest`, often at another parallelism (1 to 3), until
//! a run finishes. Then every window's result must be in the committed output exactly once,
//! equal to the count computed here from the generator's definition (not from floe's code):
//! nothing missing, nothing twice, nothing else.
//!
//! CI: full and incremental checkpoints, 25 kills each. `FLOE_CRASH_SOAK=<kills>` runs that
//! many kills per case (with a longer corpus); `FLOE_CRASH_SEED` picks the random seed.

mod crash_support;

use crash_support::{datagen_lines_left, limit_for_input, seed, sizes, CrashRun, Rng};
use std::collections::BTreeMap;
use std::path::Path;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
const WORDS_PER_LINE: u64 = 5;
const VOCAB: u64 = 40;
const SEED: u64 = 7;
const START: i64 = 1_700_000_000_000;
const DISORDER: i64 = 20;
const WINDOW: i64 = 50;

/// The time of line `l`, by datagen's definition: `start + l × 1 ms − d(l)`, with
/// `d(l) = mix(seed − (l+1) × γ) mod (disorder + 1)`.
fn time_of(l: u64) -> i64 {
    let draw = crash_support::mix(SEED.wrapping_sub((l + 1).wrapping_mul(GAMMA)));
    START + l as i64 - (draw % (DISORDER as u64 + 1)) as i64
}

/// Every window's count by the definition: `(word, start, end)` → count.
fn expected(lines: u64) -> BTreeMap<(String, i64, i64), u64> {
    let mut out = BTreeMap::new();
    for l in 0..lines {
        let t = time_of(l);
        let start = t - t.rem_euclid(WINDOW);
        for j in 0..WORDS_PER_LINE {
            let z = SEED.wrapping_add((l * WORDS_PER_LINE + j + 1).wrapping_mul(GAMMA));
            let word = format!("w{}", crash_support::mix(z) % VOCAB);
            *out.entry((word, start, start + WINDOW)).or_default() += 1;
        }
    }
    out
}

fn write_pipeline(dir: &Path, lines: u64, rate: u64, incremental: bool) -> std::path::PathBuf {
    let path = dir.join("windows.yaml");
    let yaml = format!(
        "name: crash-windows
checkpointing:
  interval: 150 ms
  checkpoint-dir: file://{ck}
  incremental: {incremental}
operators:
  - id: source
    type: datagen
    lines: {lines}
    words-per-line: {WORDS_PER_LINE}
    vocab: {VOCAB}
    seed: {SEED}
    rate: {rate}
    event-time: {{start: {START}, step: 1 ms, disorder: {DISORDER} ms}}
  - id: split
    type: flat_map
    inputs: [source]
  - id: counts
    type: window
    inputs: [split]
    key: word
    tumbling: {WINDOW} ms
    aggregates: {{n: count()}}
  - id: out
    type: file
    inputs: [counts]
    path: out
",
        ck = dir.join("ck").display()
    );
    std::fs::write(&path, yaml).expect("write pipeline");
    path
}

/// `(w3,1700000000000,1700000000050,7)` → (("w3", start, end), 7).
fn parse(line: &str) -> Option<((String, i64, i64), u64)> {
    let inner = line.strip_prefix('(')?.strip_suffix(')')?;
    let mut parts = inner.split(',');
    let word = parts.next()?.to_string();
    let start = parts.next()?.parse().ok()?;
    let end = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(((word, start, end), n))
}

/// Every problem with the committed output, one line per kind, or nothing when each window's
/// result is there exactly once and right.
fn check(lines: &[String], want: &BTreeMap<(String, i64, i64), u64>) -> Vec<String> {
    let mut got: BTreeMap<(String, i64, i64), Vec<u64>> = BTreeMap::new();
    let mut garbled = Vec::new();
    for line in lines {
        match parse(line) {
            Some((k, n)) => got.entry(k).or_default().push(n),
            None => garbled.push(line.clone()),
        }
    }
    let (mut missing, mut twice, mut wrong, mut extra) = (vec![], vec![], vec![], vec![]);
    for (k, n) in want {
        match got.remove(k).as_deref() {
            None => missing.push(format!("{k:?}")),
            Some([one]) if one == n => {}
            Some([one]) => wrong.push(format!("{k:?}: {one}, not {n}")),
            Some(many) => twice.push(format!("{k:?}: {many:?}")),
        }
    }
    extra.extend(got.keys().map(|k| format!("{k:?}")));
    let mut problems = Vec::new();
    for (what, v) in [
        ("windows missing", missing),
        ("windows emitted more than once", twice),
        ("windows with a wrong count", wrong),
        ("windows that should not exist", extra),
        ("lines that are not results", garbled),
    ] {
        if !v.is_empty() {
            let shown: Vec<&str> = v.iter().take(6).map(String::as_str).collect();
            problems.push(format!("{} {what}, e.g. {}", v.len(), shown.join("; ")));
        }
    }
    problems
}

fn crash_case(incremental: bool, kills: u32, lines: u64, rate: u64, seed: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = write_pipeline(dir.path(), lines, rate, incremental);
    let run = CrashRun::in_dir(dir.path(), pipeline, 2);
    let mut rng = Rng::new(seed);
    let what = if incremental { "incremental" } else { "full" };
    eprintln!("crash windows ({what}): {kills} kills, {lines} lines at {rate}/s, seed {seed}");
    // The final run generates what the newest checkpoint left at `rate`: its limit grows
    // with that (a soak leaves minutes of input).
    let final_limit = |newest: Option<&Path>| {
        let left = datagen_lines_left(newest, "source", lines);
        limit_for_input(run.attempt_limit, left, rate)
    };
    let summary = run
        .run_rescaling(kills, &mut rng, &[2, 1, 3], final_limit)
        .unwrap_or_else(|e| panic!("crash windows ({what}, seed {seed}): {e}"));
    eprintln!("crash windows ({what}): {summary}");
    assert!(
        summary.total_kills() >= kills,
        "the job finished after {summary}, before the {kills} kills asked for: make the \
         corpus longer"
    );
    if kills >= 10 {
        assert!(
            summary.rescales > 0,
            "no restore at another parallelism: {summary}"
        );
    }
    let committed = run.committed_lines().expect("read the output");
    let want = expected(lines);
    let problems = check(&committed, &want);
    assert!(
        problems.is_empty(),
        "crash windows ({what}, seed {seed}; {summary}): the committed output in {} is not \
         every window once ({} lines, {} windows):\n  {}",
        run.output.display(),
        committed.len(),
        want.len(),
        problems.join("\n  ")
    );
}

#[test]
fn crash_windows_full_checkpoints() {
    let (kills, lines, rate) = sizes();
    crash_case(false, kills, lines, rate, seed(20_261_205));
}

#[test]
fn crash_windows_incremental_checkpoints() {
    let (kills, lines, rate) = sizes();
    crash_case(true, kills, lines, rate, seed(20_261_205) ^ 0x5eed);
}

#[test]
fn without_kills_every_window_is_there_once() {
    crash_case(false, 0, 1_000, 4_000, seed(20_261_205));
}

#[test]
fn the_checker_finds_missing_repeated_wrong_and_extra_windows() {
    let want: BTreeMap<(String, i64, i64), u64> = [
        (("a".into(), 0, 50), 2),
        (("b".into(), 0, 50), 1),
        (("c".into(), 50, 100), 4),
    ]
    .into();
    let ok: Vec<String> = ["(a,0,50,2)", "(c,50,100,4)", "(b,0,50,1)"]
        .map(String::from)
        .to_vec();
    assert!(check(&ok, &want).is_empty());
    let bad: Vec<String> = ["(a,0,50,2)", "(a,0,50,2)", "(b,0,50,3)", "(z,0,50,1)", "x"]
        .map(String::from)
        .to_vec();
    let p = check(&bad, &want);
    assert_eq!(p.len(), 5, "{p:?}");
    assert!(p[0].starts_with("1 windows missing"), "{p:?}");
    assert!(
        p[1].starts_with("1 windows emitted more than once"),
        "{p:?}"
    );
    assert!(p[2].contains("3, not 1"), "{p:?}");
}
