//! The JSON of the read-only endpoints (`/overview`, `/config`, `/jobs`, `/jobs/overview`,
//! `/jobs/:id`, the job's configuration), as pure functions of job views and the time, with
//! Flink's field names (docs/architecture.md#rest-api-shapes). The dashboard reads the same JSON.

use crate::service::registry::{JobState, JobView, VertexInfo};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;

/// The Flink REST API version floe answers like (tools read `flink-version`).
pub const FLINK_API_VERSION: &str = "2.2.0";

/// Flink's vertex (execution) states, in the order Flink lists them.
const VERTEX_STATES: [&str; 10] = [
    "CREATED",
    "SCHEDULED",
    "DEPLOYING",
    "RUNNING",
    "FINISHED",
    "CANCELING",
    "CANCELED",
    "FAILED",
    "RECONCILING",
    "INITIALIZING",
];

fn end_time(v: &JobView) -> i64 {
    v.end_time.map_or(-1, |t| t as i64)
}

fn duration(v: &JobView, now: u64) -> u64 {
    v.end_time.unwrap_or(now).saturating_sub(v.start_time)
}

/// `GET /overview`.
pub fn overview_json(jobs: &[JobView]) -> Value {
    let count = |s: JobState| jobs.iter().filter(|j| j.state == s).count();
    let running = jobs.iter().filter(|j| !j.state.is_terminal()).count();
    let slots: u32 = jobs
        .iter()
        .filter(|j| !j.state.is_terminal())
        .map(JobView::total_subtasks)
        .sum();
    json!({
        "taskmanagers": 1,
        "slots-total": slots,
        "slots-available": 0,
        "jobs-running": running,
        "jobs-finished": count(JobState::Finished) + count(JobState::Suspended),
        "jobs-cancelled": count(JobState::Canceled),
        "jobs-failed": count(JobState::Failed),
        "flink-version": FLINK_API_VERSION,
        "flink-commit": "floe",
        "floe-version": env!("CARGO_PKG_VERSION"),
    })
}

/// `GET /config` (the web UI's settings, not a job's); `submit`: whether `POST /jobs` takes
/// jobs (`web.submit.enable` with a token, in `floe serve`).
pub fn web_config_json(submit: bool) -> Value {
    json!({
        "refresh-interval": 3000,
        "timezone-name": "Coordinated Universal Time",
        "timezone-offset": 0,
        "flink-version": FLINK_API_VERSION,
        "flink-revision": format!("floe {}", env!("CARGO_PKG_VERSION")),
        "features": {
            "web-submit": submit,
            "web-cancel": true,
            "web-rescale": false,
            "web-history": false,
        },
    })
}

/// `GET /jobs`.
pub fn jobs_json(jobs: &[JobView]) -> Value {
    let list: Vec<Value> = jobs
        .iter()
        .map(|j| with_notes(json!({"id": j.id.0, "status": j.state.flink_name()}), j))
        .collect();
    json!({ "jobs": list })
}

/// Subtask counts by vertex state: every state present, 0 for the others.
fn task_counts(state: JobState, subtasks: u32, lower_case: bool) -> Map<String, Value> {
    let current = state.vertex_status();
    VERTEX_STATES
        .iter()
        .map(|s| {
            let n = if *s == current { subtasks } else { 0 };
            let key = if lower_case {
                s.to_ascii_lowercase()
            } else {
                (*s).to_owned()
            };
            (key, json!(n))
        })
        .collect()
}

/// `GET /jobs/overview`.
pub fn jobs_overview_json(jobs: &[JobView], now: u64) -> Value {
    let list: Vec<Value> = jobs
        .iter()
        .map(|j| {
            let mut tasks = task_counts(j.state, j.total_subtasks(), true);
            tasks.insert("total".into(), json!(j.total_subtasks()));
            let job = json!({
                "jid": j.id.0,
                "name": j.name,
                "start-time": j.start_time,
                "end-time": end_time(j),
                "duration": duration(j, now),
                "state": j.state.flink_name(),
                "last-modification": j.last_modification,
                "tasks": tasks,
                "pending-operators": 0,
            });
            with_notes(job, j)
        })
        .collect();
    json!({ "jobs": list })
}

fn vertex_json(j: &JobView, v: &VertexInfo, now: u64) -> Value {
    let op = |id: Option<&String>| id.and_then(|id| j.metrics.operator(id));
    let read = op(v.operators.first()).map_or(0, |m| m.records_in());
    let write = op(v.operators.last()).map_or(0, |m| m.records_out());
    let complete = j.state.is_terminal();
    json!({
        "id": v.id,
        "name": v.name,
        "maxParallelism": v.max_parallelism,
        "parallelism": v.parallelism,
        "status": j.state.vertex_status(),
        "start-time": j.start_time,
        "end-time": end_time(j),
        "duration": duration(j, now),
        "tasks": task_counts(j.state, v.parallelism, false),
        "metrics": {
            "read-bytes": 0,
            "read-bytes-complete": complete,
            "write-bytes": 0,
            "write-bytes-complete": complete,
            "read-records": read,
            "read-records-complete": complete,
            "write-records": write,
            "write-records-complete": complete,
            "accumulated-backpressured-time": 0,
            "accumulated-idle-time": 0,
            "accumulated-busy-time": 0.0,
        },
        // floe's per-operator counters, which Flink would give under /metrics per vertex.
        "operators": v.operators.iter().map(|id| {
            let m = j.metrics.operator(id);
            json!({
                "id": id,
                "records-in": m.map_or(0, |m| m.records_in()),
                "records-out": m.map_or(0, |m| m.records_out()),
                "records-discarded": m.map_or(0, |m| m.records_discarded()),
            })
        }).collect::<Vec<_>>(),
        "slotSharingGroupId": crate::service::registry::vertex_id("default"),
    })
}

