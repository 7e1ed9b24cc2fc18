//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by
//! `tests/browser/dashboard.mjs` (playwright-core) opens the page, sees a job and a completed
//! checkpoint in the history table, clicks "Trigger savepoint" without a directory (the API's
//! error shows in the page), then with one, and sees the savepoint's path.
//!
//! Two targets run the same browser script:
//! - a stub API in this file (canned Flink-shaped JSON plus the real dashboard routes), which
//!   checks the page against known answers;
//! - the real binary, `floe run` on a datagen pipeline with `-D rest.port=0`, which checks the
//!   page against a running job and the savepoint on disk.
//!
//! Without chromium, node or playwright-core the tests print how to get them and skip, on a
//! developer's machine; with `CI=true` they fail (`common::tools`), so CI never goes green
//! without a browser. `.ci/run` installs all three.

mod browser_support;
mod common;
use browser_support::{browser, screenshot_path, Browser};

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// The browser and its driver

/// Runs the driver against `url` and returns its `RESULT` object.
/// With `missing_dir_first`, the first click has no directory and must show the API's error.
fn drive(
    browser: &Browser,
    url: &str,
    savepoint_dir: &Path,
    screenshot: &Path,
    missing_dir_first: bool,
) -> Value {
    let result = browser_support::run_script(
        browser,
        "dashboard.mjs",
        &[
            ("FLOE_URL", url),
            ("FLOE_SAVEPOINT_DIR", savepoint_dir.to_str().unwrap()),
            ("FLOE_SCREENSHOT", screenshot.to_str().unwrap()),
            (
                "FLOE_EXPECT_MISSING_DIR_ERROR",
                if missing_dir_first { "1" } else { "0" },
            ),
        ],
    );
    eprintln!("screenshot: {}", screenshot.display());
    result
}

// ---------------------------------------------------------------------------------------------
// Target 1: a stub of the REST API with Flink's shapes

const JOB: &str = "8f797489a0bbec8f9bbc61e6b7e3f916";
const TRIGGER: &str = "6792fedf43f5ee584b4e8311fc9d3d71";
const RESTORED_PATH: &str = "file:/data/floe/sp/savepoint-8f7974-8dae5167eb70";
const START: i64 = 1_795_515_514_183;

#[derive(Default)]
struct Stub {
    /// Calls to `/checkpoints` so far; the history grows by one per call, from empty.
    checkpoint_polls: u64,
    /// Bodies of `POST /jobs/:id/savepoints`, as received.
    savepoint_requests: Vec<Value>,
    /// The savepoint asked for: (target dir, status polls so far).
    savepoint: Option<(String, u32)>,
}

type Shared = Arc<Mutex<Stub>>;

fn stub_location(dir: &str) -> String {
    format!(
        "file:{}/savepoint-8f7974-2c1ea0cdc1f1",
        dir.trim_end_matches('/')
    )
}

fn flink_error(status: StatusCode, message: &str) -> Response {
    let e = format!(
        "org.apache.flink.runtime.rest.handler.RestHandlerException: {message}\n\tat org.apache.flink.Stub.handle(Stub.java:1)"
    );
    (status, Json(json!({ "errors": [e] }))).into_response()
}

fn checkpoint(id: u64, savepoint: Option<&str>) -> Value {
    let trigger = START + 1000 + id as i64 * 200;
    let path = match savepoint {
        Some(p) => p.to_string(),
        None => format!("file:/tmp/floe/ck/{JOB}/chk-{id}"),
    };
    json!({"className":"completed","id":id,"status":"COMPLETED","is_savepoint":savepoint.is_some(),
        "savepointFormat": savepoint.map(|_| "CANONICAL"),"trigger_timestamp":trigger,
        "latest_ack_timestamp":trigger + 37,"checkpointed_size":4128 + id * 10,"state_size":9000 + id * 10,
        "end_to_end_duration":37,"alignment_buffered":0,"processed_data":0,"persisted_data":0,
        "num_subtasks":5,"num_acknowledged_subtasks":5,
        "checkpoint_type": if savepoint.is_some() { "SAVEPOINT" } else { "CHECKPOINT" },
        "tasks":{},"external_path":path,"discarded":false})
}

fn vertex(id: &str, name: &str, parallelism: u32, read: u64, write: u64) -> Value {
    json!({"id":id,"name":name,"maxParallelism":128,"parallelism":parallelism,"status":"RUNNING",
        "start-time":START,"end-time":-1,"duration":21301,
        "tasks":{"RUNNING":parallelism},
        "metrics":{"read-bytes":0,"read-bytes-complete":true,"write-bytes":0,"write-bytes-complete":true,
            "read-records":read,"read-records-complete":true,"write-records":write,
            "write-records-complete":true},
        "slotSharingGroupId":"default"})
}

