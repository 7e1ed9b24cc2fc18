//! Checkpoints through the real binary: Flink's layout, retention at termination, a kill -9
//! followed by a restore that continues the counts, `floe inspect`, and corrupt files refused.
//!
//! Waits are for files to appear or output to arrive, polled with a generous deadline; nothing
//! here depends on how long an operation takes.

mod common;
use common::{expected_counts, floe, wait_for};

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The `<dir>/<job-id>` directories under a checkpoint root.
fn job_dirs(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Completed checkpoints (with `_metadata`) of a job dir, by id.
fn completed(job_dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(job_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|p| {
                    let id = p
                        .file_name()?
                        .to_str()?
                        .strip_prefix("chk-")?
                        .parse()
                        .ok()?;
                    p.join("_metadata").is_file().then_some((id, p))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn pipeline(dir: &Path, extra: &str, lines: Option<u64>, rate: u64) -> PathBuf {
    let lines = lines.map_or(String::new(), |l| format!("lines: {l}, "));
    let text = format!(
        "name: ckpt-e2e
checkpointing:
  interval: 100 ms
  checkpoint-dir: {ck}
{extra}
operators:
  - {{id: source, type: datagen, {lines}words-per-line: 5, vocab: 300, seed: 3, rate: {rate}}}
  - {{id: split, type: flat_map, inputs: [source]}}
  - {{id: count, type: key_by, inputs: [split], key: word, aggregate: count}}
  - {{id: print, type: print, inputs: [count]}}
",
        ck = dir.join("ck").display()
    );
    let path = dir.join("p.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs floe with its stdout piped to the caller, which must read it to the end (a full
/// pipe would block the print sink, and with it checkpoints and a stop), and its stderr in
/// `dir/floe.log`.
fn spawn(dir: &Path, args: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join("floe.log")).unwrap();
    floe()
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Reads `child`'s stdout to its end on a thread of its own.
fn drain_stdout(child: &mut Child) -> std::thread::JoinHandle<()> {
    let mut out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut out, &mut std::io::sink());
    })
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn is_job_id(p: &Path) -> bool {
    let name = p.file_name().unwrap().to_string_lossy().to_string();
    name.len() == 32
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Runs the pipeline until checkpoint `n` is complete, then sends `sig`; returns the exit code
/// and the job directory.
fn run_until_checkpoint(dir: &Path, file: &Path, n: u64, sig: &str) -> (Option<i32>, PathBuf) {
    let mut child = spawn(dir, &["run", file.to_str().unwrap()]);
    let drained = drain_stdout(&mut child);
    let root = dir.join("ck");
    wait_for(&format!("checkpoint {n}"), || {
        job_dirs(&root)
            .first()
            .is_some_and(|j| completed(j).iter().any(|(id, _)| *id >= n))
    });
    signal(&child, sig);
    let code = child.wait().unwrap().code();
    drained.join().unwrap();
    let jobs = job_dirs(&root);
    assert_eq!(jobs.len(), 1, "one job directory");
    (code, jobs.into_iter().next().unwrap())
}

#[test]
fn layout_and_retention_follow_flink() {
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(
        dir.path(),
        "config:\n  state.checkpoints.num-retained: 2",
        None,
        2_000,
    );
    let (code, job) = run_until_checkpoint(dir.path(), &file, 4, "-INT");
    assert_eq!(code, Some(0));
    let job = &job;
    assert!(
        is_job_id(job),
        "job dir is 32 lowercase hex: {}",
        job.display()
    );
    assert!(job.join("shared").is_dir() && job.join("taskowned").is_dir());
    // A stopped `floe run` keeps its checkpoints (as a stopped Flink cluster keeps them), exactly
    // num-retained of them, the newest, with consecutive ids.
    let ids: Vec<u64> = completed(job).iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 2, "num-retained = 2: {ids:?}");
    assert_eq!(ids[1], ids[0] + 1);
    let chk_dirs = std::fs::read_dir(job)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("chk-")
        })
        .count();
    assert_eq!(chk_dirs, 2, "subsumed chk directories are deleted");
}

#[test]
fn a_finished_job_deletes_its_checkpoints_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), "", Some(3_000), 3_000);
    let out = floe()
        .current_dir(dir.path())
        .args(["run", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs = job_dirs(&dir.path().join("ck"));
    assert_eq!(jobs.len(), 1);
    // FINISHED deletes retained checkpoints in every retention mode; the job directory with
    // its empty shared/ and taskowned/ stays, as Flink leaves it.
    assert!(completed(&jobs[0]).is_empty(), "no chk-* after FINISHED");
    assert!(jobs[0].join("shared").is_dir());
}

#[test]
fn kill_9_then_restore_continues_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    // 20 s of input at 2000 lines/s: the kill after checkpoint 3 comes long before the end,
    // however slow the machine. The restored run reads the rest ten times faster (the rate is
    // not state), slowly enough to take checkpoints.
    let lines = 40_000u64;
    let file = pipeline(dir.path(), "", Some(lines), 2_000);
    let (_, job) = run_until_checkpoint(dir.path(), &file, 3, "-KILL");
    let (restored_id, chk) = completed(&job)
        .pop()
        .expect("a checkpoint survived kill -9");
    let file = pipeline(dir.path(), "", Some(lines), 20_000);

    // The restored run's printed updates continue from the checkpoint: each word's last
    // update equals its count in the whole corpus.
    let out = floe()
        .current_dir(dir.path())
        .args(["run", file.to_str().unwrap(), "-s", chk.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first_new: u64 = stderr
        .split("Triggering checkpoint ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the restored run takes checkpoints");
    assert_eq!(
        first_new,
        restored_id + 1,
        "numbering continues at the restored id + 1"
    );
    let mut last: HashMap<String, u64> = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let inner = line.trim_start_matches('(').trim_end_matches(')');
        let (w, n) = inner.rsplit_once(',').unwrap();
        let n: u64 = n.parse().unwrap();
        let e = last.entry(w.to_string()).or_insert(0);
        assert!(n > *e, "updates of {w} increase");
        *e = n;
    }
    let expected = expected_counts(lines, 5, 300, 3);
    for (w, n) in &last {
        assert_eq!(Some(n), expected.get(w), "final count of {w}");
    }
    // Words updated after the checkpoint are printed; a restore from zero would print every
    // word starting at 1, which the increasing check above and the totals would both catch.
    assert!(!last.is_empty());
}

#[test]
fn inspect_shows_a_real_checkpoint_and_corruption_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), "", None, 2_000);
    let (_, job) = run_until_checkpoint(dir.path(), &file, 2, "-INT");
    let (id, chk) = completed(&job).pop().unwrap();

    let out = floe()
        .args(["inspect", "--json"])
        .arg(&chk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = json.to_string();
    assert!(text.contains(&format!("\"checkpoint_id\":{id}")), "{text}");
    for op in ["source", "count"] {
        assert!(
            text.contains(&format!("\"{op}\"")),
            "inspect lists {op}: {text}"
        );
    }
    let listing = floe().arg("inspect").arg(&job).output().unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).contains(&format!("chk-{id}")));

    // One flipped byte in _metadata: the restore names the file and says it is corrupt.
    let meta = chk.join("_metadata");
    let mut bytes = std::fs::read(&meta).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&meta, bytes).unwrap();
    let out = floe()
        .current_dir(dir.path())
        .args(["run", file.to_str().unwrap(), "-s", chk.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("_metadata"), "names the file: {err}");
    assert!(err.contains("corrupt"), "says it is corrupt: {err}");
}

#[test]
fn first_output_line_arrives_from_a_live_job() {
    // Guards the e2e helpers above: a running job prints before it is stopped.
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), "", None, 1_000);
    let mut child = spawn(dir.path(), &["run", file.to_str().unwrap()]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("(w"), "{line}");
    signal(&child, "-INT");
    // The rest of the output is read while the job stops (it drains into the print sink).
    let rest = std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    assert_eq!(child.wait().unwrap().code(), Some(0));
    rest.join().unwrap().unwrap();
}
