//! The crash test with checkpoints on S3 (issue 7, point 5): the word count runs in the real
//! binary with checkpoints every 150 ms to a real SeaweedFS (`s3_support`) and the
//! transactional `file` sink; it is killed with SIGKILL at random moments (while processing,
//! right after a checkpoint was triggered, right after one completed on S3) and restarted with
//! `-s latest`, which finds the newest checkpoint on S3. The committed output must be that of
//! a run that never failed: every update `(w, n)` for n = 1..=count(w) exactly once.
//!
//! Random choices come from `crash_support::Rng` (seed `FLOE_CRASH_SEED`); the only sleeps
//! are the random kill delays; everything else polls for an event.

mod common;
mod crash_support;
mod file_sink_support;
mod s3_support;

use common::expected_counts;
use crash_support::{floe_bin, tail, Rng};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KILLS: u32 = 8;
const LINES: u64 = 2_000 + 400 * KILLS as u64;

fn write_pipeline(dir: &Path, root: &str) -> std::path::PathBuf {
    let path = dir.join("wc.yaml");
    let yaml = format!(
        "name: s3-crash
checkpointing:
  interval: 150 ms
  checkpoint-dir: {root}
operators:
  - {{id: source, type: datagen, lines: {LINES}, words-per-line: 5, vocab: 300, seed: 3, rate: 1000}}
  - {{id: split, type: flat_map, inputs: [source], separator: ' '}}
  - {{id: count, type: key_by, inputs: [split], key: word, aggregate: count}}
  - {{id: out, type: file, inputs: [count], path: out}}
"
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The highest complete checkpoint id on S3 under `root`.
fn newest(root: &str) -> Option<u64> {
    floe::checkpoint::storage::scan_checkpoints(Path::new(root))
        .ok()?
        .into_iter()
        .filter_map(|(_, l)| l.ok().map(|l| l.metadata.checkpoint_id))
        .max()
}

fn triggered(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("Triggering checkpoint")
        .count()
}

/// Polls `event` until it holds (true) or the child exits (false); panics past a deadline.
fn wait_event(child: &mut Child, log: &Path, mut event: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if event() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(Instant::now() < deadline, "hung attempt: {}", tail(log, 30));
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn kill_9_at_random_points_with_checkpoints_on_s3_gives_exactly_once_output() {
    let Some(s3) = s3_support::server() else {
        return;
    };
    s3.configure_library();
    let dir = tempfile::tempdir().unwrap();
    let root = s3.prefix("crash");
    let pipeline = write_pipeline(dir.path(), &root);
    let seed = std::env::var("FLOE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_201u64);
    let mut rng = Rng::new(seed);
    let (mut kills, mut attempts, mut restores) = (0u32, 0u32, 0u32);
    let mut kinds: HashMap<&str, u32> = HashMap::new();
    loop {
        attempts += 1;
        let log = dir.path().join(format!("attempt-{attempts}.log"));
        let mut cmd = Command::new(floe_bin());
        s3.env(&mut cmd);
        cmd.current_dir(dir.path())
            .env_remove("FLOE_CONF_DIR")
            .env("RUST_LOG", "info")
            .env("FLOE_REST_PORT", "0")
            .arg("run")
            .arg(&pipeline);
        let before = newest(&root);
        if before.is_some() {
            cmd.args(["-s", "latest"]);
            restores += 1;
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        if kills == KILLS {
            let status = loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break s;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            assert!(status.success(), "final attempt failed: {}", tail(&log, 30));
            break;
        }
        let (kind, happened) = match rng.range(0, 3) {
            0 => {
                std::thread::sleep(Duration::from_millis(rng.range(100, 900)));
                ("while processing", true)
            }
            1 => {
                let seen = triggered(&log);
                let ok = wait_event(&mut child, &log, || triggered(&log) > seen);
                std::thread::sleep(Duration::from_micros(rng.range(0, 20_000)));
                ("during a checkpoint", ok)
            }
            _ => {
                let ok = wait_event(&mut child, &log, || newest(&root) > before);
                std::thread::sleep(Duration::from_micros(rng.range(0, 3_000)));
                ("right after a checkpoint completed", ok)
            }
        };
        if !happened || child.try_wait().unwrap().is_some() {
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "attempt {attempts} failed: {}",
                tail(&log, 30)
            );
            break; // finished before the kill
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        *kinds.entry(kind).or_default() += 1;
    }
    eprintln!(
        "S3 crash test (seed {seed}): {attempts} attempts, {kills} kills {kinds:?}, {restores} \
         restores from S3"
    );
    assert!(kills >= KILLS / 2, "too few kills landed: {kills}");
    let lines = file_sink_support::committed_lines(&dir.path().join("out"));
    file_sink_support::assert_each_update_once(&lines);
    let mut last: HashMap<String, u64> = HashMap::new();
    for l in &lines {
        let (w, n) = l[1..l.len() - 1].rsplit_once(',').unwrap();
        let n: u64 = n.parse().unwrap();
        let e = last.entry(w.to_string()).or_default();
        *e = (*e).max(n);
    }
    assert_eq!(last, expected_counts(LINES, 5, 300, 3), "final counts");
}
