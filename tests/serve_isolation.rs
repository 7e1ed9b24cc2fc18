//! No job stalls another (issue 14, point 7): a pipeline whose checkpoint storage is an S3
//! endpoint that accepts connections and never answers does not hold up the other
//! pipelines' checkpoints nor the REST API, and a SIGTERM still stops the service cleanly.
//! Each pipeline's `s3.*` settings are its own: with a real SeaweedFS (when installed), a
//! pipeline checkpointing there keeps doing so while the stalled one has another endpoint.

mod s3_support;
mod serve_support;
use serve_support::*;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// An "S3 endpoint" that accepts connections and never answers; how many it accepted.
fn black_hole() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let held = Arc::new(Mutex::new(Vec::new()));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.lock().unwrap().push(conn);
        }
    });
    (format!("http://{addr}"), accepted)
}

/// A pipeline's own checkpoint directory and S3 settings, in its `config:` block.
fn on_s3(text: &str, dir: &str, endpoint: &str, key: &str, secret: &str) -> String {
    text.replacen(
        "operators:",
        &format!(
            "config:\n  execution.checkpointing.dir: {dir}\n  s3.endpoint: {endpoint}\n  \
             s3.path.style.access: true\n  s3.access-key: {key}\n  s3.secret-key: {secret}\n\
             operators:"
        ),
        1,
    )
}

/// Checkpoints the job of `file` completed so far.
fn completed(serve: &Serve, file: &str) -> u64 {
    serve
        .jobs_of(file)
        .iter()
        .find(|j| j["state"] == "RUNNING")
        .and_then(|j| j["jid"].as_str().map(str::to_owned))
        .map(|id| {
            serve.get(&format!("/jobs/{id}/checkpoints"))["counts"]["completed"]
                .as_u64()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn a_stalled_object_store_holds_up_no_other_pipeline_nor_the_api() {
    let l = Layout::new("");
    let (endpoint, accepted) = black_hole();
    std::fs::write(l.path("pipelines/a-local.yaml"), l.wordcount("local", None)).unwrap();
    let s3 = s3_support::server();
    if let Some(s3) = &s3 {
        let text = l.wordcount("on-s3", None).replace("/out", "/out-s3");
        let dir = s3.prefix("isolation");
        std::fs::write(
            l.path("pipelines/m-s3.yaml"),
            on_s3(
                &text,
                &dir,
                &s3.endpoint,
                s3_support::ACCESS_KEY,
                s3_support::SECRET_KEY,
            ),
        )
        .unwrap();
    }
    let stalled = l.wordcount("stalled", None).replace("/out", "/out-stalled");
    std::fs::write(
        l.path("pipelines/z-stalled.yaml"),
        on_s3(&stalled, "s3://stalled/ck", &endpoint, "k", "s"),
    )
    .unwrap();
    let serve = Serve::start(&l, &[("AWS_REGION", "us-east-1")]);
    serve.wait_running("a-local.yaml");
    if s3.is_some() {
        serve.wait_running("m-s3.yaml");
    }
    wait_for("the stalled pipeline to wait on its endpoint", || {
        accepted.load(Ordering::SeqCst) > 0
    });
    // While it waits: the others complete checkpoint after checkpoint, the API answers.
    let mut files = vec!["a-local.yaml"];
    if s3.is_some() {
        files.push("m-s3.yaml");
    }
    for file in &files {
        let before = completed(&serve, file);
        wait_for(&format!("3 more checkpoints of {file}"), || {
            completed(&serve, file) >= before + 3
        });
    }
    let a = lines(80, 91);
    l.input("part-1", &a);
    wait_committed(&l, updates(&counts(&[&a])));
    // A SIGTERM does not wait for the stalled storage.
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
}
