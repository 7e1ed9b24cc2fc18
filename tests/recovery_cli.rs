//! Restore through the real binary: `-s latest` finds the newest checkpoint of the pipeline
//! by its name; a missing or corrupt state file stops the restore with an error naming the
//! checkpoint, the file and an older intact checkpoint.
//!
//! Waits are for files to appear, polled with a generous deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn floe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_floe"));
    c.env_remove("FLOE_CONF_DIR")
        .env("RUST_LOG", "warn")
        .env("FLOE_REST_PORT", "0");
    c
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pipeline(dir: &Path, name: &str) -> PathBuf {
    let text = format!(
        "name: {name}
checkpointing:
  interval: 50 ms
  checkpoint-dir: {ck}
operators:
  - {{id: source, type: datagen, words-per-line: 5, vocab: 300, seed: 3, rate: 5000}}
  - {{id: split, type: flat_map, inputs: [source]}}
  - {{id: count, type: key_by, inputs: [split], key: word, aggregate: count}}
  - {{id: sink, type: blackhole, inputs: [count]}}
",
        ck = dir.join("ck").display()
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
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

fn job_dirs(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Runs `file` until its job has `n` retained checkpoints for which `ready` holds, then
/// Ctrl-C (checkpoints are kept). Returns its job dir.
fn run_until(
    dir: &Path,
    file: &Path,
    n: usize,
    extra: &[&str],
    ready: impl Fn(&Path) -> bool,
) -> PathBuf {
    let before = job_dirs(&dir.join("ck"));
    let log = std::fs::File::create(dir.join("floe.log")).unwrap();
    let mut child: Child = floe()
        .current_dir(dir)
        .arg("run")
        .arg(file)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut job = None;
    wait_for("the job's checkpoints", || {
        job = job_dirs(&dir.join("ck"))
            .into_iter()
            .find(|d| !before.contains(d));
        job.as_ref().is_some_and(|j| {
            let done = completed(j);
            done.len() >= n && done.iter().rev().take(n).all(|(_, c)| ready(c))
        })
    });
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    assert!(child.wait().unwrap().success());
    job.unwrap()
}

fn run(dir: &Path, args: &[&str]) -> Output {
    floe()
        .current_dir(dir)
        .arg("run")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn latest_is_the_newest_checkpoint_of_this_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let a = pipeline(dir.path(), "alpha");
    let b = pipeline(dir.path(), "beta");
    let job_a = run_until(dir.path(), &a, 2, &[], |_| true);
    // beta ran later: its checkpoints are newer, and must not be picked for alpha.
    run_until(dir.path(), &b, 2, &[], |_| true);
    let newest_a = completed(&job_a).pop().unwrap();
    let job_dirs = || std::fs::read_dir(dir.path().join("ck")).unwrap().count();
    let before = job_dirs();
    let out = run(
        dir.path(),
        &[a.to_str().unwrap(), "-s", "latest", "--dry-run"],
    );
    assert_eq!(job_dirs(), before, "a dry run creates no job directory");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!(
            "restore from {} (checkpoint {})",
            newest_a.1.display(),
            newest_a.0
        )),
        "{stdout}"
    );

    let c = pipeline(dir.path(), "gamma");
    let out = run(dir.path(), &[c.to_str().unwrap(), "-s", "latest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("no complete checkpoint of pipeline \"gamma\"")
            && stderr.contains(&dir.path().join("ck").display().to_string()),
        "{stderr}"
    );
}

/// The checkpoint's state file, if its keyed state went to one (above the inline threshold).
fn find_state_file(chk: &Path) -> Option<PathBuf> {
    std::fs::read_dir(chk)
        .ok()?
        .map(|e| e.unwrap().path())
        .find(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("_metadata")
        })
}

fn state_file(chk: &Path) -> PathBuf {
    find_state_file(chk).expect("a state file above the inline threshold")
}

#[test]
fn missing_or_corrupt_state_files_name_an_older_intact_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "broken");
    let settings = [
        "-D",
        "state.backend.fs.memory-threshold=1kb",
        "-D",
        "state.checkpoints.num-retained=3",
    ];
    // Three checkpoints whose keyed state is in a file: the state must have grown past the
    // 1 kb threshold, however few records the first checkpoints saw.
    let job = run_until(dir.path(), &p, 3, &settings, |c| {
        find_state_file(c).is_some()
    });
    let chks = completed(&job);
    let [.., (_, c1), (_, c2), (_, c3)] = chks.as_slice() else {
        panic!("three checkpoints: {chks:?}");
    };

    // The newest loses a state file.
    let gone = state_file(c3);
    std::fs::remove_file(&gone).unwrap();
    let out = run(
        dir.path(),
        &[p.to_str().unwrap(), "-s", c3.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&gone.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(stderr.contains("is missing"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "an older checkpoint is intact: {0}; restore it with -s {0}",
            c2.display()
        )),
        "{stderr}"
    );

    // The one before gets a flipped byte: restoring it says so, and both now point at c1.
    let bad = state_file(c2);
    let mut bytes = std::fs::read(&bad).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    std::fs::write(&bad, bytes).unwrap();
    let out = run(
        dir.path(),
        &[p.to_str().unwrap(), "-s", c2.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
    assert!(stderr.contains("is corrupt"), "{stderr}");
    assert!(
        stderr.contains(&format!("intact: {}", c1.display())),
        "{stderr}"
    );
    let out = run(
        dir.path(),
        &[p.to_str().unwrap(), "-s", c3.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("intact: {}", c1.display())),
        "{stderr}"
    );
}

/// A pipeline whose source fails at once: a socket nothing listens on.
fn failing_pipeline(dir: &Path) -> PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "name: failing
checkpointing:
  interval: 1 s
  checkpoint-dir: {ck}
operators:
  - {{id: source, type: socket, host: 127.0.0.1, port: {port}}}
  - {{id: sink, type: blackhole, inputs: [source]}}
",
        ck = dir.join("ck").display()
    );
    let path = dir.join("failing.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn with_checkpointing_the_default_strategy_restarts_and_ctrl_c_ends_the_wait() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let file = failing_pipeline(dir.path());
    let mut child = floe()
        .current_dir(dir.path())
        .arg("run")
        .arg(&file)
        // Long enough that the stop surely lands in the wait.
        .args([
            "-D",
            "restart-strategy.exponential-delay.initial-backoff=1 h",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen
        .iter()
        .any(|l: &String| l.contains("failed; restarting in"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("no restart announced: {seen:#?}"),
        }
    }
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = child.wait().unwrap();
    seen.extend(rx.iter());
    let text = seen.join("\n");
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("was stopped while waiting to restart after a failure"),
        "{text}"
    );
}
