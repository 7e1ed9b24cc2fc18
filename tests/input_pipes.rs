//! Unix manners, through the binary: when the reader of floe's stdout or stderr goes away
//! (`floe run p.yaml 2>&1 | head -1`, `floe serve … | head -5`), floe stops its jobs as on
//! Ctrl-C and exits 0, never a panic (101); `floe serve` takes `-D` as `floe run` does, and
//! its port-clash error advises that flag.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn floe(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_floe"));
    c.env_remove("FLOE_CONF_DIR")
        .env_remove("FLOE_REST_PORT")
        .env("RUST_LOG", "info")
        .current_dir(dir)
        .arg("--conf-dir")
        .arg(dir.join("conf"));
    c
}

/// A temp dir with a conf (checkpoints and savepoints inside it) and an unbounded pipeline
/// printing generated lines.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("conf")).unwrap();
    std::fs::create_dir_all(d.join("pipelines")).unwrap();
    std::fs::write(
        d.join("conf/flink-conf.yaml"),
        format!(
            "execution.checkpointing.dir: {}\nexecution.checkpointing.savepoint-dir: {}\n",
            d.join("ck").display(),
            d.join("sp").display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("pipelines/gen.yaml"),
        "name: gen\noperators:\n  - {id: s, type: datagen, rate: 200}\n  - {id: p, type: print, inputs: [s]}\n",
    )
    .unwrap();
    dir
}

/// Waits for `child` to exit; kills it and fails after a minute (a floe that does not notice
/// its closed output never exits: that is the failure this detects).
fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{what}: floe did not stop after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_with_stdout_and_stderr_into_a_closed_pipe_stops_cleanly() {
    // `floe run gen.yaml 2>&1 | head -1`
    let dir = setup();
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = floe(dir.path())
        .args(["run", "pipelines/gen.yaml", "-D", "rest.port=0"])
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(reader).read_line(&mut first).unwrap();
    assert!(!first.is_empty());
    // The reader is gone: the next write finds the pipe closed.
    let status = wait_exit(&mut child, "run 2>&1 | head -1");
    assert_eq!(status.code(), Some(0), "a clean stop, not a panic (101)");
}

#[test]
fn run_with_stdout_closed_stops_the_job_as_on_ctrl_c() {
    // `floe run gen.yaml | head -2`, stderr kept to see why it stopped.
    let dir = setup();
    let mut child = floe(dir.path())
        .args(["run", "pipelines/gen.yaml", "-D", "rest.port=0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..2 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with('w'), "{line}");
    }
    drop(stdout);
    let status = wait_exit(&mut child, "run | head -2");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.contains("the reader of stdout or stderr went away: stopping the job as on Ctrl-C"),
        "{err}"
    );
    assert!(
        err.contains("has finished") || err.contains("Job Runtime"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn serve_with_its_output_closed_stops_every_job_with_a_savepoint() {
    // `floe serve … | head -5`, with -D as `floe run` takes it.
    let dir = setup();
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = floe(dir.path())
        .args(["serve", "--pipelines", "pipelines", "-D", "rest.port=0"])
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(reader);
    // Records only come once the job runs: five lines of generated words.
    let mut words = 0;
    while words < 5 {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "serve ended early"
        );
        if line.starts_with('w') {
            words += 1;
        }
    }
    drop(reader);
    let status = wait_exit(&mut child, "serve | head -5");
    assert_eq!(
        status.code(),
        Some(0),
        "every job stopped with a final savepoint"
    );
    let savepoints: Vec<_> = std::fs::read_dir(dir.path().join("sp"))
        .map(|d| d.filter_map(Result::ok).collect())
        .unwrap_or_default();
    assert_eq!(savepoints.len(), 1, "the job's final savepoint");
}

#[test]
fn serve_port_clash_advises_the_d_flag_it_accepts() {
    let dir = setup();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = floe(dir.path())
        .args(["serve", "--pipelines", "pipelines", "-D"])
        .arg(format!("rest.port={port}"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("-D rest.port="), "{err}");
    assert!(
        !err.contains("unexpected argument"),
        "serve takes -D: {err}"
    );
}
