//! The word count, end to end through the real binary: its output must equal counts computed
//! independently from the generator's definition, at parallelism 1, 2 and 4.
//!
//! Every word's rolling updates `(w, 1) … (w, n)` must each appear exactly once (Flink's
//! `keyBy(0).sum(1)` emits one update per record), and n must be the word's count in the
//! corpus computed here from the SplitMix64 definition of `tests/fixtures/gen_corpus.py`.

mod common;
use common::{expected_counts, floe};

use std::collections::HashMap;

fn pipeline(dir: &std::path::Path, lines: u64, vocab: u64, seed: u64) -> std::path::PathBuf {
    let path = dir.join("wc.yaml");
    std::fs::write(
        &path,
        format!(
            "name: wc-test
operators:
  - id: source
    type: datagen
    lines: {lines}
    words-per-line: 7
    vocab: {vocab}
    seed: {seed}
  - id: split
    type: flat_map
    inputs: [source]
    separator: ' '
  - id: pair
    type: map
    inputs: [split]
    fields:
      word: word
      one: 1
  - id: sum
    type: key_by
    inputs: [pair]
    key: word
    aggregate: sum
    field: one
  - id: print
    type: print
    inputs: [sum]
"
        ),
    )
    .expect("write pipeline");
    path
}

/// Parses print output: `(w,3)` or `2> (w,3)`; returns (subtask, word, count).
fn parse_line(line: &str) -> (Option<u32>, String, u64) {
    let (prefix, rest) = match line.split_once("> ") {
        Some((p, r)) if p.chars().all(|c| c.is_ascii_digit()) => (Some(p.parse().unwrap()), r),
        _ => (None, line),
    };
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a Flink tuple: {line:?}"));
    let (w, n) = inner.rsplit_once(',').expect("two fields");
    (prefix, w.to_string(), n.parse().expect("count"))
}

fn check_parallelism(p: u32) {
    let dir = tempfile::tempdir().unwrap();
    let (lines, vocab, seed) = (3_000, 500, 7);
    let file = pipeline(dir.path(), lines, vocab, seed);
    let out = floe()
        .current_dir(dir.path())
        .args(["run", "-p", &p.to_string()])
        .arg(&file)
        .output()
        .expect("run floe");
    assert!(
        out.status.success(),
        "floe run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    let expected = expected_counts(lines, 7, vocab, seed);

    // Every update (w, n) for n = 1..=count exactly once; prefixes present iff p > 1.
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    let mut subtasks = std::collections::HashSet::new();
    for line in stdout.lines() {
        let (subtask, word, n) = parse_line(line);
        assert_eq!(
            subtask.is_some(),
            p > 1,
            "prefix iff parallelism > 1: {line:?}"
        );
        if let Some(s) = subtask {
            assert!(
                (1..=p).contains(&s),
                "subtask prefix out of range: {line:?}"
            );
            subtasks.insert(s);
        }
        seen.entry(word).or_default().push(n);
    }
    assert_eq!(seen.len(), expected.len(), "distinct words");
    for (word, count) in &expected {
        let mut updates = seen.remove(word).unwrap_or_default();
        updates.sort_unstable();
        let want: Vec<u64> = (1..=*count).collect();
        assert_eq!(updates, want, "updates of {word}");
    }
    if p > 1 {
        assert_eq!(subtasks.len(), p as usize, "every sink subtask printed");
    }
}

#[test]
fn wordcount_parallelism_1() {
    check_parallelism(1);
}

#[test]
fn wordcount_parallelism_2() {
    check_parallelism(2);
}

#[test]
fn wordcount_parallelism_4() {
    check_parallelism(4);
}

#[test]
fn generator_definition_matches_the_script() {
    // The corpus script is the definition: check that this test's reading of it agrees, so
    // the expectations above are independent and right.
    let Some(corpus) = common::gen_corpus(&[
        "--lines",
        "50",
        "--words-per-line",
        "7",
        "--vocab",
        "500",
        "--seed",
        "7",
    ]) else {
        return;
    };
    let mut from_script: HashMap<String, u64> = HashMap::new();
    for w in corpus.split_whitespace() {
        *from_script.entry(w.to_string()).or_insert(0) += 1;
    }
    assert_eq!(from_script, expected_counts(50, 7, 500, 7));
}
