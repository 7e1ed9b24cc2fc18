//! Reload benchmark (issues 6 and 14): with 1M keys of state, the time from saving an edited
//! pipeline file to the new version processing records, and, over many reloads, that the
//! service stays bounded: its resident memory, the disk used and the number of files under
//! the checkpoint and savepoint directories.
//!
//! `cargo bench --bench reload` starts `floe serve` (the binary cargo built for this bench)
//! over a directory with one word count (datagen, vocab FLOE_BENCH_VOCAB, default 1,000,000 →
//! filter → flat_map → key_by count → blackhole; checkpoints every second), lets
//! FLOE_BENCH_FILL_WORDS words through (default 10M, so that nearly every key is in the
//! state: 1 - e^-10 of them), then, for FLOE_BENCH_RUNS runs (default 200), saves the file
//! with the filter's condition changed (by rename, as an editor does) and times, from just
//! before the rename, until the new job's `count` operator has read records (REST, polled
//! every millisecond). That covers the watcher's debounce, validation, the
//! stop-with-savepoint of the old version (1M keys written), the new job's restore (1M keys
//! read) and its first records. Then `floe reload` waits until the new version passed its
//! probation (its first checkpoint), and the process's RSS (`/proc/<pid>/status`), the bytes
//! and files under `ck/` (checkpoints, with the service savepoints in `ck/floe-savepoints`)
//! are measured; a row every FLOE_BENCH_EVERY runs (default 10).

#[path = "../tests/common/mod.rs"]
mod common;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const WORDS_PER_LINE: u64 = 10;

fn pipeline(vocab: u64, condition: &str) -> String {
    format!(
        "name: reload-bench
operators:
  - id: source
    type: datagen
    words-per-line: {WORDS_PER_LINE}
    vocab: {vocab}
    seed: 42
  - id: pre
    type: filter
    inputs: [source]
    condition: '{condition}'
  - id: split
    type: flat_map
    inputs: [pre]
    separator: ' '
  - id: count
    type: key_by
    inputs: [split]
    key: word
    aggregate: count
  - id: out
    type: blackhole
    inputs: [count]
"
    )
}

/// GET `path` from the REST API at `addr`: the body.
fn get_text(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    Some(raw.split_once("\r\n\r\n")?.1.to_string())
}

fn get(addr: &str, path: &str) -> Option<Value> {
    let body = get_text(addr, path)?;
    let (a, b) = (body.find('{')?, body.rfind('}')?);
    serde_json::from_str(&body[a..=b]).ok()
}

/// The running job's id, and the records its `count` operator has received (`/jobs/:id`'s
/// per-operator counters; the chain's vertex counts only what enters its head).
fn running(addr: &str) -> Option<(String, u64)> {
    let jobs = get(addr, "/jobs/overview")?;
    let id = jobs["jobs"]
        .as_array()?
        .iter()
        .find(|j| j["state"] == "RUNNING")?["jid"]
        .as_str()?
        .to_string();
    let job = get(addr, &format!("/jobs/{id}"))?;
    let read = job["vertices"]
        .as_array()?
        .iter()
        .flat_map(|v| v["operators"].as_array().cloned().unwrap_or_default())
        .filter(|o| o["id"] == "count")
        .filter_map(|o| o["records-in"].as_u64())
        .sum();
    Some((id, read))
}

/// Resident memory of process `pid`, in bytes (Linux; 0 elsewhere).
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// Bytes and files under `p`.
fn usage(p: &Path) -> (u64, u64) {
    std::fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => usage(&e.path()),
                    Ok(m) => (m.len(), 1),
                    Err(_) => (0, 0),
                })
                .fold((0, 0), |(b, f), (b2, f2)| (b + b2, f + f2))
        })
        .unwrap_or((0, 0))
}

