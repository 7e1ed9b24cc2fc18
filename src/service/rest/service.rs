//! The endpoints only `floe serve` answers: `POST /floe/reload` (apply every change of the
//! pipeline directory and the configuration now, answer when each is applied or rolled back)
//! and `POST /jobs` (submit a pipeline to run in the service: `floe run -d`).
//!
//! `POST /jobs` is floe's counterpart of Flink's `POST /jars/:jarid/run`: there is no jar to
//! upload, the body carries the pipeline's YAML text, and the optional fields keep Flink's
//! names (`parallelism`, `savepointPath`, `allowNonRestoredState`, `claimMode`); the answer
//! is Flink's `{"jobid": "…"}`.
//!
//! The work is the supervisor's ([`ServiceControl`]); a floe without one (`floe run`) answers
//! 404 with the hint to run `floe serve`. Submission is off (403) unless `web.submit.enable`
//! and a token are set; the supervisor then confines what the pipeline may read and write
//! (`web.submit.allowed-dirs`).

use super::{ApiError, ApiState, JsonBody};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;

/// A boxed future, as the hooks return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the REST API asks of `floe serve`'s supervisor.
pub trait ServiceControl: Send + Sync {
    /// Rescans and applies every change; resolves to the report (`"ok": bool` plus the
    /// per-pipeline results) once every change is applied or rolled back.
    fn reload(&self) -> BoxFuture<Result<Value, String>>;
    /// Starts a submitted pipeline; resolves to its job id, or why it cannot run.
    fn submit(&self, request: SubmitRequest) -> BoxFuture<Result<String, SubmitError>>;
    /// `floe start NAME`: a pipeline (file name or `name:`) stopped or cancelled through the
    /// API runs again; resolves to a reload report of that pipeline.
    fn start(&self, name: String) -> BoxFuture<Result<Value, SubmitError>>;
}

/// Why a submission (or a `floe start`) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The pipeline or its settings are wrong (400).
    Invalid(String),
    /// No such pipeline (404).
    NotFound(String),
    /// The service cannot take it now (503), e.g. shutting down.
    Unavailable(String),
    /// It would read or write outside what a submitted job may use (403).
    Refused(String),
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::Invalid(m)
            | SubmitError::NotFound(m)
            | SubmitError::Unavailable(m)
            | SubmitError::Refused(m) => f.write_str(m),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        match e {
            SubmitError::Invalid(m) => ApiError::bad_request(m),
            SubmitError::NotFound(m) => ApiError::not_found(m),
            SubmitError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            SubmitError::Refused(m) => ApiError::forbidden(m),
        }
    }
}

/// The body of `POST /jobs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmitRequest {
    /// The pipeline file's YAML.
    pub pipeline: String,
    /// Where the file is (absolute): relative paths in the pipeline resolve from its
    /// directory, and errors name it.
    pub pipeline_path: Option<String>,
    pub parallelism: Option<u32>,
    /// `-D key=value`.
    #[serde(default)]
    pub dynamic: Vec<String>,
    /// `-s`: a checkpoint or savepoint to restore, or `latest`.
    pub savepoint_path: Option<String>,
    #[serde(default)]
    pub allow_non_restored_state: bool,
    pub claim_mode: Option<String>,
}

fn not_serving() -> ApiError {
    ApiError::not_found(
        "this floe runs a single job (`floe run`): reloads and submissions need `floe serve`"
            .into(),
    )
}

/// `POST /floe/reload`: 200 with the report, whether or not every change applied (the
/// report's `ok` says; `floe reload` turns it into its exit code).
pub async fn reload(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let service = s.service().ok_or_else(not_serving)?;
    service
        .reload()
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))
}

/// `POST /jobs`: `{"jobid"}` once the job is started.
pub async fn submit(
    State(s): State<ApiState>,
    body: JsonBody<SubmitRequest>,
) -> Result<Json<Value>, ApiError> {
    let service = s.service().ok_or_else(not_serving)?;
    if !s.submission_allowed() {
        return Err(ApiError::forbidden(
            "job submission is off: a submitted pipeline runs with floe's rights, so it needs web.submit.enable: true and a token (rest.auth.token or rest.auth.token-file) in flink-conf.yaml; or put the pipeline file into the service's pipeline directory"
                .into(),
        ));
    }
    let request = body.parse("SubmitRequest")?;
    if request.pipeline.trim().is_empty() {
        return Err(ApiError::bad_request(
            "field 'pipeline' is empty: send the pipeline file's YAML text".into(),
        ));
    }
    match service.submit(request).await {
        Ok(id) => Ok(Json(json!({ "jobid": id }))),
        Err(e) => Err(e.into()),
    }
}

/// `POST /pipelines/:name/start` (`floe start NAME`): 200 with the report of that pipeline.
pub async fn start(
    State(s): State<ApiState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    let service = s.service().ok_or_else(not_serving)?;
    tracing::info!(pipeline = %name, "REST: start of pipeline {name} requested");
    Ok(Json(service.start(name).await?))
}
