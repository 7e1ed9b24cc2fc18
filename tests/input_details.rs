//! The smaller points of bad or odd input, through the binary: relative paths in a pipeline
//! resolve against its directory; a cancelled attached job is a failure (Flink's words);
//! `-n` logs each operator's state it skips (Flink's words); a duplicate YAML key is reported
//! at its own line; a FIFO as pipeline file is refused at once; a directory without
//! `_metadata` gets a clean error; `-p 0` is a `-p` error; `floe run` says which conf file it
//! read, and warns when it runs on the built-in defaults.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn floe(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_floe"));
    c.env_remove("FLOE_CONF_DIR")
        .env("RUST_LOG", "warn")
        .env("FLOE_REST_PORT", "0")
        .current_dir(cwd);
    c
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_relative_checkpoint_dir_resolves_against_the_pipeline_file() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let file = write(
        home.path(),
        "p.yaml",
        "name: rel\ncheckpointing:\n  interval: 20 ms\n  checkpoint-dir: ck\n  externalized-checkpoint-retention: RETAIN_ON_CANCELLATION\noperators:\n  - {id: s, type: datagen, lines: 60, rate: 100}\n  - {id: o, type: blackhole, inputs: [s]}\n",
    );
    let out = floe(elsewhere.path())
        .args(["config", "--pipeline"])
        .arg(&file)
        .output()
        .unwrap();
    let shown = text(&out.stdout);
    let want = home.path().join("ck").display().to_string();
    let line = shown
        .lines()
        .find(|l| l.starts_with("execution.checkpointing.dir"))
        .unwrap_or_default();
    assert!(line.contains(&want), "{line}");
    let out = floe(elsewhere.path())
        .arg("run")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        home.path().join("ck").is_dir(),
        "checkpoints beside the pipeline file"
    );
    assert!(
        !elsewhere.path().join("ck").exists(),
        "not in the working directory"
    );
}

/// Reads `child`'s stderr lines until `pred` gives a value.
fn read_until<T>(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    mut pred: impl FnMut(&str) -> Option<T>,
) -> T {
    for line in lines {
        let line = line.unwrap();
        if let Some(v) = pred(&line) {
            return v;
        }
    }
    panic!("floe's stderr ended early");
}

#[test]
fn a_cancelled_attached_job_is_a_failure_in_flinks_words() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "name: forever\noperators:\n  - {id: s, type: datagen, rate: 50}\n  - {id: o, type: blackhole, inputs: [s]}\n",
    );
    let mut child = floe(dir.path())
        .env("RUST_LOG", "info")
        .arg("run")
        .arg(&file)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port: String = read_until(&mut lines, |l| {
        l.split_once("REST API listening on http://127.0.0.1:")
            .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_string())
    });
    let job: String = read_until(&mut lines, |l| {
        l.strip_prefix("Job has been submitted with JobID ")
            .map(str::to_string)
    });
    // The job is announced before it is registered: wait until the API lists it running.
    let m = format!("127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        let list = floe(dir.path())
            .args(["list", "-r", "-m", &m])
            .output()
            .unwrap();
        if text(&list.stdout).contains(&job) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never listed: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cancel = floe(dir.path())
        .args(["cancel", &job, "-m", &m])
        .output()
        .unwrap();
    assert_eq!(cancel.status.code(), Some(0), "{}", text(&cancel.stderr));
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    let rest = rest.join("\n");
    assert_eq!(status.code(), Some(1), "{rest}");
    assert!(
        rest.contains(&format!("Job failed (JobID: {job})")),
        "{rest}"
    );
    assert!(rest.contains("Job was cancelled."), "{rest}");
    assert!(!rest.contains("has finished"), "{rest}");
}