fn stub_router(state: Shared) -> Router {
    let job = |UrlPath(id): UrlPath<String>| async move {
        if id != JOB {
            return flink_error(StatusCode::NOT_FOUND, &format!("Job {id} not found"));
        }
        let node = |id: &str, p: u32, inputs: Value| json!({"id":id,"parallelism":p,"operator":"","operator_strategy":"","description":id,"inputs":inputs});
        Json(json!({"jid":JOB,"name":"wordcount","isStoppable":false,"state":"RUNNING","job-type":"STREAMING",
            "start-time":START,"end-time":-1,"duration":21301,"maxParallelism":-1,"now":START + 21301,
            "timestamps":{},"status-counts":{"RUNNING":5},
            "vertices":[vertex("v-source","source: datagen",1,0,1200),
                        vertex("v-split","split: flat_map",2,1200,6000),
                        vertex("v-count","count: key_by",2,6000,6000),
                        vertex("v-print","print",1,6000,0)],
            "plan":{"jid":JOB,"name":"wordcount","type":"STREAMING","nodes":[
                node("v-source",1,json!([])),
                node("v-split",2,json!([{"num":0,"id":"v-source","ship_strategy":"REBALANCE","exchange":"pipelined_bounded"}])),
                node("v-count",2,json!([{"num":0,"id":"v-split","ship_strategy":"HASH","exchange":"pipelined_bounded"}])),
                node("v-print",1,json!([{"num":0,"id":"v-count","ship_strategy":"REBALANCE","exchange":"pipelined_bounded"}]))]}}))
        .into_response()
    };
    let checkpoints = |State(s): State<Shared>| async move {
        let mut s = s.lock().unwrap();
        s.checkpoint_polls += 1;
        let completed = s.checkpoint_polls - 1;
        let mut history: Vec<Value> = (1..=completed)
            .rev()
            .take(10)
            .map(|id| checkpoint(id, None))
            .collect();
        let mut latest_savepoint = Value::Null;
        if let Some((dir, polls)) = &s.savepoint {
            if *polls >= 2 {
                let sp = checkpoint(completed + 1, Some(&stub_location(dir)));
                history.insert(0, sp.clone());
                latest_savepoint = sp;
            }
        }
        let failed = json!({"className":"failed","id":0,"status":"FAILED","is_savepoint":false,
            "trigger_timestamp":START + 500,"latest_ack_timestamp":-1,"checkpointed_size":0,"state_size":0,
            "end_to_end_duration":600000,"num_subtasks":5,"num_acknowledged_subtasks":0,
            "checkpoint_type":"CHECKPOINT","tasks":{},"failure_timestamp":START + 600500,
            "failure_message":"Checkpoint expired before completing."});
        Json(json!({
            "counts":{"restored":1,"total":completed + 1,"in_progress":0,"completed":completed,"failed":1},
            "summary":{},
            "latest":{"completed": history.iter().find(|c| c["is_savepoint"] == false).cloned(),
                      "savepoint": latest_savepoint, "failed": failed,
                      "restored":{"id":37,"restore_timestamp":START,"is_savepoint":true,"external_path":RESTORED_PATH}},
            "history": history}))
    };
    let trigger_savepoint = |State(s): State<Shared>,
                             UrlPath(id): UrlPath<String>,
                             Json(body): Json<Value>| async move {
        if id != JOB {
            return flink_error(StatusCode::NOT_FOUND, &format!("Job {id} not found"));
        }
        let mut s = s.lock().unwrap();
        s.savepoint_requests.push(body.clone());
        match body["target-directory"].as_str() {
            Some(dir) => {
                s.savepoint = Some((dir.to_string(), 0));
                (StatusCode::ACCEPTED, Json(json!({"request-id": TRIGGER}))).into_response()
            }
            None => flink_error(
                StatusCode::BAD_REQUEST,
                "Config key [execution.checkpointing.savepoint-dir] is not set. Property [target-directory] must be provided.",
            ),
        }
    };
    let savepoint_status =
        |State(s): State<Shared>, UrlPath((id, trigger)): UrlPath<(String, String)>| async move {
            let mut s = s.lock().unwrap();
            match &mut s.savepoint {
                Some((dir, polls)) if trigger == TRIGGER && id == JOB => {
                    *polls += 1;
                    // In progress on the first poll, as a real savepoint is for a while.
                    if *polls < 2 {
                        Json(json!({"status":{"id":"IN_PROGRESS"},"operation":null}))
                            .into_response()
                    } else {
                        Json(json!({"status":{"id":"COMPLETED"},"operation":{"location": stub_location(dir)}})).into_response()
                    }
                }
                _ => flink_error(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "There is no savepoint operation with triggerId={trigger} for job {id}."
                    ),
                ),
            }
        };
    Router::new()
        .route("/config", get(|| async {
            Json(json!({"refresh-interval":3000,"timezone-name":"Coordinated Universal Time","timezone-offset":0,
                "flink-version":"2.2.0","flink-revision":"stub","features":{"web-submit":false,"web-cancel":true}}))
        }))
        .route("/jobs/overview", get(|| async {
            Json(json!({"jobs":[{"jid":JOB,"name":"wordcount","start-time":START,"end-time":-1,"duration":21301,
                "state":"RUNNING","last-modification":START,"tasks":{"running":6,"total":6},"pending-operators":0}]}))
        }))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/checkpoints", get(checkpoints))
        .route("/jobs/{id}/checkpoints/config", get(|| async {
            Json(json!({"mode":"exactly_once","interval":200,"timeout":600000,"min_pause":0,"max_concurrent":1,
                "externalization":{"enabled":true,"delete_on_cancellation":false},
                "state_backend":"HashMapStateBackend","checkpoint_storage":"FileSystemCheckpointStorage",
                "unaligned_checkpoints":false,"tolerable_failed_checkpoints":0,"aligned_checkpoint_timeout":0,
                "checkpoints_after_tasks_finish":true,"state_changelog_enabled":false,
                "changelog_periodic_materialization_interval":600000,"changelog_storage":"memory"}))
        }))
        .route("/jobs/{id}/config", get(|| async {
            Json(json!({"jid":JOB,"name":"wordcount","execution-config":{"execution-mode":"PIPELINED",
                "restart-strategy":"Restart with fixed delay (1 s). #3 restart attempts.","job-parallelism":2,
                "object-reuse-mode":false,"user-config":{}}}))
        }))
        .route("/jobs/{id}/savepoints", axum::routing::post(trigger_savepoint))
        .route("/jobs/{id}/savepoints/{trigger}", get(savepoint_status))
        .with_state(state)
        .merge(floe::service::dashboard::routes())
}

