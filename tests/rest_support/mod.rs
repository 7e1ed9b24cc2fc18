//! Helpers for the REST tests: a minimal HTTP/1.1 client over a real socket, registry entries
//! built without running a job, golden JSON with volatile values normalised.
#![allow(dead_code)]

use floe::checkpoint::coordinator::{CheckpointStats, CompletedStats, FailedStats};
use floe::checkpoint::{CheckpointId, JobId};
use floe::config::{Config, Entry, Origin};
use floe::pipeline::plan::Plan;
use floe::runtime::{JobMetrics, OperatorMetrics};
use floe::service::registry::{JobRegistration, RestoreInfo, VertexInfo};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first message of a Flink error body.
    pub fn error(&self) -> String {
        let v = self.json();
        v["errors"][0]
            .as_str()
            .unwrap_or_else(|| panic!("no errors[0] in {v}"))
            .to_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {text:?}"));
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, &[], None).await
}

pub async fn post_json(addr: SocketAddr, path: &str, body: &str) -> Answer {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(body),
    )
    .await
}

/// Polls `GET path` until `done` holds on the JSON, for asynchronous operations.
pub async fn poll_until(addr: SocketAddr, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..6000 {
        let a = get(addr, path).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        let v = a.json();
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out polling {path}");
}

pub const JOB_A: &str = "8f797489a0bbec8f9bbc61e6b7e3f916";
pub const JOB_B: &str = "c6262c8c575ee200f2f6ab743e9c9e2d";

/// The word count pipeline's plan at parallelism 2.
pub fn wordcount_plan() -> Plan {
    let text = "name: wordcount
operators:
  - {id: source, type: datagen, words-per-line: 5, vocab: 300, seed: 3}
  - {id: split, type: flat_map, inputs: [source]}
  - {id: count, type: key_by, inputs: [split], key: word, aggregate: count}
  - {id: print, type: print, inputs: [count]}
";
    let p = floe::pipeline::parse(text, Path::new("wordcount.yaml")).unwrap();
    Plan::build(&p, 2, None).unwrap()
}

/// Metrics with fixed counts for the plan's operators.
pub fn fixed_metrics(plan: &Plan) -> Arc<JobMetrics> {
    let mut ops = Vec::new();
    for (i, t) in plan.tasks.iter().enumerate() {
        for (k, o) in t.operators.iter().enumerate() {
            let m = OperatorMetrics::new(o.id.clone(), t.parallelism);
            let n = 100 * (i + 1) + 10 * k;
            m.subtasks[0].add(n, 2 * n);
            ops.push(Arc::new(m));
        }
    }
    Arc::new(JobMetrics {
        operators: ops,
        channels_blocked: Default::default(),
    })
}

pub fn completed(id: u64) -> CompletedStats {
    CompletedStats {
        id: CheckpointId(id),
        path: PathBuf::from(format!("/data/ck/{JOB_A}/chk-{id}")),
        size: 4000 + id,
        duration_ms: 20 * id,
        trigger_timestamp_ms: 1_795_515_530_000 + 1000 * id,
        completion_timestamp_ms: 1_795_515_530_000 + 1000 * id + 20 * id,
    }
}

/// Three completed checkpoints, then a failed one.
pub fn fixed_stats() -> CheckpointStats {
    let mut s = CheckpointStats::default();
    for id in 1..=3 {
        s.on_triggered();
        s.on_completed(completed(id));
    }
    s.on_triggered();
    s.on_failed(
        FailedStats {
            id: CheckpointId(4),
            reason: "Checkpoint expired before completing.".into(),
            failure_timestamp_ms: 1_795_515_535_000,
        },
        1,
    );
    s
}

/// A configuration with checkpointing every 2 s into `/data/ck`, savepoints into `sp_dir`.
pub fn checkpoint_config(sp_dir: Option<&Path>) -> Config {
    let mut c = Config::default();
    c.checkpointing.interval = Some(Duration::from_secs(2));
    c.state.checkpoints_dir = Some("file:///data/ck".into());
    c.state.savepoints_dir = sp_dir.map(|d| d.display().to_string());
    c
}

/// A registration of the word count with fixed metrics and statistics.
pub fn registration(id: &str, stats: Option<CheckpointStats>, config: Config) -> JobRegistration {
    let plan = wordcount_plan();
    let stats = stats.map(|s| {
        let s = Arc::new(Mutex::new(s));
        let f: floe::service::registry::StatsSource =
            Arc::new(move || Some(s.lock().unwrap().clone()));
        f
    });
    JobRegistration {
        id: JobId(id.into()),
        name: "wordcount".into(),
        start_time: 1_795_515_514_183,
        vertices: VertexInfo::from_plan(&plan),
        metrics: fixed_metrics(&plan),
        stats,
        config: Arc::new(config),
        entries: Arc::new(vec![
            Entry {
                key: "execution.checkpointing.interval".into(),
                value: "2 s".into(),
                origin: Origin::Dynamic {
                    arg: "execution.checkpointing.interval=2 s".into(),
                },
                written_as: None,
            },
            Entry {
                key: "parallelism.default".into(),
                value: "1".into(),
                origin: Origin::Default,
                written_as: None,
            },
        ]),
        restore: Some(RestoreInfo {
            id: 37,
            restore_timestamp: 1_795_515_596_497,
            is_savepoint: true,
            external_path: "file:/data/sp/savepoint-8f7974-8dae5167eb70".into(),
        }),
    }
}

/// Keys whose values change from run to run.
const VOLATILE: &[&str] = &[
    "duration",
    "now",
    "last-modification",
    "end-time",
    "request-id",
];

/// Replaces volatile values (times measured now, generated ids) with placeholders; `-1`
/// (not ended) is kept.
pub fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if VOLATILE.contains(&k.as_str()) && x.as_i64() != Some(-1) {
                    *x = Value::from("<volatile>");
                } else if k == "timestamps" {
                    if let Value::Object(ts) = x {
                        for t in ts.values_mut() {
                            if !matches!(t.as_u64(), Some(0 | 1_795_515_514_183)) {
                                *t = Value::from("<volatile>");
                            }
                        }
                    }
                } else {
                    normalize(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// Compares `actual` (normalised) with `tests/golden/rest/<name>.json`; `UPDATE_EXPECT=1`
/// rewrites the file.
pub fn assert_golden(name: &str, mut actual: Value) {
    normalize(&mut actual);
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/rest")
        .join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_EXPECT=1", file.display()));
    let expected: Value = serde_json::from_str(&expected).unwrap();
    assert_eq!(
        actual,
        expected,
        "{} differs; run with UPDATE_EXPECT=1 and review the diff\nactual:\n{text}",
        file.display()
    );
}