#[test]
fn allow_non_restored_state_logs_each_operator_it_skips() {
    let dir = tempfile::tempdir().unwrap();
    // The fixture checkpoint holds `lines`, `gen` and `count`; this pipeline only `gen`.
    let file = write(
        dir.path(),
        "p.yaml",
        "name: wordcount\noperators:\n  - {id: gen, type: datagen, lines: 100}\n  - {id: o, type: blackhole, inputs: [gen]}\n",
    );
    let fixture = repo().join("tests/fixtures/checkpoint/v1");
    let out = floe(dir.path())
        .env("RUST_LOG", "info")
        .arg("run")
        .arg(&file)
        .arg("-s")
        .arg(&fixture)
        .args(["-n", "--dry-run"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("Skipping savepoint state for operator count."),
        "{err}"
    );
    assert!(
        err.contains("Skipping savepoint state for operator lines."),
        "{err}"
    );
    assert!(
        !err.contains("operator gen."),
        "gen's state is restored: {err}"
    );
}

#[test]
fn a_duplicate_key_is_reported_at_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "dup.yaml",
        "name: d\noperators:\n  - id: s\n    type: datagen\n    lines: 1\n    # a comment\n    lines: 2\n  - {id: o, type: blackhole, inputs: [s]}\n",
    );
    let out = floe(dir.path())
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.starts_with(&format!("{}:7: invalid YAML", file.display())),
        "the second `lines:` is on line 7: {err}"
    );
    assert!(err.contains("duplicate entry with key \"lines\""), "{err}");
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    write(
        &conf,
        "flink-conf.yaml",
        "a.b: 1\nstate.backend: hashmap\nstate.backend: x\n",
    );
    let ok = write(dir.path(), "ok.yaml", "name: d\noperators:\n  - {id: s, type: datagen, lines: 1}\n  - {id: o, type: blackhole, inputs: [s]}\n");
    let out = floe(dir.path())
        .args(["validate", "--conf-dir"])
        .arg(&conf)
        .arg(&ok)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("flink-conf.yaml:3: invalid YAML"), "{err}");
}

#[test]
fn a_fifo_as_pipeline_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("p.yaml");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let mut child = floe(dir.path())
        .arg("validate")
        .arg(&fifo)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Nothing ever writes to the FIFO: a floe that opened it for reading would wait for ever.
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("floe validate blocked on a FIFO");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(78), "{err}");
    assert!(
        err.contains("not a regular file (it is a FIFO (named pipe))"),
        "{err}"
    );
    // A directory named like a pipeline, too.
    let d = dir.path().join("d.yaml");
    std::fs::create_dir(&d).unwrap();
    let out = floe(dir.path()).args(["run"]).arg(&d).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("(it is a directory)"));
}

#[test]
fn a_directory_without_metadata_gets_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.yaml", "name: d\noperators:\n  - {id: s, type: datagen, lines: 1}\n  - {id: o, type: blackhole, inputs: [s]}\n");
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let out = floe(dir.path())
        .arg("run")
        .arg(&file)
        .args(["-s", "empty"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Cannot find meta data file '_metadata' in directory 'empty'"),
        "{err}"
    );
    assert!(!err.contains(".;"), "{err}");
    assert_eq!(
        err.matches("Cannot find meta data file").count(),
        1,
        "said once: {err}"
    );
}

#[test]
fn parallelism_zero_is_a_p_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.yaml", "name: d\noperators:\n  - {id: s, type: datagen, lines: 1}\n  - {id: o, type: blackhole, inputs: [s]}\n");
    for verb in ["run", "validate"] {
        let out = floe(dir.path())
            .args([verb, "-p", "0"])
            .arg(&file)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "a usage error: {err}");
        assert!(
            err.contains("'0'") && err.contains("--parallelism"),
            "{err}"
        );
        assert!(!err.contains("-D"), "{err}");
    }
}

#[test]
fn run_says_which_conf_file_it_read_or_that_defaults_apply() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.yaml", "name: d\noperators:\n  - {id: s, type: datagen, lines: 1}\n  - {id: o, type: blackhole, inputs: [s]}\n");
    let out = floe(dir.path())
        .env("RUST_LOG", "info")
        .arg("run")
        .arg(&file)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("WARN no conf/flink-conf.yaml in"), "{err}");
    assert!(err.contains("running with the built-in defaults"), "{err}");
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    write(
        &dir.path().join("conf"),
        "flink-conf.yaml",
        "parallelism.default: 1\n",
    );
    let out = floe(dir.path())
        .env("RUST_LOG", "info")
        .arg("run")
        .arg(&file)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(err.contains("configuration: conf/flink-conf.yaml"), "{err}");
    assert!(!err.contains("built-in defaults"), "{err}");
}
