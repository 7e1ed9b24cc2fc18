//! Helpers shared by the tests that read the exactly-once file sink's output directory and
//! wait for checkpoints.
#![allow(dead_code)]

use floe::checkpoint::storage::{list_checkpoints, Location};
use floe::runtime::CheckpointNotice;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// Waits for `cond`, polling; the deadline only turns a hang into a failure.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits for the notice that checkpoint `at_least` or a later one completed; its id.
pub async fn completed(notices: &mut UnboundedReceiver<CheckpointNotice>, at_least: u64) -> u64 {
    loop {
        match notices.recv().await {
            Some(CheckpointNotice::Completed(s)) if s.id.0 >= at_least => return s.id.0,
            Some(CheckpointNotice::Failed { id, reason }) => panic!("checkpoint {id}: {reason}"),
            Some(_) => {}
            None => panic!("the job ended before checkpoint {at_least} completed"),
        }
    }
}

pub fn names(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn hidden(out: &Path) -> Vec<String> {
    names(out)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect()
}

pub fn visible(out: &Path) -> Vec<String> {
    names(out)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// Every line of every committed part file, sorted.
pub fn committed_lines(out: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for name in visible(out) {
        let text = std::fs::read_to_string(out.join(&name)).unwrap();
        lines.extend(text.lines().map(str::to_owned));
    }
    lines.sort();
    lines
}

/// Every word's updates `(w,1) … (w,n)` each appear exactly once.
pub fn assert_each_update_once(lines: &[String]) {
    let mut by_word: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in lines {
        let inner = line
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .unwrap_or_else(|| panic!("not a (word,count) line: {line:?}"));
        let (w, n) = inner.split_once(',').unwrap();
        by_word
            .entry(w.into())
            .or_default()
            .push(n.parse().unwrap());
    }
    assert!(!by_word.is_empty(), "no output at all");
    for (w, mut ns) in by_word {
        ns.sort_unstable();
        let expected: Vec<u64> = (1..=ns.len() as u64).collect();
        assert_eq!(ns, expected, "updates of {w}: each of 1..=n exactly once");
    }
}

/// The newest retained checkpoint under `ck` (one job directory per run).
pub fn latest_checkpoint(ck: &Path) -> PathBuf {
    let mut found = Vec::new();
    for job in std::fs::read_dir(ck).unwrap().flatten() {
        if let Ok(list) = list_checkpoints(&Location::Local(job.path())) {
            found.extend(list.into_iter().map(|(id, dir)| (id, dir.to_path_buf())));
        }
    }
    found.sort();
    found.pop().expect("a retained checkpoint").1
}

/// Word count into a `file` sink at `out/`: `lines` lines of a seeded datagen (unbounded when
/// `None`), throttled to `rate` lines per second when given.
pub fn write_pipeline(dir: &Path, lines: Option<u64>, rate: Option<u64>) -> PathBuf {
    let mut source = String::new();
    if let Some(l) = lines {
        source.push_str(&format!("    lines: {l}\n"));
    }
    if let Some(r) = rate {
        source.push_str(&format!("    rate: {r}\n"));
    }
    let path = dir.join("p.yaml");
    std::fs::write(
        &path,
        format!(
            "name: twopc
operators:
  - id: source
    type: datagen
    words-per-line: 3
    vocab: 25
    seed: 11
{source}  - id: split
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
  - id: out
    type: file
    inputs: [sum]
    path: out
    rolling:
      rollover-interval: 0
"
        ),
    )
    .unwrap();
    path
}