/// `floe reload -m addr`: returns once the edit is applied and its probation passed.
fn reload(addr: &str) -> bool {
    common::floe()
        .args(["reload", "-m", addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[expect(
    clippy::zombie_processes,
    reason = "returned to main, which waits for it"
)]
fn start(dir: &Path) -> (Child, String) {
    let log = std::fs::File::create(dir.join("serve.log")).expect("log");
    let mut child = common::floe()
        .env("RUST_LOG", "info")
        .current_dir(dir)
        .args(["serve", "--conf-dir"])
        .arg(dir.join("conf"))
        .arg("--pipelines")
        .arg(dir.join("pipelines"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start floe serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
        if let Some(at) = text.find("REST API listening on http://") {
            let addr = text[at + "REST API listening on http://".len()..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            return (child, addr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("floe serve did not start:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let vocab = env_u64("FLOE_BENCH_VOCAB", 1_000_000);
    let fill = env_u64("FLOE_BENCH_FILL_WORDS", 10_000_000);
    let runs = env_u64("FLOE_BENCH_RUNS", 200).max(1);
    let every = env_u64("FLOE_BENCH_EVERY", 10).max(1);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    for d in ["conf", "pipelines"] {
        std::fs::create_dir(dir.join(d)).expect("mkdir");
    }
    std::fs::write(
        dir.join("conf/flink-conf.yaml"),
        format!(
            "state.checkpoints.dir: file://{}\nrest.port: 0\n\
             execution.checkpointing.interval: 1 s\n",
            dir.join("ck").display()
        ),
    )
    .expect("conf");
    let file = dir.join("pipelines/wc.yaml");
    std::fs::write(&file, pipeline(vocab, "true")).expect("pipeline");
    let (mut child, addr) = start(dir);
    let fill_start = Instant::now();
    loop {
        if let Some((_, read)) = running(&addr) {
            if read >= fill {
                break;
            }
        }
        assert!(
            fill_start.elapsed() < Duration::from_secs(600),
            "the state did not fill"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "state filled: {fill} words over vocab {vocab} in {:.1} s",
        fill_start.elapsed().as_secs_f64()
    );
    let mut times = Vec::new();
    let ck = dir.join("ck");
    let mut rows: Vec<(u64, u64, u64, u64, u64, u64)> = Vec::new();
    println!("reload  RSS MB  ck MB  ck files  savepoints MB  savepoint files  job dirs");
    for run in 0..runs {
        let (old, _) = running(&addr).expect("a running job");
        let condition = if run % 2 == 0 {
            "line != \"never\""
        } else {
            "true"
        };
        let tmp_file = dir.join("pipelines/.wc.yaml.tmp");
        std::fs::write(&tmp_file, pipeline(vocab, condition)).expect("edit");
        let t0 = Instant::now();
        std::fs::rename(&tmp_file, &file).expect("save");
        loop {
            if let Some((id, read)) = running(&addr) {
                if id != old && read > 0 {
                    break;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "the new version did not run; see {}",
                dir.join("serve.log").display()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = t0.elapsed();
        times.push(took);
        assert!(
            reload(&addr),
            "floe reload failed; see {}",
            dir.join("serve.log").display()
        );
        let n = run + 1;
        if n % every == 0 || n <= 3 || n == runs {
            let sp = ck.join("floe-savepoints");
            let (sp_bytes, sp_files) = usage(&sp);
            let (all_bytes, all_files) = usage(&ck);
            let job_dirs = std::fs::read_dir(&ck)
                .map(|d| d.flatten().filter(|e| e.file_name().len() == 32).count() as u64)
                .unwrap_or(0);
            let row = (
                n,
                rss(child.id()),
                all_bytes - sp_bytes,
                all_files - sp_files,
                sp_bytes,
                sp_files,
            );
            println!(
                "{:>6}  {:>6.0}  {:>5.1}  {:>8}  {:>13.1}  {:>15}  {:>8}",
                row.0,
                row.1 as f64 / 1e6,
                row.2 as f64 / 1e6,
                row.3,
                row.4 as f64 / 1e6,
                row.5,
                job_dirs
            );
            rows.push(row);
        }
    }
    let savepoints = dir.join("ck/floe-savepoints");
    let last = std::fs::read_dir(&savepoints)
        .ok()
        .and_then(|d| d.flatten().map(|e| e.path()).max())
        .map(|p| dir_size(&p))
        .unwrap_or(0);
    times.sort();
    if let (Some(first), Some(last)) = (rows.iter().find(|r| r.0 >= 3), rows.last()) {
        println!(
            "after reload {} → {}: RSS {:.0} → {:.0} MB, checkpoints {:.1} → {:.1} MB in {} → {} \
             files, savepoints {:.1} → {:.1} MB in {} → {} files",
            first.0,
            last.0,
            first.1 as f64 / 1e6,
            last.1 as f64 / 1e6,
            first.2 as f64 / 1e6,
            last.2 as f64 / 1e6,
            first.3,
            last.3,
            first.4 as f64 / 1e6,
            last.4 as f64 / 1e6,
            first.5,
            last.5
        );
    }
    println!(
        "save → new version processing, 1M-key state (savepoint {:.1} MB): median {} ms, p95 {} ms, \
         max {} ms ({runs} runs; includes the {} ms debounce)",
        last as f64 / 1e6,
        times[times.len() / 2].as_millis(),
        times[(times.len() * 95).div_ceil(100).saturating_sub(1)].as_millis(),
        times[times.len() - 1].as_millis(),
        floe::service::watcher::DEBOUNCE.as_millis()
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
