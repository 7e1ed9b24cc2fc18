//! What the security tests share: a floe process with its log, raw HTTP requests (so a test
//! can send any Host header or body), snapshots of directory trees to prove that files
//! outside floe's directories stayed as they were, and forged `_metadata` files written with
//! floe's own encoder (a valid checksum: only the names are wrong).
#![allow(dead_code)]

use floe::checkpoint::metadata::{
    encode, BlobLocation, CheckpointMetadata, KeyedStateHandle, OperatorStateMeta, SnapshotKind,
    StateBlob, SubtaskStateMeta,
};
use floe::checkpoint::JobId;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Far above any normal wait: a failure guard, never a timing assumption.
pub const DEADLINE: Duration = Duration::from_secs(120);

pub const JOB: &str = "8f797489a0bbec8f9bbc61e6b7e3f916";

/// Polls `cond` until it holds; panics naming `what` after [`DEADLINE`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The floe binary with nothing of the developer's environment leaking in.
pub fn floe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_floe"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FLOE_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "info").env_remove("NOTIFY_SOCKET");
    c
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file and directory under `root` with its contents (directories as `<dir>`,
/// symlinks as `-> target`): equal snapshots mean nothing was written, deleted or replaced.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(rel, format!("-> {}", target.display()).into_bytes());
            } else if t.is_dir() {
                out.insert(rel, b"<dir>".to_vec());
                walk(&p, root, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// A directory full of things that must survive: files, a nested directory, a file named
/// like a state file.
pub fn victim(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    std::fs::write(dir.join("victim.txt"), "precious").unwrap();
    std::fs::write(dir.join("nested/deep.txt"), "also precious").unwrap();
    std::fs::write(
        dir.join("0b0b0b0b-0000-4000-8000-00000000000b"),
        "looks like floe's",
    )
    .unwrap();
    tree(dir)
}

/// Writes a `_metadata` into `dir` whose one keyed blob is `location`, as floe's encoder
/// writes it (valid magic, version and checksum).
pub fn write_forged(dir: &Path, kind: SnapshotKind, location: BlobLocation) {
    std::fs::create_dir_all(dir).unwrap();
    let meta = CheckpointMetadata {
        checkpoint_id: 3,
        job_id: JobId(JOB.into()),
        job_name: "wordcount".into(),
        kind,
        trigger_timestamp_ms: 1_795_515_530_000,
        completion_timestamp_ms: 1_795_515_530_100,
        operators: vec![OperatorStateMeta {
            operator_id: "count".into(),
            parallelism: 1,
            max_parallelism: 128,
            subtasks: vec![SubtaskStateMeta {
                subtask: 0,
                key_groups: Some((0, 127)),
                keyed: Some(KeyedStateHandle::Full(StateBlob {
                    location,
                    size: 8,
                    groups: Vec::new(),
                })),
                keyed_format: None,
                operator: None,
            }],
        }],
    };
    std::fs::write(dir.join("_metadata"), encode(&meta)).unwrap();
}

/// A running floe (`run` or `serve`) with its stderr collected.
pub struct Floe {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Floe {
    /// Spawns `cmd` and waits for its `REST API listening on` line.
    pub fn spawn(mut cmd: Command) -> Floe {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                const MARK: &str = "REST API listening on http://";
                if let Some(at) = line.find(MARK) {
                    let addr = line[at + MARK.len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(addr);
                }
                keep.lock().unwrap().push(line);
            }
        });
        let Ok(addr) = rx.recv_timeout(DEADLINE) else {
            let _ = child.kill();
            panic!(
                "floe did not log its REST address:\n{}",
                log.lock().unwrap().join("\n")
            );
        };
        Floe { child, addr, log }
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        wait_for(&format!("a log line with {needle:?}"), || {
            self.log.lock().unwrap().iter().any(|l| l.contains(needle))
        });
    }

    /// [`Floe::spawn`] of `floe serve`, returned once it is ready (its jobs started, its stop
    /// signal handled).
    pub fn serve(cmd: Command) -> Floe {
        let f = Floe::spawn(cmd);
        f.wait_log("floe serve: ");
        f
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// A request with `Host: <addr>` and, when given, a JSON body and a bearer token.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Answer {
        let mut headers = vec![("Host".to_string(), self.addr.clone())];
        if let Some(t) = token {
            headers.push(("Authorization".into(), format!("Bearer {t}")));
        }
        let body = body.map(|b| b.to_string());
        if body.is_some() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        request(
            &self.addr,
            method,
            path,
            &headers,
            body.as_deref().unwrap_or(""),
        )
    }

    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, None)
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = wait_exit(&mut self.child);
        // The reader thread ends with the pipe; give it the last lines.
        let deadline = Instant::now() + DEADLINE;
        let log = loop {
            let text = self.log_text();
            if Arc::strong_count(&self.log) == 1 || Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (status, log)
    }
}

impl Drop for Floe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "floe did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A raw HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// One HTTP/1.1 request with exactly these headers (plus `Connection: close` and the body's
/// length), read to the end.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_answer(&raw)
}

/// Status and (de-chunked) body of a raw HTTP/1.1 answer.
pub fn parse_answer(raw: &[u8]) -> Answer {
    let text = text(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Answer { status, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls an asynchronous operation (`GET path`) until COMPLETED; its `operation`.
pub fn wait_completed(f: &Floe, path: &str) -> Value {
    let mut op = Value::Null;
    wait_for(&format!("{path} to complete"), || {
        let a = f.get(path).json();
        if a["status"]["id"] == "COMPLETED" {
            op = a["operation"].clone();
            true
        } else {
            false
        }
    });
    op
}

/// A datagen → key_by count → blackhole pipeline named `name` in `dir` (state in operator
/// "count", as the forged `_metadata` files say).
pub fn counting_pipeline(dir: &Path, name: &str, extra_top: &str) -> PathBuf {
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!(
            "name: {name}
{extra_top}operators:
  - id: source
    type: datagen
    rate: 200
    vocab: 50
  - id: split
    type: flat_map
    inputs: [source]
  - id: count
    type: key_by
    inputs: [split]
    key: word
    aggregate: count
  - id: sink
    type: blackhole
    inputs: [count]
"
        ),
    )
    .unwrap();
    p
}
