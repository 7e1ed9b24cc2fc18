//! The binary as a user drives it: `validate` exit codes, `config` origins, the socket word
//! count (pipelines/socket-wordcount.yaml) against a real listener, its error when nothing listens, and a
//! clean stop on SIGINT.

mod common;
use common::floe;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn validate_exits_0_for_the_shipped_pipelines_and_78_for_a_broken_one() {
    let mut files: Vec<_> = std::fs::read_dir(repo().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "pipelines/ holds the three word counts");
    let out = floe().arg("validate").args(&files).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad\noperators:\n  - id: src\n    type: datagenn\n",
    )
    .unwrap();
    let out = floe().arg("validate").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml"), "names the file: {err}");
    assert!(err.contains("datagen"), "suggests the right type: {err}");
}

#[test]
fn config_shows_each_value_with_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(
        conf.join("flink-conf.yaml"),
        "state.checkpoints.num-retained: 3\nexecution.checkpointing.interval: 5 s\n",
    )
    .unwrap();
    let out = floe()
        .args(["config", "--conf-dir"])
        .arg(&conf)
        .args(["-D", "execution.checkpointing.interval=2s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("{key} missing from:\n{text}"))
            .to_string()
    };
    let retained = line("execution.checkpointing.num-retained");
    assert!(
        retained.contains('3') && retained.contains("flink-conf.yaml:1"),
        "{retained}"
    );
    let interval = line("execution.checkpointing.interval");
    assert!(interval.contains("-D"), "the -D layer wins: {interval}");
}

fn socket_pipeline(dir: &Path, port: u16) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo().join("pipelines/socket-wordcount.yaml")).unwrap();
    let text = text.replace("8888", &port.to_string());
    let path = dir.join("socket-wordcount.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn socket_wordcount_counts_lines_from_a_real_listener_and_stops_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let file = socket_pipeline(dir.path(), port);
    let mut child = floe()
        .current_dir(dir.path())
        .arg("run")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(b"hello world\nhello floe\nhello\n").unwrap();
    conn.flush().unwrap();

    // Read updates until the last one we expect arrives: no timing guesses.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l == "(hello,3)") {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "floe ended early; got {lines:?}");
        lines.push(line.trim_end().to_string());
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "a stop by SIGINT is a clean exit");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    lines.extend(rest.lines().map(str::to_string));
    lines.sort();
    assert_eq!(
        lines,
        [
            "(floe,1)",
            "(hello,1)",
            "(hello,2)",
            "(hello,3)",
            "(world,1)"
        ]
    );
}

#[test]
fn socket_source_names_the_address_when_nothing_listens() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was free a moment ago and has no listener now.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = socket_pipeline(dir.path(), port);
    // With checkpointing on, Flink's default strategy restarts for ever: fail at once instead.
    let out = floe()
        .current_dir(dir.path())
        .arg("run")
        .arg(&file)
        .args(["-D", "restart-strategy.type=none"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&port.to_string()), "names the port: {err}");
    assert!(err.contains("source"), "names the operator: {err}");
    assert!(
        err.contains("Recovery is suppressed by NoRestartBackoffTimeStrategy"),
        "{err}"
    );
}
