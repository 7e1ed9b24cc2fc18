//! Storage faults (issue 7, point 2) through the real binary: an S3 endpoint that refuses
//! connections fails each checkpoint after the retries, and the failures count towards
//! `execution.checkpointing.tolerable-failed-checkpoints` (the job fails past it); an endpoint
//! that accepts connections and never answers makes checkpoints expire while records keep
//! flowing to the sink. The endpoints are real TCP sockets on 127.0.0.1; no S3 server is
//! needed.

mod common;
use common::{floe, wait_for};

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn pipeline(dir: &Path, config: &str) -> std::path::PathBuf {
    let text = format!(
        "name: s3-faults
checkpointing:
  interval: 200 ms
  checkpoint-dir: s3://ckpt/faults
config:
{config}
operators:
  - {{id: source, type: datagen, words-per-line: 5, vocab: 300, seed: 3, rate: 2000}}
  - {{id: split, type: flat_map, inputs: [source]}}
  - {{id: count, type: key_by, inputs: [split], key: word, aggregate: count}}
  - {{id: print, type: print, inputs: [count]}}
"
    );
    let path = dir.join("p.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn command(endpoint: &str) -> std::process::Command {
    let mut c = floe();
    c.env("FLOE_S3_ENDPOINT", endpoint)
        .env("FLOE_S3_PATH_STYLE_ACCESS", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "testsecret")
        .env("RUST_LOG", "info");
    c
}

#[test]
fn unreachable_storage_fails_checkpoints_up_to_the_tolerable_count() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: connections are refused (a temporary error, retried).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = pipeline(
        dir.path(),
        "  execution.checkpointing.tolerable-failed-checkpoints: 1\n  restart-strategy.type: none",
    );
    let out = command(&format!("http://127.0.0.1:{port}"))
        .current_dir(dir.path())
        .args(["run", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the job fails: {stderr}");
    assert!(
        stderr.contains("Exceeded checkpoint tolerable failure threshold"),
        "{stderr}"
    );
    // Two checkpoints failed (tolerable 1), each on a storage error naming the object.
    assert!(
        stderr.contains("s3://ckpt/faults/"),
        "errors name the path: {stderr}"
    );
    assert!(
        !out.stdout.is_empty(),
        "records reached the sink while checkpoints failed"
    );
}

#[test]
fn a_hung_endpoint_lets_checkpoints_expire_while_records_keep_flowing() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts connections and never answers: every request hangs.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let file = pipeline(
        dir.path(),
        // Threshold 0: state goes to files, so the hang is in the state writes, which the
        // checkpoint timeout covers. (A hung `_metadata` write keeps its checkpoint pending
        // until storage answers or its request times out; records flow all the same.)
        "  execution.checkpointing.timeout: 1 s\n  \
         execution.checkpointing.tolerable-failed-checkpoints: 1000\n  \
         state.storage.fs.memory-threshold: 0",
    );
    let log = dir.path().join("run.log");
    let mut child = command(&format!("http://127.0.0.1:{port}"))
        .current_dir(dir.path())
        .args(["run", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let lines = Arc::new(AtomicUsize::new(0));
    let stdout = child.stdout.take().unwrap();
    let counter = lines.clone();
    std::thread::spawn(move || {
        for _ in BufReader::new(stdout).lines() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let expired = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("expired before completing")
            .count()
    };
    wait_for("two checkpoints to expire", || expired() >= 2);
    // Records still arrive after checkpoints hung on storage and expired.
    let seen = lines.load(Ordering::Relaxed);
    wait_for("records after the expiries", || {
        lines.load(Ordering::Relaxed) >= seen + 1_000
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the job is still running"
    );
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("Completed checkpoint"), "{text}");
}
