//! The endpoints that change something: trigger a savepoint, stop with a savepoint, cancel,
//! dispose of a savepoint; and the status of those asynchronous operations.
//!
//! A trigger is answered at once with `202 {"request-id"}`; the job's driver does the work
//! and answers on a oneshot channel, which a spawned task waits for and stores as the
//! operation's result. Targets and disposal paths are checked against the allowed roots
//! before anything is sent, and what is sent is the resolved path, not the caller's string.

use super::paths::{confine, PathError};
use super::{parse_job_id, ApiError, ApiState, JsonBody};
use crate::checkpoint::JobId;
use crate::service::registry::{now_ms, CommandError, JobCommand, JobState, SavepointRecord};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use tokio::sync::oneshot;

/// Operations kept for status queries; the oldest are forgotten first.
const MAX_OPERATIONS: usize = 1024;

/// What a status query finds.
#[derive(Debug, Clone, PartialEq)]
pub enum OpStatus {
    InProgress,
    /// The `operation` object: `{"location": …}`, `{}`, or `{"failure-cause": …}`.
    Completed(Value),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OpKey {
    Savepoint(JobId, String),
    Disposal(String),
}

/// Asynchronous operations by trigger id, bounded.
#[derive(Debug, Default)]
pub struct Operations {
    map: HashMap<OpKey, OpStatus>,
    order: VecDeque<OpKey>,
}

impl Operations {
    pub fn start(&mut self, key: OpKey) {
        if self.map.insert(key.clone(), OpStatus::InProgress).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > MAX_OPERATIONS {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    pub fn complete(&mut self, key: &OpKey, operation: Value) {
        if let Some(s) = self.map.get_mut(key) {
            *s = OpStatus::Completed(operation);
        }
    }

    pub fn get(&self, key: &OpKey) -> Option<OpStatus> {
        self.map.get(key).cloned()
    }
}

/// Flink's `failure-cause` for an operation that failed.
pub fn failure_cause(message: &str) -> Value {
    json!({
        "failure-cause": {
            "class": "org.apache.flink.util.FlinkException",
            "stack-trace": format!("org.apache.flink.util.FlinkException: {message}"),
            "serialized-throwable": "",
        }
    })
}

fn status_json(s: &OpStatus) -> Value {
    match s {
        OpStatus::InProgress => json!({"status": {"id": "IN_PROGRESS"}, "operation": null}),
        OpStatus::Completed(op) => json!({"status": {"id": "COMPLETED"}, "operation": op}),
    }
}

/// A fresh trigger id, or the caller's when it has the right form.
fn trigger_id(given: Option<&str>) -> Result<String, ApiError> {
    match given {
        None => Ok(JobId::random().0),
        Some(t) if JobId::is_valid(&t.to_ascii_lowercase()) => Ok(t.to_ascii_lowercase()),
        Some(t) => Err(ApiError::bad_request(format!(
            "triggerId '{t}' is not 32 hexadecimal characters; leave it out to get one"
        ))),
    }
}

fn path_error(e: PathError) -> ApiError {
    match e {
        PathError::Invalid { .. } => ApiError::bad_request(e.to_string()),
        PathError::Outside { .. } | PathError::NoRoots { .. } => ApiError::forbidden(e.to_string()),
    }
}

fn command_error(e: CommandError) -> ApiError {
    match e {
        CommandError::UnknownJob => ApiError::not_found(e.to_string()),
        CommandError::NotRunning { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavepointTriggerRequestBody {
    #[serde(rename = "target-directory")]
    target_directory: Option<String>,
    #[serde(rename = "cancel-job", default)]
    cancel_job: bool,
    #[serde(rename = "formatType")]
    format_type: Option<String>,
    #[serde(rename = "triggerId")]
    trigger_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopWithSavepointRequestBody {
    #[serde(rename = "targetDirectory")]
    target_directory: Option<String>,
    #[serde(default)]
    drain: bool,
    #[serde(rename = "formatType")]
    format_type: Option<String>,
    #[serde(rename = "triggerId")]
    trigger_id: Option<String>,
}

fn check_format(f: Option<&str>) -> Result<(), ApiError> {
    match f {
        None | Some("CANONICAL") => Ok(()),
        Some("NATIVE") => Err(ApiError::bad_request(
            "formatType NATIVE is not supported: floe writes CANONICAL savepoints only".into(),
        )),
        Some(other) => Err(ApiError::bad_request(format!(
            "formatType '{other}' is unknown; accepted: CANONICAL"
        ))),
    }
}

/// The savepoint directory for `job`: the request's, else the job's configured one, checked
/// against the roots. `property` names the request field in Flink's message.
fn savepoint_target(
    state: &ApiState,
    job: &JobId,
    given: Option<&str>,
    property: &str,
) -> Result<PathBuf, ApiError> {
    let view = state.registry().get(job);
    let configured = view
        .as_ref()
        .and_then(|v| v.config.state.savepoints_dir.clone())
        .or_else(|| state.default_savepoints_dir());
    let Some(target) = given.map(str::to_owned).or(configured) else {
        return Err(ApiError::bad_request(format!(
            "Config key [execution.checkpointing.savepoint-dir] is not set. Property \
             [{property}] must be provided."
        )));
    };
    confine("savepoint target", &target, &state.roots_for(view.as_ref())).map_err(path_error)
}

/// The checks both savepoint requests make after the job id, in Flink's order: the format,
/// the trigger id, that the job exists, and the target directory. `fields` are the request's
/// `formatType`, `triggerId` and target directory; `property` names the last in messages.
fn savepoint_request(
    state: &ApiState,
    job: &JobId,
    fields: [&Option<String>; 3],
    property: &str,
) -> Result<(String, PathBuf), ApiError> {
    let [format_type, trigger_id_given, target_directory] = fields;
    check_format(format_type.as_deref())?;
    let trigger = trigger_id(trigger_id_given.as_deref())?;
    if state.registry().get(job).is_none() {
        return Err(ApiError::not_found("Job could not be found.".into()));
    }
    let target = savepoint_target(state, job, target_directory.as_deref(), property)?;
    Ok((trigger, target))
}

/// Sends a savepoint command and records its outcome under `key`.
fn start_savepoint(
    state: &ApiState,
    job: JobId,
    trigger: String,
    synchronous: bool,
    make: impl FnOnce(
        oneshot::Sender<Result<crate::checkpoint::CompletedCheckpoint, String>>,
    ) -> JobCommand,
) -> Result<Response, ApiError> {
    if state.registry().get(&job).is_none() {
        return Err(ApiError::not_found("Job could not be found.".into()));
    }
    let (tx, rx) = oneshot::channel();
    let key = OpKey::Savepoint(job.clone(), trigger.clone());
    state.operations().start(key.clone());
    if let Err(e) = state.registry().send(&job, make(tx)) {
        state
            .operations()
            .complete(&key, failure_cause(&e.to_string()));
        return Err(command_error(e));
    }
    let triggered = now_ms();
    let st = state.clone();
    tokio::spawn(async move {
        let operation = match rx.await {
            Ok(Ok(done)) => {
                let location = super::checkpoints::external_path(&done.path.to_path_buf());
                st.registry().record_savepoint(
                    &job,
                    SavepointRecord {
                        id: done.checkpoint_id.0,
                        location: location.clone(),
                        size: done.size,
                        trigger_timestamp: triggered,
                        completion_timestamp: now_ms(),
                        synchronous,
                    },
                );
                json!({"location": location})
            }
            Ok(Err(message)) => failure_cause(&message),
            Err(_) => failure_cause(&format!(
                "the job {job} ended before it answered the savepoint request"
            )),
        };
        st.operations().complete(&key, operation);
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"request-id": trigger}))).into_response())
}

/// `POST /jobs/:id/savepoints`.
pub async fn trigger_savepoint(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: JsonBody<SavepointTriggerRequestBody>,
) -> Result<Response, ApiError> {
    let job = parse_job_id(&id)?;
    let body = body.parse("SavepointTriggerRequestBody")?;
    let (trigger, target) = savepoint_request(
        &state,
        &job,
        [&body.format_type, &body.trigger_id, &body.target_directory],
        "target-directory",
    )?;
    let cancel_job = body.cancel_job;
    tracing::info!(
        job_id = %job,
        target = %target.display(),
        cancel_job,
        "REST: savepoint of job {job} into {} requested{}",
        target.display(),
        if cancel_job { ", then cancel" } else { "" }
    );
    start_savepoint(&state, job, trigger, false, move |reply| {
        JobCommand::TriggerSavepoint {
            target: Some(target.display().to_string()),
            cancel_job,
            reply,
        }
    })
}

/// `POST /jobs/:id/stop`.
pub async fn stop_with_savepoint(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: JsonBody<StopWithSavepointRequestBody>,
) -> Result<Response, ApiError> {
    let job = parse_job_id(&id)?;
    let body = body.parse("StopWithSavepointRequestBody")?;
    let (trigger, target) = savepoint_request(
        &state,
        &job,
        [&body.format_type, &body.trigger_id, &body.target_directory],
        "targetDirectory",
    )?;
    let drain = body.drain;
    tracing::info!(
        job_id = %job,
        target = %target.display(),
        drain,
        "REST: stop of job {job} with a savepoint into {} requested",
        target.display()
    );
    start_savepoint(&state, job, trigger, true, move |reply| JobCommand::Stop {
        target: Some(target.display().to_string()),
        drain,
        reply,
    })
}

/// `GET /jobs/:id/savepoints/:triggerid`.
pub async fn savepoint_status(
    State(state): State<ApiState>,
    Path((id, trigger)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let job = parse_job_id(&id)?;
    let key = OpKey::Savepoint(job.clone(), trigger.to_ascii_lowercase());
    match state.operations().get(&key) {
        Some(s) => Ok(Json(status_json(&s))),
        None => Err(ApiError::not_found(format!(
            "There is no savepoint operation with triggerId={trigger} for job {job}."
        ))),
    }
}

#[derive(Debug, Deserialize)]
pub struct CancelQuery {
    mode: Option<String>,
}

/// `PATCH /jobs/:id?mode=cancel`: 202 `{}`; idempotent on a job that already ended.
pub async fn cancel_job(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<CancelQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let job = parse_job_id(&id)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    match q.mode.as_deref() {
        None | Some("cancel") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "mode '{other}' is not supported; use mode=cancel, or POST /jobs/{job}/stop to \
                 stop with a savepoint"
            )))
        }
    }
    let Some(view) = state.registry().get(&job) else {
        return Err(ApiError::not_found("Job could not be found.".into()));
    };
    if view.state.is_terminal() || view.state == JobState::Cancelling {
        return Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response());
    }
    tracing::info!(job_id = %job, "REST: cancel of job {job} ({}) requested", view.name);
    let (tx, rx) = oneshot::channel();
    match state
        .registry()
        .send(&job, JobCommand::Cancel { reply: tx })
    {
        Ok(()) => {
            state.registry().set_state(&job, JobState::Cancelling);
        }
        // It ended between the look-up and the send: cancelling is done either way.
        Err(CommandError::NotRunning { .. }) => {}
        Err(e) => return Err(command_error(e)),
    }
    tokio::spawn(async move {
        if let Ok(Err(e)) = rx.await {
            tracing::warn!(job_id = %job, error = %e, "cancel request failed");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavepointDisposalRequest {
    #[serde(rename = "savepoint-path")]
    savepoint_path: Option<String>,
}

/// `POST /savepoint-disposal`.
pub async fn dispose_savepoint(
    State(state): State<ApiState>,
    body: JsonBody<SavepointDisposalRequest>,
) -> Result<Response, ApiError> {
    let body = body.parse("SavepointDisposalRequest")?;
    let Some(given) = body.savepoint_path else {
        return Err(ApiError::bad_request(
            "Field [savepoint-path] must be provided: the savepoint directory to dispose of".into(),
        ));
    };
    let path = confine("savepoint path", &given, &state.roots_for(None)).map_err(path_error)?;
    let Some(hook) = state.disposal() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "savepoint disposal is not available in this process".into(),
        ));
    };
    let trigger = JobId::random().0;
    let key = OpKey::Disposal(trigger.clone());
    state.operations().start(key.clone());
    let st = state.clone();
    tokio::spawn(async move {
        // Deleting files blocks: off the runtime's worker threads.
        let result = tokio::task::spawn_blocking(move || hook(&path)).await;
        let operation = match result {
            Ok(Ok(())) => json!({}),
            Ok(Err(message)) => {
                failure_cause(&format!("Could not dispose savepoint {given}: {message}"))
            }
            Err(e) => failure_cause(&format!(
                "bug: disposing of savepoint {given} panicked: {e}; please report this"
            )),
        };
        st.operations().complete(&key, operation);
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"request-id": trigger}))).into_response())
}

/// `GET /savepoint-disposal/:triggerid`.
pub async fn disposal_status(
    State(state): State<ApiState>,
    Path(trigger): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state
        .operations()
        .get(&OpKey::Disposal(trigger.to_ascii_lowercase()))
    {
        Some(s) => Ok(Json(status_json(&s))),
        None => Err(ApiError::not_found(format!(
            "There is no savepoint disposal operation with triggerId={trigger}."
        ))),
    }
}
