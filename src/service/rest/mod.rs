//! The REST API, shaped like Flink's (docs/architecture.md#rest-api-shapes): the router, its shared state, errors as
//! Flink's `{"errors": […]}`, the bearer-token check, and [`serve`], which binds
//! `rest.bind-address`:`rest.port`.
//!
//! - `json`: the read-only JSON (overview, jobs, job details, configuration).
//! - `checkpoints`: `/jobs/:id/checkpoints` and its configuration.
//! - `control`: savepoint, stop, cancel, disposal, and their asynchronous status.
//! - `paths`: confining savepoint targets and disposal paths to the allowed roots.
//! - `server`: binding, the accept loop, the Host check, limits and timeouts, the token.
//!
//! Handlers never panic on input: every extractor's rejection becomes a 4xx with a message,
//! unknown paths a 404 and wrong methods a 405, both in Flink's error shape. The API never
//! runs or stops a job itself: it sends [`JobCommand`](super::registry::JobCommand)s that the
//! job's driver answers.
//!
//! Wiring: `let app = rest::router(state).merge(dashboard_routes);` then
//! `rest::serve(app, &options).await?` adds the fallbacks and the token check around
//! everything, binds, and serves until [`RestServer::shutdown`].

pub mod checkpoints;
pub mod control;
pub mod json;
pub mod paths;
pub mod pipelines;
pub mod server;
pub mod service;

pub use server::{serve, RestServer, ServeError};

use super::registry::{now_ms, JobRegistry, JobView};
use crate::checkpoint::JobId;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// An error answered as Flink's `{"errors": ["…"]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: String) -> Self {
        ApiError { status, message }
    }
    pub fn bad_request(message: String) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: String) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn forbidden(message: String) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "errors": [self.message] }))).into_response()
    }
}

/// Deletes one savepoint's files after checking it is a floe savepoint; runs on a blocking
/// thread. The lead provides it (`floe savepoint -d` shares it).
pub type DisposalHook = Arc<dyn Fn(&FsPath) -> Result<(), String> + Send + Sync>;

/// What [`serve`] and the router need from the configuration and the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestOptions {
    /// `rest.bind-address`.
    pub bind_address: String,
    /// `rest.port`; 0 picks a free port.
    pub port: u16,
    /// `rest.auth.token`.
    pub token: Option<String>,
    /// `rest.auth.token-file`: the token is the file's content, trimmed.
    pub token_file: Option<PathBuf>,
    /// `state.savepoints.dir` (`execution.checkpointing.savepoint-dir`): the default target,
    /// and an allowed root.
    pub savepoints_dir: Option<String>,
    /// `rest.savepoints.allowed-dirs`: more roots savepoints may be written to and disposed
    /// of from.
    pub allowed_dirs: Vec<String>,
    /// `rest.address`: a name the `Host` header may give.
    pub address: String,
    /// `rest.allowed-hosts`: more names the `Host` header may give (`*`: any).
    pub allowed_hosts: Vec<String>,
    /// `rest.server.max-content-length`, bytes.
    pub max_content_length: u64,
    /// `rest.server.read-timeout`.
    pub read_timeout: Duration,
    /// `web.submit.enable`: `POST /jobs` answers only with this and a token.
    pub submit_enabled: bool,
}

impl RestOptions {
    /// The options of a loaded configuration (token and allow list are left empty: their
    /// keys are read by the caller).
    pub fn from_config(c: &crate::config::Config) -> Self {
        RestOptions {
            bind_address: c.rest.bind_address.clone(),
            port: c.rest.port,
            token: c.rest.auth_token.clone(),
            token_file: c.rest.auth_token_file.clone().map(Into::into),
            savepoints_dir: c.state.savepoints_dir.clone(),
            allowed_dirs: c
                .rest
                .savepoints_allowed_dirs
                .iter()
                .map(Into::into)
                .collect(),
            address: c.rest.address.clone(),
            allowed_hosts: c.rest.allowed_hosts.clone(),
            max_content_length: c.rest.max_content_length,
            read_timeout: c.rest.read_timeout,
            submit_enabled: c.rest.submit_enabled,
        }
    }

    /// Loopback on port 0: for tests and embedding.
    pub fn local_ephemeral() -> Self {
        RestOptions {
            bind_address: "127.0.0.1".into(),
            port: 0,
            token: None,
            token_file: None,
            savepoints_dir: None,
            allowed_dirs: Vec::new(),
            address: "localhost".into(),
            allowed_hosts: Vec::new(),
            max_content_length: 1 << 20,
            read_timeout: Duration::from_secs(30),
            submit_enabled: false,
        }
    }

