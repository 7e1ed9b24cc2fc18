//! The manual-savepoint routine of Flink's checkpoint tutorials (docs/rest-and-dashboard.md), end to end through the binary: run the
//! socket word count, look up the job id, trigger a savepoint from the CLI into a directory,
//! stop the job, restore from the savepoint with `-n -s`, and see the counts continue; then
//! dispose of the savepoint with `savepoint -d`.

mod common;
use common::{floe, wait_for};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::mpsc;

/// Starts `floe run` on the socket word count with the REST API on a free port;
/// returns the child, its stdout and the API address read from its log.
fn start(dir: &Path, port: u16, extra: &[&str]) -> (Child, BufReader<ChildStdout>, String) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/socket-wordcount.yaml"),
    )
    .unwrap()
    .replace("8888", &port.to_string())
    .replace(
        "file:///tmp/flink/checkpoints",
        &format!("file://{}/ck", dir.display()),
    );
    let file = dir.join("socket-wordcount.yaml");
    std::fs::write(&file, text).unwrap();
    let mut child = floe()
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .arg("run")
        .arg(&file)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log on a thread (so floe never blocks on a full pipe) and pass on the address.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("REST API listening on http://") {
                let addr = line[at + "REST API listening on http://".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("floe logs the REST address");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout, addr)
}

/// Reads printed updates until `want` has been printed.
fn read_until(out: &mut BufReader<ChildStdout>, want: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "floe ended; got {lines:?}"
        );
        let line = line.trim_end().to_string();
        let done = line == want;
        lines.push(line);
        if done {
            return lines;
        }
    }
}

#[test]
fn savepoint_from_the_cli_then_restore_with_n_s_continues_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let sp_root = dir.path().join("savepoints");
    std::fs::create_dir(&sp_root).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sp_conf = format!("state.savepoints.dir={}", sp_root.display());

    let (mut job, mut out, addr) = start(dir.path(), port, &["-D", &sp_conf]);
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(b"hello world\nhello\n").unwrap();
    read_until(&mut out, "(hello,2)");

    // The job id, as a Flink user looks it up on the web page.
    let list = floe().args(["list", "-m", &addr]).output().unwrap();
    let listing = String::from_utf8_lossy(&list.stdout).to_string();
    let job_id = listing
        .split(" : ")
        .nth(1)
        .unwrap_or_else(|| panic!("a running job in:\n{listing}"))
        .to_string();

    let sp = floe()
        .args(["savepoint", "-m", &addr, &job_id])
        .arg(&sp_root)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&sp.stdout).to_string();
    assert!(
        sp.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&sp.stderr)
    );
    let path = said
        .lines()
        .find_map(|l| l.strip_prefix("Savepoint completed. Path: "))
        .unwrap_or_else(|| panic!("savepoint path in:\n{said}"))
        .trim_start_matches("file:")
        .to_string();
    let name = Path::new(&path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(
        name.starts_with(&format!("savepoint-{}-", &job_id[..6])),
        "{name}"
    );
    assert!(Path::new(&path).join("_metadata").is_file());

    // Stop the job (as a Flink user stops the cluster), then restore with -n -s.
    let status = std::process::Command::new("kill")
        .args(["-INT", &job.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(job.wait().unwrap().code(), Some(0));
    drop(conn);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();

    let (mut job, mut out, _) = start(dir.path(), port, &["-n", "-s", &path]);
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(b"hello floe\n").unwrap();
    // "hello" goes on from the savepoint's 2; a restore from nothing would print (hello,1).
    let lines = read_until(&mut out, "(floe,1)");
    assert_eq!(lines, ["(hello,3)", "(floe,1)"]);
    let status = std::process::Command::new("kill")
        .args(["-INT", &job.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(job.wait().unwrap().code(), Some(0));

    // Dispose of it; only its files go.
    let d = floe().args(["savepoint", "-d", &path]).output().unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    wait_for("the savepoint to be gone", || !Path::new(&path).exists());
    assert!(sp_root.is_dir(), "the savepoint root stays");
}