fn plan_json(j: &JobView) -> Value {
    let nodes: Vec<Value> = j
        .vertices
        .iter()
        .map(|v| {
            let mut node = json!({
                "id": v.id,
                "parallelism": v.parallelism,
                "operator": "",
                "operator_strategy": "",
                "description": v.name,
                "optimizer_properties": {},
            });
            if !v.inputs.is_empty() {
                node["inputs"] = v
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(num, i)| {
                        json!({
                            "num": num,
                            "id": j.vertices.get(i.from).map_or("", |u| u.id.as_str()),
                            "ship_strategy": i.ship_strategy,
                            "exchange": "pipelined_bounded",
                        })
                    })
                    .collect();
            }
            node
        })
        .collect();
    json!({"jid": j.id.0, "name": j.name, "type": "STREAMING", "nodes": nodes})
}

/// `GET /jobs/:id` (Flink's `JobDetailsInfo`).
pub fn job_details_json(j: &JobView, now: u64) -> Value {
    let timestamps: Map<String, Value> = JobState::ALL
        .iter()
        .map(|s| {
            (
                s.flink_name().to_owned(),
                json!(j.timestamps.get(s).copied().unwrap_or(0)),
            )
        })
        .collect();
    let vertices: Vec<Value> = j.vertices.iter().map(|v| vertex_json(j, v, now)).collect();
    let status_counts = task_counts(j.state, j.vertices.len() as u32, false);
    let max_parallelism = j.vertices.first().map_or(-1, |v| v.max_parallelism as i64);
    let mut out = json!({
        "jid": j.id.0,
        "name": j.name,
        "isStoppable": !j.state.is_terminal(),
        "state": j.state.flink_name(),
        "job-type": "STREAMING",
        "start-time": j.start_time,
        "end-time": end_time(j),
        "duration": duration(j, now),
        "maxParallelism": max_parallelism,
        "now": now,
        "timestamps": timestamps,
        "vertices": vertices,
        "status-counts": status_counts,
        "plan": plan_json(j),
        "restarts": j.restarts,
        "channels-blocked": j.metrics.channels_blocked.load(Ordering::Relaxed),
    });
    if let Some(e) = &j.error {
        out["failure-cause"] = json!(e);
    }
    with_notes(out, j)
}

/// `floe serve`'s additions to a job object, present only when set (Flink's tools ignore
/// unknown fields): `file`, the pipeline file; `reload-error`, why its last edit was not
/// applied.
fn with_notes(mut job: Value, j: &JobView) -> Value {
    if let Some(f) = &j.notes.file {
        job["file"] = json!(f);
    }
    if let Some(e) = &j.notes.reload_error {
        job["reload-error"] = json!(e);
    }
    job
}

/// `GET /jobs/:id/jobmanager/config`: every key's effective value, as Flink's list of
/// `{key, value}`, with where the value came from; secrets masked
/// ([`crate::secrets::shown`]).
pub fn job_config_json(j: &JobView) -> Value {
    let list: Vec<Value> = j
        .entries
        .iter()
        .map(|e| {
            let value = crate::secrets::shown(&e.key, &e.value);
            json!({"key": e.key, "value": value, "origin": e.origin.to_string()})
        })
        .collect();
    Value::Array(list)
}

fn restart_strategy_name(r: &crate::config::RestartStrategy) -> &'static str {
    use crate::config::RestartStrategy as R;
    match r {
        R::None => "none",
        R::FixedDelay { .. } => "fixed-delay",
        R::FailureRate { .. } => "failure-rate",
        R::ExponentialDelay { .. } => "exponential-delay",
    }
}

/// `GET /jobs/:id/config` (Flink's `JobConfigInfo`).
pub fn job_execution_config_json(j: &JobView) -> Value {
    let parallelism = j.vertices.iter().map(|v| v.parallelism).max().unwrap_or(1);
    json!({
        "jid": j.id.0,
        "name": j.name,
        "execution-config": {
            "execution-mode": "PIPELINED",
            "restart-strategy": restart_strategy_name(&j.config.restart),
            "job-parallelism": parallelism,
            "object-reuse-mode": false,
            "user-config": {},
        },
    })
}

/// `GET /jobs/:id/exceptions`: the failure message, if any.
pub fn exceptions_json(j: &JobView) -> Value {
    let entries: Vec<Value> = j
        .error
        .iter()
        .map(|e| {
            json!({
                "exceptionName": "floe.JobError",
                "stacktrace": e,
                "timestamp": j.end_time.unwrap_or(j.last_modification),
                "taskName": null,
                "endpoint": null,
                "taskManagerId": null,
                "failureLabels": {},
                "concurrentExceptions": [],
            })
        })
        .collect();
    json!({"exceptionHistory": {"entries": entries, "truncated": false}})
}
