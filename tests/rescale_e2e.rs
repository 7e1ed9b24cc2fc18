//! Through the binary: the word count checkpointed at `-p 1`, killed with SIGKILL after a
//! checkpoint, restored with `-s <chk> -p 2` (its datagen source now at another parallelism):
//! the final counts equal the generator's, so no line was lost or generated twice.
//!
//! Waits are for checkpoint files to appear, with a generous deadline; nothing depends on how
//! long an operation takes.

mod common;
use common::{expected_counts, floe, wait_for};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Completed checkpoints (with `_metadata`) under the checkpoint root, by id.
fn completed(root: &Path) -> Vec<(u64, PathBuf)> {
    let mut out = Vec::new();
    for job in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for chk in std::fs::read_dir(job.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = chk.path();
            let id = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("chk-"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                if p.join("_metadata").is_file() {
                    out.push((id, p));
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn word_count_checkpointed_at_p1_restores_at_p2() {
    let dir = tempfile::tempdir().unwrap();
    let (lines, words, vocab, seed) = (40_000u64, 5u64, 300u64, 3u64);
    let write = |name: &str, rate: &str| {
        let file = dir.path().join(name);
        std::fs::write(
            &file,
            format!(
                "name: rescale-e2e
checkpointing:
  interval: 100 ms
  checkpoint-dir: {ck}
operators:
  - {{id: source, type: datagen, lines: {lines}, words-per-line: {words}, vocab: {vocab}, seed: {seed}{rate}}}
  - {{id: split, type: flat_map, inputs: [source]}}
  - {{id: count, type: key_by, inputs: [split], key: word, aggregate: count}}
  - {{id: print, type: print, inputs: [count]}}
",
                ck = dir.path().join("ck").display()
            ),
        )
        .unwrap();
        file
    };
    // 20 s of input at 2000 lines/s: the kill (after checkpoint 3, however slow the machine)
    // leaves most of it, so every word is updated again after the restore. The restored run
    // reads the rest unthrottled (the rate is not state).
    let file = write("p.yaml", ", rate: 2000");
    let unthrottled = write("p-fast.yaml", "");

    let mut child = floe()
        .current_dir(dir.path())
        .args(["run", file.to_str().unwrap(), "-p", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let root = dir.path().join("ck");
    wait_for("checkpoint 3", || {
        completed(&root).iter().any(|(id, _)| *id >= 3)
    });
    let killed = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait().unwrap();
    let (_, chk) = completed(&root)
        .pop()
        .expect("a checkpoint survived kill -9");

    let out = floe()
        .current_dir(dir.path())
        .args([
            "run",
            unthrottled.to_str().unwrap(),
            "-s",
            chk.to_str().unwrap(),
            "-p",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `N> (word,count)`: a word lives on one subtask, so its updates are in order.
    let mut last: HashMap<String, u64> = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let record = line.split_once("> ").map_or(line, |(_, r)| r);
        let inner = record.trim_start_matches('(').trim_end_matches(')');
        let (w, n) = inner.rsplit_once(',').unwrap();
        let n: u64 = n.parse().unwrap();
        let e = last.entry(w.to_string()).or_insert(0);
        assert!(n > *e, "updates of {w} increase");
        *e = n;
    }
    let expected = expected_counts(lines, words, vocab, seed);
    assert_eq!(
        last.len(),
        expected.len(),
        "every word is updated after the restore"
    );
    for (w, n) in &expected {
        assert_eq!(last.get(w), Some(n), "final count of {w}");
    }
}