#[test]
fn dashboard_against_stub_api() {
    let Some(browser) = browser() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let state = Shared::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = stub_router(state.clone());
    rt.spawn(async move { axum::serve(listener, app).await });

    let sp_dir = tmp.path().join("savepoints");
    let shot = screenshot_path(tmp.path(), "dashboard-stub.png");
    let r = drive(&browser, &format!("http://{addr}/"), &sp_dir, &shot, true);

    assert_eq!(r["jobId"], JOB);
    let err = r["missingDirError"].as_str().unwrap();
    assert!(
        err.contains("Property [target-directory] must be provided."),
        "the API's error is shown: {err}"
    );
    assert!(
        !err.contains("\tat ") && !err.contains("RestHandlerException"),
        "without the Java stack and class: {err}"
    );
    let sp = sp_dir.to_str().unwrap();
    assert_eq!(r["location"], stub_location(sp));
    {
        let s = state.lock().unwrap();
        assert_eq!(
            s.savepoint_requests,
            vec![
                json!({"cancel-job": false}),
                json!({"cancel-job": false, "target-directory": sp})
            ]
        );
    }

    let vertices = r["vertices"].as_array().unwrap();
    let ids: Vec<&str> = vertices.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["v-source", "v-split", "v-count", "v-print"]);
    assert_eq!(vertices[1]["parallelism"], "2");
    assert_eq!(vertices[1]["readRecords"], "1200");
    assert_eq!(vertices[1]["writeRecords"], "6000");
    assert!(vertices[2]["text"]
        .as_str()
        .unwrap()
        .contains("in  6,000 records"));

    let rows = r["checkpointRows"].as_array().unwrap();
    let savepoint_row = &rows[0];
    assert_eq!(savepoint_row["cells"][2], "Savepoint");
    assert_eq!(savepoint_row["cells"][8], stub_location(sp));
    let checkpoint_row = &rows[1];
    assert_eq!(checkpoint_row["status"], "COMPLETED");
    let id = checkpoint_row["id"].as_str().unwrap();
    assert_eq!(
        checkpoint_row["cells"][8],
        format!("file:/tmp/floe/ck/{JOB}/chk-{id}")
    );
    assert_eq!(checkpoint_row["cells"][3], "5/5");
    assert_eq!(checkpoint_row["cells"][5], "37 ms");

    let restore = r["latestRestore"].as_str().unwrap();
    assert!(restore.contains(RESTORED_PATH), "{restore}");
    assert!(restore.contains("Savepoint"), "{restore}");
    let config = r["checkpointConfig"].as_str().unwrap();
    assert!(
        config.contains("Exactly once") && config.contains("200 ms"),
        "{config}"
    );
    assert!(shot.is_file(), "screenshot written");
}

