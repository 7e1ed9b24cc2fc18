//! The crash test with checkpoints on S3 (issue 7, point 5): the word count runs in the real
//! binary with checkpoints every 150 ms to a real SeaweedFS (`s3_support`) and the
//! transactional `file` sink; it is killed with SIGKILL at random moments (while processing,
//! right after a checkpoint was triggered, right after one completed on S3) and restarted with
//! `-s latest`, which finds the newest checkpoint on S3. The committed output must be that of
//! a run that never failed: every update `(w, n)` for n = 1..=count(w) exactly once.
//!
//! Random choices come from `crash_support::Rng` (seed `FLOE_CRASH_SEED`); the only sleeps
//! are the random kill delays; everything else polls for an event. The verdict does not depend
//! on the machine's speed: the input (at 1000 lines/s) is sized from the kills so that every
//! kill lands before its end even when S3 checkpoints take seconds, and the final attempt
//! reads what is left unthrottled (the rate is not state), within a limit that grows with it.

mod common;
mod crash_support;
mod file_sink_support;
mod s3_support;

use common::expected_counts;
use crash_support::{datagen_lines_left, floe_bin, limit_for_input, tail, Rng};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KILLS: u32 = 8;
/// Lines per second while killing.
const RATE: u64 = 1_000;
/// Three seconds of input per kill: an attempt commits what was read before its newest
/// checkpoint, well under that even when a checkpoint on S3 takes a couple of seconds.
const LINES: u64 = 2_000 + 3 * RATE * KILLS as u64;

/// The pipeline, throttled to `rate` lines per second (`None`: as fast as it goes).
fn write_pipeline(dir: &Path, root: &str, rate: Option<u64>) -> std::path::PathBuf {
    let (path, rate) = match rate {
        Some(r) => (dir.join("wc.yaml"), format!(", rate: {r}")),
        None => (dir.join("wc-unthrottled.yaml"), String::new()),
    };
    let yaml = format!(
        "name: s3-crash
checkpointing:
  interval: 150 ms
  checkpoint-dir: {root}
operators:
  - {{id: source, type: datagen, lines: {LINES}, words-per-line: 5, vocab: 300, seed: 3{rate}}}
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
    newest_dir(root).map(|(id, _)| id)
}

/// The highest complete checkpoint on S3 under `root`: its id and directory.
fn newest_dir(root: &str) -> Option<(u64, std::path::PathBuf)> {
    let at = floe::checkpoint::storage::parse_dir(root).ok()?;
    floe::checkpoint::storage::scan_checkpoints(&at)
        .ok()?
        .into_iter()
        .filter_map(|(dir, l)| {
            l.ok()
                .map(|l| (l.metadata.checkpoint_id, dir.to_path_buf()))
        })
        .max()
}

/// Waits for the final attempt within a limit that grows with the input it has left.
fn wait_final(child: &mut Child, log: &Path, root: &str) -> std::process::ExitStatus {
    let newest = newest_dir(root).map(|(_, dir)| dir);
    let left = datagen_lines_left(newest.as_deref(), "source", LINES);
    // Unthrottled it reads far faster than RATE; RATE only bounds how long it may take.
    let limit = limit_for_input(Duration::from_secs(120), left, RATE);
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the final attempt ({left} lines left) did not end within {limit:?} (hung?): {}",
                tail(log, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
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
    let pipeline = write_pipeline(dir.path(), &root, Some(RATE));
    let unthrottled = write_pipeline(dir.path(), &root, None);
    let seed = crash_support::seed(20_261_201);
    let mut rng = Rng::new(seed);
    let (mut kills, mut attempts, mut restores) = (0u32, 0u32, 0u32);
    let mut kinds: HashMap<&str, u32> = HashMap::new();
    loop {
        attempts += 1;
        let log = dir.path().join(format!("attempt-{attempts}.log"));
        let mut cmd = Command::new(floe_bin());
        s3.env(&mut cmd);
        let last = kills == KILLS;
        cmd.current_dir(dir.path())
            .env_remove("FLOE_CONF_DIR")
            .env("RUST_LOG", "info")
            .env("FLOE_REST_PORT", "0")
            .arg("run")
            .arg(if last { &unthrottled } else { &pipeline });
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
        if last {
            let status = wait_final(&mut child, &log, &root);
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
    assert_eq!(
        kills, KILLS,
        "the job finished after {kills} kills: the input ({LINES} lines) is too short"
    );
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
