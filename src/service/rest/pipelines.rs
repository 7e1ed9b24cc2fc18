//! `floe serve`'s pipelines: `GET /pipelines` (one entry per pipeline file: its current
//! version, whether it runs the file's current content and why not, its ended versions),
//! `GET /pipelines/:name` (by file name or `name:`), and the readiness `/readyz` answers
//! with. A floe without pipelines (`floe run`) answers 404 for the first two.

use super::{ApiError, ApiState};
use crate::service::pipelines::{self, PipelineBoard};
use crate::service::registry::{JobState, JobView};
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

fn board(s: &ApiState) -> Result<PipelineBoard, ApiError> {
    s.pipelines().ok_or_else(|| {
        ApiError::not_found(
            "this floe runs a single job (`floe run`): pipelines are `floe serve`'s".into(),
        )
    })
}

/// `GET /pipelines`.
pub async fn list(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let b = board(&s)?;
    Ok(Json(pipelines::pipelines_json(
        &b.list(),
        &s.registry().list(),
    )))
}

/// `GET /pipelines/:name`.
pub async fn one(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let b = board(&s)?;
    let Some(e) = b.find(&name) else {
        return Err(ApiError::not_found(format!(
            "no pipeline file or pipeline is named {name}; `GET /pipelines` lists them"
        )));
    };
    let all = pipelines::pipelines_json(std::slice::from_ref(&e), &s.registry().list());
    Ok(Json(all["pipelines"][0].clone()))
}

/// What `/readyz` says for `floe serve`: every pipeline as intended (see
/// [`pipelines::readiness`]) and every submitted job that has not ended running. `Ok`, or the
/// list of what is not, with the reasons.
pub fn service_readiness(board: &PipelineBoard, jobs: &[JobView]) -> Result<(), Vec<Value>> {
    if !board.started() {
        return Err(vec![json!({"reason": "floe serve is starting"})]);
    }
    let by_id = jobs
        .iter()
        .map(|j| (j.id.clone(), j))
        .collect::<std::collections::BTreeMap<_, _>>();
    let mut not_ready = Vec::new();
    for e in board.list() {
        let job = e.job.as_ref().and_then(|id| by_id.get(id).copied());
        if let Err(reason) = pipelines::readiness(&e, job) {
            not_ready.push(json!({
                "file": e.file,
                "name": e.name,
                "status": pipelines::status(&e, job),
                "reason": reason,
            }));
        }
    }
    for j in jobs.iter().filter(|j| j.notes.file.is_none()) {
        if !j.state.is_terminal() && j.state != JobState::Running {
            not_ready.push(json!({
                "jid": j.id.0,
                "name": j.name,
                "state": j.state.flink_name(),
                "reason": format!("submitted job {} is {}", j.name, j.state),
            }));
        }
    }
    if not_ready.is_empty() {
        Ok(())
    } else {
        Err(not_ready)
    }
}