    /// Whether job submission is on: `web.submit.enable` and a token (a submitted pipeline
    /// runs with floe's rights, so nobody without the token may send one).
    pub fn submission_allowed(&self) -> bool {
        self.submit_enabled && (self.token.is_some() || self.token_file.is_some())
    }

    /// The token from `token` or `token_file`.
    pub fn resolve_token(&self) -> Result<Option<String>, ServeError> {
        if let Some(t) = &self.token {
            let t = t.trim();
            if t.is_empty() {
                return Err(ServeError::EmptyToken {
                    source_name: "rest.auth.token".into(),
                });
            }
            return Ok(Some(t.to_owned()));
        }
        let Some(file) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file).map_err(|e| ServeError::TokenFile {
            path: file.clone(),
            reason: e.to_string(),
        })?;
        let t = text.trim();
        if t.is_empty() {
            return Err(ServeError::EmptyToken {
                source_name: format!("rest.auth.token-file {}", file.display()),
            });
        }
        Ok(Some(t.to_owned()))
    }
}

struct Inner {
    registry: JobRegistry,
    /// Whether `POST /jobs` may start a job ([`RestOptions::submission_allowed`]).
    submit: bool,
    savepoints_dir: Option<String>,
    allowed_dirs: Vec<String>,
    disposal: Option<DisposalHook>,
    service: Option<Arc<dyn service::ServiceControl>>,
    operations: Mutex<control::Operations>,
    /// `floe serve`'s pipelines (`/pipelines`, and what `/readyz` checks).
    pipelines: Option<crate::service::pipelines::PipelineBoard>,
}

/// The router's state: the registry, the roots, the disposal hook and the asynchronous
/// operations. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

impl ApiState {
    pub fn new(registry: JobRegistry, options: &RestOptions) -> Self {
        ApiState {
            inner: Arc::new(Inner {
                registry,
                submit: options.submission_allowed(),
                savepoints_dir: options.savepoints_dir.clone(),
                allowed_dirs: options.allowed_dirs.clone(),
                disposal: None,
                service: None,
                operations: Mutex::new(control::Operations::default()),
                pipelines: None,
            }),
        }
    }

    /// With `floe serve`'s supervisor: `POST /floe/reload` and `POST /jobs` answer.
    pub fn with_service(self, service: Arc<dyn service::ServiceControl>) -> Self {
        let inner = Inner {
            registry: self.inner.registry.clone(),
            submit: self.inner.submit,
            savepoints_dir: self.inner.savepoints_dir.clone(),
            allowed_dirs: self.inner.allowed_dirs.clone(),
            disposal: self.inner.disposal.clone(),
            service: Some(service),
            operations: Mutex::new(control::Operations::default()),
            pipelines: self.inner.pipelines.clone(),
        };
        ApiState {
            inner: Arc::new(inner),
        }
    }

    fn service(&self) -> Option<Arc<dyn service::ServiceControl>> {
        self.inner.service.clone()
    }

    /// With `floe serve`'s pipelines: `/pipelines` answers and `/readyz` checks them.
    pub fn with_pipelines(self, board: crate::service::pipelines::PipelineBoard) -> Self {
        let inner = Inner {
            registry: self.inner.registry.clone(),
            submit: self.inner.submit,
            savepoints_dir: self.inner.savepoints_dir.clone(),
            allowed_dirs: self.inner.allowed_dirs.clone(),
            disposal: self.inner.disposal.clone(),
            service: self.inner.service.clone(),
            operations: Mutex::new(control::Operations::default()),
            pipelines: Some(board),
        };
        ApiState {
            inner: Arc::new(inner),
        }
    }

    fn pipelines(&self) -> Option<crate::service::pipelines::PipelineBoard> {
        self.inner.pipelines.clone()
    }

    /// Whether `POST /jobs` may start a job: a service, `web.submit.enable` and a token.
    pub fn submission_allowed(&self) -> bool {
        self.inner.submit && self.inner.service.is_some()
    }

    /// With the function that disposes of a savepoint (`POST /savepoint-disposal`).
    pub fn with_disposal(self, hook: DisposalHook) -> Self {
        let inner = Inner {
            registry: self.inner.registry.clone(),
            submit: self.inner.submit,
            savepoints_dir: self.inner.savepoints_dir.clone(),
            allowed_dirs: self.inner.allowed_dirs.clone(),
            disposal: Some(hook),
            service: self.inner.service.clone(),
            operations: Mutex::new(control::Operations::default()),
            pipelines: self.inner.pipelines.clone(),
        };
        ApiState {
            inner: Arc::new(inner),
        }
    }