// ---------------------------------------------------------------------------------------------
// Target 2: the real binary

/// Reads floe's stderr on a thread: sends the REST address once its log line shows, keeps the
/// last lines for a failure message, and keeps draining so floe never blocks on a full pipe.
fn watch_stderr(child: &mut Child) -> (mpsc::Receiver<String>, Arc<Mutex<VecDeque<String>>>) {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let keep = tail.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("REST API listening on ") {
                let url = line[at + "REST API listening on ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send(url);
            }
            let mut t = keep.lock().unwrap();
            t.push_back(line);
            if t.len() > 50 {
                t.pop_front();
            }
        }
    });
    (rx, tail)
}

/// Kills floe when the test ends, passing or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The dashboard against a real `floe run` serving the REST API and these routes.
#[test]
fn dashboard_against_running_job() {
    let Some(browser) = browser() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pipeline = dir.join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: dashboard-e2e
checkpointing:
  interval: 200 ms
  checkpoint-dir: {ck}
operators:
  - {{id: source, type: datagen, words-per-line: 5, vocab: 300, seed: 3, rate: 2000}}
  - {{id: split, type: flat_map, inputs: [source]}}
  - {{id: count, type: key_by, inputs: [split], key: word, aggregate: count}}
  - {{id: print, type: print, inputs: [count]}}
",
            ck = dir.join("ck").display()
        ),
    )
    .unwrap();
    let sp_dir = dir.join("sp");
    std::fs::create_dir_all(&sp_dir).unwrap();
    let mut child = common::floe()
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .arg("run")
        .arg(&pipeline)
        .args(["-D", "rest.port=0", "-D"])
        .arg(format!("state.savepoints.dir={}", sp_dir.display()))
        // Secrets the page must never show (issue 13): unused, local paths need no S3.
        .args(["-D", &format!("s3.access-key={DASH_ACCESS}")])
        .args(["-D", &format!("s3.secret-key={DASH_SECRET}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr_rx, tail) = watch_stderr(&mut child);
    let mut floe = Running(child);
    // A deadline, not a timing: the line comes within a second on any machine that runs floe.
    let url = match addr_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => url,
        Err(_) => {
            let status = floe.0.try_wait().ok().flatten();
            panic!(
                "floe did not log `REST API listening on` (exit: {status:?}); its stderr:\n{}",
                tail.lock()
                    .unwrap()
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    };

    // The savepoint goes to the configured root itself, which any confinement of targets to
    // `state.savepoints.dir` allows. With that default set, a click without a directory would
    // succeed, so the missing-directory error is checked against the stub only.
    let shot = screenshot_path(dir, "dashboard-floe.png");
    let typed = sp_dir.clone();
    let r = drive(&browser, &url, &typed, &shot, false);

    let location = r["location"].as_str().unwrap();
    let path = location
        .strip_prefix("file://")
        .or_else(|| location.strip_prefix("file:"))
        .unwrap_or(location);
    let path = Path::new(path);
    assert!(
        path.starts_with(&typed),
        "savepoint {location} is in the directory typed, {}",
        typed.display()
    );
    let name = path.file_name().unwrap().to_str().unwrap();
    let job = r["jobId"].as_str().unwrap();
    assert!(
        name.starts_with(&format!("savepoint-{}-", &job[..6])),
        "Flink's savepoint name: {name}"
    );
    assert!(path.join("_metadata").is_file(), "{location} has _metadata");
    let rows = r["checkpointRows"].as_array().unwrap();
    assert!(
        rows.iter().any(|row| row["status"] == "COMPLETED"),
        "a completed checkpoint in the history"
    );
    assert!(
        !r["vertices"].as_array().unwrap().is_empty(),
        "the operator graph has vertices"
    );
    let page = r["pageText"].as_str().unwrap();
    for secret in [DASH_ACCESS, DASH_SECRET] {
        assert!(!page.contains(secret), "the page shows {secret}:\n{page}");
    }
    drop(floe);
}

const DASH_ACCESS: &str = "dash-ACCESS-key-1";
const DASH_SECRET: &str = "dash-SECRET-key-2";
