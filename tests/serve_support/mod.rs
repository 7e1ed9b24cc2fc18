//! Helpers of the `floe serve` tests: a service process on a free port with its log
//! collected, a word count over a followed input directory into the exactly-once `file` sink,
//! the expected counts of what the test wrote, and the REST calls.
#![allow(dead_code)]

use floe::cli::client::{Client, Endpoint};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `cond` until it holds; panics naming `what` after a deadline far above any normal
/// run (it only turns a hang into a failure).
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A test's directory: `conf/`, `pipelines/`, `in/` (the followed input), `out/` (the sink),
/// `ck/` (checkpoints).
pub struct Layout {
    pub root: tempfile::TempDir,
}

/// The token of [`Layout::submitting`]'s service.
pub const SUBMIT_TOKEN: &str = "submit-test-token";

impl Layout {
    /// A service that takes submissions (`web.submit.enable` and a token) reading and
    /// writing under the layout's root; `extra` as in [`Layout::new`]. Every changing call
    /// to it needs the token: [`Serve::cli_with_token`].
    pub fn submitting(extra: &str) -> Layout {
        let l = Layout::new(&format!(
            "web.submit.enable: true\nrest.auth.token: {SUBMIT_TOKEN}\n{extra}"
        ));
        let conf = l.path("conf/flink-conf.yaml");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&format!(
            "web.submit.allowed-dirs: {}\n",
            l.root.path().display()
        ));
        std::fs::write(conf, text).unwrap();
        l
    }

    pub fn new(conf_extra: &str) -> Layout {
        let root = tempfile::tempdir().unwrap();
        let l = Layout { root };
        for d in ["conf", "pipelines", "in"] {
            std::fs::create_dir(l.path(d)).unwrap();
        }
        std::fs::write(
            l.path("conf/flink-conf.yaml"),
            format!(
                "state.checkpoints.dir: file://{}\nexecution.checkpointing.interval: 100 ms\n{conf_extra}",
                l.path("ck").display()
            ),
        )
        .unwrap();
        l
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// The word count of `in/` into `out/`; `extra_op` (YAML of more operators between the
    /// source and `split`, ending with an operator whose id is `pre`) changes its shape.
    pub fn wordcount(&self, name: &str, extra: Option<&str>) -> String {
        let (pre, split_input) = match extra {
            Some(e) => (e.to_string(), "pre"),
            None => (String::new(), "source"),
        };
        format!(
            "name: {name}
operators:
  - id: source
    type: file
    path: {input}
    follow: true
{pre}  - id: split
    type: flat_map
    inputs: [{split_input}]
    separator: ' '
  - id: count
    type: key_by
    inputs: [split]
    key: word
    aggregate: count
  - id: out
    type: file
    inputs: [count]
    path: {out}
    rolling:
      rollover-interval: 0
",
            input = self.path("in").display(),
            out = self.path("out").display(),
        )
    }

    /// Writes a pipeline file as an editor that saves by rename does: a hidden temporary
    /// file, then a rename over the old one.
    pub fn save_by_rename(&self, file: &str, text: &str) {
        let tmp = self.path(&format!("pipelines/.{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(&format!("pipelines/{file}"))).unwrap();
    }

    /// Appends an input file of `lines` to `in/` (written aside, then renamed in, so the
    /// source never sees half a file).
    pub fn input(&self, part: &str, lines: &[String]) {
        let tmp = self.path(&format!(".{part}"));
        std::fs::write(&tmp, lines.join("\n") + "\n").unwrap();
        std::fs::rename(&tmp, self.path(&format!("in/{part}"))).unwrap();
    }

    /// Every committed output line, sorted.
    pub fn committed(&self) -> Vec<String> {
        let out = self.path("out");
        let mut lines = Vec::new();
        let Ok(entries) = std::fs::read_dir(&out) else {
            return lines;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Ok(t) = std::fs::read_to_string(e.path()) {
                lines.extend(t.lines().map(str::to_owned));
            }
        }
        lines.sort();
        lines
    }

    /// The savepoints `floe serve` took (under `ck/floe-savepoints`).
    pub fn service_savepoints(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.path("ck/floe-savepoints"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Lines of `words_per_line` words from a small vocabulary, deterministic in `seed`.
pub fn lines(n: usize, seed: u64) -> Vec<String> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            (0..4)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("w{}", x % 23)
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The word counts of `lines`.
pub fn counts(all: &[&[String]]) -> BTreeMap<String, u64> {
    let mut c = BTreeMap::new();
    for part in all {
        for l in part.iter() {
            for w in l.split(' ') {
                *c.entry(w.to_string()).or_insert(0) += 1;
            }
        }
    }
    c
}

/// The number of updates the counts make: one per word occurrence.
pub fn updates(c: &BTreeMap<String, u64>) -> usize {
    c.values().sum::<u64>() as usize
}

/// Asserts the committed output is exactly once: every `(w,n)` for n in 1..=count(w) once,
/// nothing else.
pub fn assert_exactly_once(lines: &[String], expected: &BTreeMap<String, u64>) {
    let mut want: Vec<String> = expected
        .iter()
        .flat_map(|(w, n)| (1..=*n).map(move |i| format!("({w},{i})")))
        .collect();
    want.sort();
    let mut got = lines.to_vec();
    got.sort();
    if got != want {
        let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).take(8).collect();
        let mut seen = std::collections::HashSet::new();
        let dup: Vec<&String> = got.iter().filter(|l| !seen.insert(*l)).take(8).collect();
        panic!(
            "output is not exactly once: {} lines, {} expected; missing e.g. {missing:?}; \
             duplicated e.g. {dup:?}",
            got.len(),
            want.len()
        );
    }
}

/// A running `floe serve`.
pub struct Serve {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Starts `floe serve` over `layout`, with `env` added, and waits for its REST address.
    pub fn start(layout: &Layout, env: &[(&str, &str)]) -> Serve {
        Serve::start_with(layout, env, &[])
    }

    /// [`Serve::start`] with global options before `serve` (`--log-format json`).
    pub fn start_with(layout: &Layout, env: &[(&str, &str)], global: &[&str]) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_floe"));
        cmd.env_remove("FLOE_CONF_DIR")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env("RUST_LOG", "info")
            .env("FLOE_REST_PORT", "0")
            .current_dir(layout.root.path())
            .args(global)
            .arg("serve")
            .arg("--conf-dir")
            .arg(layout.path("conf"))
            .arg("--pipelines")
            .arg(layout.path("pipelines"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Serve::spawn(cmd)
    }

    /// Spawns `cmd` (a floe that logs `REST API listening on` at info) and waits for its
    /// REST address.
    pub fn spawn(mut cmd: Command) -> Serve {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("REST API listening on http://") {
                    // Text or JSON logs: the address ends where host:port characters end.
                    let addr: String = line[at + "REST API listening on http://".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || ".:[]-".contains(*c))
                        .collect();
                    let _ = tx.send(addr);
                }
                keep.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(DEADLINE) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "floe serve did not log its REST address; its log:\n{}",
                    log.lock().unwrap().join("\n")
                )
            }
        };
        Serve { child, addr, log }
    }

    pub fn client(&self) -> Client {
        Client::new(Endpoint::parse(&self.addr).unwrap(), None)
    }

    pub fn get(&self, path: &str) -> Value {
        self.client().get(path).unwrap()
    }

    /// `/readyz`: its status code and body.
    pub fn readyz(&self) -> (u16, Value) {
        let a = self.client().send("GET", "/readyz", None).unwrap();
        (
            a.status,
            serde_json::from_str(&a.body).unwrap_or(Value::Null),
        )
    }

    /// The text of `/metrics`.
    pub fn metrics(&self) -> String {
        self.client().send("GET", "/metrics", None).unwrap().body
    }

    /// `/pipelines/:name`.
    pub fn pipeline(&self, name: &str) -> Value {
        self.get(&format!("/pipelines/{name}"))
    }

    /// Waits until `/readyz` answers `status`; its body.
    pub fn wait_ready(&self, status: u16) -> Value {
        let mut body = Value::Null;
        wait_for(&format!("/readyz {status}"), || {
            let (s, b) = self.readyz();
            body = b;
            s == status
        });
        body
    }

    /// `/jobs/overview`'s jobs.
    pub fn jobs(&self) -> Vec<Value> {
        self.get("/jobs/overview")["jobs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until exactly one job of file `file` runs (RUNNING); its id.
    pub fn wait_running(&self, file: &str) -> String {
        let mut id = String::new();
        wait_for(&format!("a RUNNING job for {file}"), || {
            let running: Vec<Value> = self
                .jobs()
                .into_iter()
                .filter(|j| j["file"] == file && j["state"] == "RUNNING")
                .collect();
            if running.len() == 1 {
                id = running[0]["jid"].as_str().unwrap().to_string();
                true
            } else {
                false
            }
        });
        id
    }

    /// Waits until a job of `file` other than `old` runs; its id.
    pub fn wait_replaced(&self, file: &str, old: &str) -> String {
        let mut id = String::new();
        wait_for(&format!("a new RUNNING job for {file}"), || {
            match self
                .jobs_of(file)
                .into_iter()
                .find(|j| j["state"] == "RUNNING" && j["jid"] != old)
            {
                Some(j) => {
                    id = j["jid"].as_str().unwrap().to_string();
                    true
                }
                None => false,
            }
        });
        id
    }

    /// The jobs listed for `file` (running or ended).
    pub fn jobs_of(&self, file: &str) -> Vec<Value> {
        self.jobs()
            .into_iter()
            .filter(|j| j["file"] == file)
            .collect()
    }

    /// `floe <args> -m addr`.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_floe"))
            .env_remove("FLOE_CONF_DIR")
            .env("RUST_LOG", "warn")
            .args(args)
            .args(["-m", &self.addr])
            .output()
            .unwrap()
    }

    /// [`Serve::cli`] with [`SUBMIT_TOKEN`], as a client configured with it sends it.
    pub fn cli_with_token(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_floe"))
            .env_remove("FLOE_CONF_DIR")
            .env("RUST_LOG", "warn")
            .env("FLOE_REST_AUTH_TOKEN", SUBMIT_TOKEN)
            .args(args)
            .args(["-m", &self.addr])
            .output()
            .unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig}");
    }

    /// SIGTERM, then the exit status (bounded).
    pub fn terminate(mut self) -> (ExitStatus, String) {
        self.signal("-TERM");
        let status = wait_exit(&mut self.child);
        let log = self.log.lock().unwrap().join("\n");
        (status, log)
    }

    /// SIGKILL: the unclean end.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Serve {
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
        assert!(Instant::now() < deadline, "floe serve did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the committed output holds `n` lines.
pub fn wait_committed(layout: &Layout, n: usize) {
    wait_for(&format!("{n} committed output lines"), || {
        layout.committed().len() >= n
    });
}

/// Every datagram received on a notify socket; on READY=1, `on_ready` runs at once (from the
/// receiving thread).
pub fn notify_socket(
    socket: UnixDatagram,
    on_ready: impl Fn() + Send + 'static,
) -> Arc<Mutex<Vec<String>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        let mut fired = false;
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => {
                    let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if !fired && m.lines().any(|l| l == "READY=1") {
                        fired = true;
                        on_ready();
                    }
                    keep.lock().unwrap().push(m);
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    });
    got
}

/// The state lines (READY=1, RELOADING=1, STOPPING=1) in the order received.
pub fn states(got: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .flat_map(|m| m.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| matches!(l.as_str(), "READY=1" | "RELOADING=1" | "STOPPING=1"))
        .collect()
}