    pub fn registry(&self) -> &JobRegistry {
        &self.inner.registry
    }

    fn disposal(&self) -> Option<DisposalHook> {
        self.inner.disposal.clone()
    }

    fn default_savepoints_dir(&self) -> Option<String> {
        self.inner.savepoints_dir.clone()
    }

    fn operations(&self) -> MutexGuard<'_, control::Operations> {
        self.inner
            .operations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The directories savepoints may go to or be disposed of from: the configured savepoint
    /// directory, the allow list, and the job's own `state.savepoints.dir` (for a target) or
    /// every registered job's (for a disposal). Invalid entries are skipped.
    fn roots_for(&self, job: Option<&JobView>) -> Vec<PathBuf> {
        let mut given: Vec<String> = self.inner.savepoints_dir.iter().cloned().collect();
        given.extend(self.inner.allowed_dirs.iter().cloned());
        match job {
            Some(j) => given.extend(j.config.state.savepoints_dir.clone()),
            None => given.extend(
                self.registry()
                    .list()
                    .into_iter()
                    .filter_map(|j| j.config.state.savepoints_dir.clone()),
            ),
        }
        given
            .iter()
            .filter_map(|g| paths::root_path("allowed directory", g).ok())
            .collect()
    }
}

/// A JSON request body, parsed by the handler so that every problem is a 400 in Flink's
/// words. An empty body is `{}`; a body must be sent as `application/json` (a browser form on
/// another site cannot send that without a CORS preflight, which floe never grants).
pub struct JsonBody<T> {
    content_type: Option<String>,
    bytes: Bytes,
    _t: std::marker::PhantomData<T>,
}

impl<S: Send + Sync, T> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let timeout = req
            .extensions()
            .get::<server::BodyReadTimeout>()
            .map(|t| t.0);
        let read = Bytes::from_request(req, state);
        let read = match timeout {
            Some(t) => tokio::time::timeout(t, read).await.map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} (rest.server.read-timeout)",
                        humantime::format_duration(t)
                    ),
                )
            })?,
            None => read.await,
        };
        // Over the size limit stays a 413; anything else reading the body is a 400.
        let bytes = read.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is too large (rest.server.max-content-length): {e}"),
            ),
            _ => ApiError::bad_request(format!("cannot read the request body: {e}")),
        })?;
        Ok(JsonBody {
            content_type,
            bytes,
            _t: std::marker::PhantomData,
        })
    }
}

impl<T: DeserializeOwned + Default> JsonBody<T> {
    /// The body as `T`; `type_name` is Flink's request body class for the message.
    pub fn parse(self, type_name: &str) -> Result<T, ApiError> {
        let is_json = self.content_type.as_deref().is_some_and(|c| {
            c.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Request body must be sent with Content-Type: application/json (got {}); \
                     send {{}} for the defaults",
                    self.content_type.as_deref().unwrap_or("none")
                ),
            ));
        }
        if self.bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        serde_json::from_slice(&self.bytes).map_err(|e| {
            ApiError::bad_request(format!(
                "Request did not match expected format {type_name}: {e}"
            ))
        })
    }
}

/// A job id from the path, as Flink parses `JobID`.
pub fn parse_job_id(s: &str) -> Result<JobId, ApiError> {
    let lower = s.to_ascii_lowercase();
    if JobId::is_valid(&lower) {
        Ok(JobId(lower))
    } else {
        Err(ApiError::bad_request(format!(
            "Cannot parse JobID from \"{s}\". The expected format is [0-9a-fA-F]{{32}}, e.g. \
             fd72014d4c864993a2e5a9287b4a9c5d."
        )))
    }
}

fn job(state: &ApiState, id: &str) -> Result<JobView, ApiError> {
    let id = parse_job_id(id)?;
    state
        .registry()
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("Job {id} not found")))
}

async fn overview(State(s): State<ApiState>) -> Json<Value> {
    Json(json::overview_json(&s.registry().list()))
}

async fn web_config(State(s): State<ApiState>) -> Json<Value> {
    Json(json::web_config_json(s.submission_allowed()))
}

async fn jobs(State(s): State<ApiState>) -> Json<Value> {
    Json(json::jobs_json(&s.registry().list()))
}

async fn jobs_overview(State(s): State<ApiState>) -> Json<Value> {
    Json(json::jobs_overview_json(&s.registry().list(), now_ms()))
}

async fn job_details(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json::job_details_json(&job(&s, &id)?, now_ms())))
}

async fn job_config(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json::job_execution_config_json(&job(&s, &id)?)))
}

async fn job_jobmanager_config(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json::job_config_json(&job(&s, &id)?)))
}

async fn job_exceptions(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json::exceptions_json(&job(&s, &id)?)))
}

fn not_enabled() -> ApiError {
    ApiError::not_found("Checkpointing has not been enabled.".into())
}

async fn job_checkpoints(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let j = job(&s, &id)?;
    if !j.has_checkpointing() {
        return Err(not_enabled());
    }
    let stats = j.checkpoint_stats().ok_or_else(not_enabled)?;
    Ok(Json(checkpoints::checkpoints_json(&j, &stats)))
}

async fn job_checkpoint_details(
    State(s): State<ApiState>,
    Path((id, checkpoint)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let j = job(&s, &id)?;
    let stats = j.checkpoint_stats().ok_or_else(not_enabled)?;
    let not_found = || {
        ApiError::not_found(format!(
            "Could not find checkpointing statistics for checkpoint {checkpoint}."
        ))
    };
    let cid: u64 = checkpoint.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "checkpoint id '{checkpoint}' is not a number, e.g. /jobs/{id}/checkpoints/details/7"
        ))
    })?;
    checkpoints::checkpoint_details_json(&j, &stats, cid)
        .map(Json)
        .ok_or_else(not_found)
}

async fn job_checkpoint_config(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let j = job(&s, &id)?;
    if !j.has_checkpointing() {
        return Err(not_enabled());
    }
    Ok(Json(checkpoints::checkpoint_config_json(&j)))
}

async fn prometheus(State(s): State<ApiState>) -> Response {
    let jobs = s.registry().list();
    let pipelines = s.pipelines().map(|b| b.list());
    // Reading /proc is a few small reads of a kernel file system: no disk behind it.
    let text = super::metrics::render_all(&super::metrics::Sources {
        jobs: &jobs,
        pipelines: pipelines.as_deref(),
        process: super::process::read(),
        now_ms: now_ms(),
    });
    ([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response()
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when every job runs or ended cleanly, else 503 naming the jobs that do not. For
/// `floe serve`: when every pipeline runs its file's current content (or a user stopped or
/// cancelled it) and every submitted job runs, else 503 with each one that does not and why.
async fn readyz(State(s): State<ApiState>) -> Response {
    let jobs = s.registry().list();
    let not_ready: Vec<Value> = match s.pipelines() {
        Some(board) => pipelines::service_readiness(&board, &jobs)
            .err()
            .unwrap_or_default(),
        None => jobs
            .iter()
            .filter(|j| !j.state.is_ready())
            .map(|j| json!({"jid": j.id.0, "name": j.name, "state": j.state.flink_name()}))
            .collect(),
    };
    if not_ready.is_empty() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        let key = if s.pipelines().is_some() {
            "pipelines"
        } else {
            "jobs"
        };
        let mut body = json!({"status": "not ready"});
        body[key] = Value::Array(not_ready);
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// The API's routes, without fallbacks (so that other routers, e.g. the dashboard's, can be
/// merged in); [`serve`] adds them.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/overview", get(overview))
        .route("/config", get(web_config))
        .route("/jobs", get(jobs).post(service::submit))
        .route("/floe/reload", post(service::reload))
        .route("/pipelines", get(pipelines::list))
        .route("/pipelines/{name}", get(pipelines::one))
        .route("/pipelines/{name}/start", post(service::start))
        .route("/jobs/overview", get(jobs_overview))
        .route("/jobs/{id}", get(job_details).patch(control::cancel_job))
        .route("/jobs/{id}/config", get(job_config))
        .route("/jobs/{id}/jobmanager/config", get(job_jobmanager_config))
        .route("/jobs/{id}/exceptions", get(job_exceptions))
        .route("/jobs/{id}/checkpoints", get(job_checkpoints))
        .route("/jobs/{id}/checkpoints/config", get(job_checkpoint_config))
        .route(
            "/jobs/{id}/checkpoints/details/{checkpoint}",
            get(job_checkpoint_details),
        )
        .route("/jobs/{id}/savepoints", post(control::trigger_savepoint))
        .route(
            "/jobs/{id}/savepoints/{trigger}",
            get(control::savepoint_status),
        )
        .route("/jobs/{id}/stop", post(control::stop_with_savepoint))
        .route("/savepoint-disposal", post(control::dispose_savepoint))
        .route(
            "/savepoint-disposal/{trigger}",
            get(control::disposal_status),
        )
        .route("/metrics", get(prometheus))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_parse_as_flink() {
        assert!(parse_job_id("FD72014D4C864993A2E5A9287B4A9C5D").is_ok());
        let e = parse_job_id("notajobid").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("Cannot parse JobID"));
    }
}
