//! `floe serve`'s pipelines, one entry per file of the pipeline directory, as the REST API
//! (`/pipelines`, `/pipelines/:name`, `/readyz`), the metrics and the dashboard show them:
//! the version (job) running now and whether it runs the file's current content, why not
//! when it does not (an invalid file, a name shared with another file, a refused or
//! rolled-back edit, a failed start), whether a user stopped or cancelled it, and the ended
//! versions before it (capped by `service.history.max-versions`).
//!
//! The supervisor writes the [`PipelineBoard`]; readers get copies. Readiness is a pure
//! function of an entry and its job's state ([`readiness`]).

use crate::checkpoint::JobId;
use crate::service::registry::{JobState, JobView};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// How a user ended a pipeline's job through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hold {
    /// Stopped with a savepoint (`floe stop`, `POST /jobs/:id/stop`).
    Stopped,
    /// Cancelled (`floe cancel`, `PATCH /jobs/:id`, a savepoint with `cancel-job`).
    Cancelled,
}

impl Hold {
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::Stopped => "stopped",
            Hold::Cancelled => "cancelled",
        }
    }
}

/// Why a pipeline file does not run its current content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The file does not validate (YAML, operators, configuration, plan).
    Invalid,
    /// Another file has the same `name:`.
    NameClash,
    /// Its job could not start, or failed (with the version before gone).
    Failed,
    /// An edit was refused: the version before runs on.
    Refused,
    /// An edit started and failed within its probation: the version before runs again.
    RolledBack,
}

/// One pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineEntry {
    pub file: String,
    /// Its `name:` (the state's identity), when the file parsed that far.
    pub name: Option<String>,
    /// The version running now, or the last one (ended by itself, or held).
    pub job: Option<JobId>,
    /// `job` runs the file's current content.
    pub current: bool,
    pub problem: Option<(ProblemKind, String)>,
    /// Stopped or cancelled through the API: down as intended, until `floe start`.
    pub held: Option<Hold>,
    /// Ended versions, oldest first.
    pub history: Vec<JobId>,
    pub versions_started: u64,
    pub reload_errors: u64,
    pub rollbacks: u64,
    /// Failovers of the ended versions (the running one counts its own).
    pub restarts_before: u64,
}

impl PipelineEntry {
    pub fn new(file: &str) -> PipelineEntry {
        PipelineEntry {
            file: file.to_string(),
            name: None,
            job: None,
            current: false,
            problem: None,
            held: None,
            history: Vec::new(),
            versions_started: 0,
            reload_errors: 0,
            rollbacks: 0,
            restarts_before: 0,
        }
    }
}

/// The entries, shared between the supervisor (writer) and the API (readers).
#[derive(Debug, Clone, Default)]
pub struct PipelineBoard {
    inner: Arc<Mutex<Board>>,
}

#[derive(Debug, Default)]
struct Board {
    /// The first scan of the directory is done: before it, nothing is ready.
    started: bool,
    entries: BTreeMap<String, PipelineEntry>,
}

impl PipelineBoard {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the entry of `file` (created when missing).
    pub fn update(&self, file: &str, f: impl FnOnce(&mut PipelineEntry)) {
        let mut b = self.lock();
        f(b.entries
            .entry(file.to_string())
            .or_insert_with(|| PipelineEntry::new(file)));
    }

    pub fn remove(&self, file: &str) {
        self.lock().entries.remove(file);
    }

    pub fn get(&self, file: &str) -> Option<PipelineEntry> {
        self.lock().entries.get(file).cloned()
    }

    /// Every entry, by file name.
    pub fn list(&self) -> Vec<PipelineEntry> {
        self.lock().entries.values().cloned().collect()
    }

    pub fn set_started(&self) {
        self.lock().started = true;
    }

    pub fn started(&self) -> bool {
        self.lock().started
    }

    /// The entry whose file name or pipeline name is `name`.
    pub fn find(&self, name: &str) -> Option<PipelineEntry> {
        let b = self.lock();
        b.entries.get(name).cloned().or_else(|| {
            b.entries
                .values()
                .find(|e| e.name.as_deref() == Some(name))
                .cloned()
        })
    }
}

/// `Ok` when the pipeline is as intended: it runs its file's current content (or that
/// content ran to its end), or a user stopped or cancelled it. Else why not.
pub fn readiness(e: &PipelineEntry, job: Option<&JobView>) -> Result<(), String> {
    if e.held.is_some() {
        return Ok(());
    }
    if let Some((_, why)) = &e.problem {
        return Err(why.clone());
    }
    let Some(j) = job else {
        return Err("no job runs it".into());
    };
    match j.state {
        JobState::Running | JobState::Finished if e.current => Ok(()),
        JobState::Running | JobState::Finished => {
            Err("its job runs another version than the file's".into())
        }
        JobState::Restarting => Err(format!(
            "restarting after a failure: {}",
            j.error.as_deref().unwrap_or("unknown cause")
        )),
        JobState::Failed => Err(format!(
            "its job failed: {}",
            j.error.as_deref().unwrap_or("unknown cause")
        )),
        s => Err(format!("its job is {}", s.flink_name())),
    }
}

/// Failovers of every version the pipeline had in this process: the dropped versions'
/// total, then each listed one's (ended or running), so the count never goes down when a
/// version ends or leaves the history.
pub fn restarts_total(e: &PipelineEntry, restarts_of: impl Fn(&JobId) -> u64) -> u64 {
    let listed: u64 = e.history.iter().chain(e.job.iter()).map(restarts_of).sum();
    e.restarts_before + listed
}

/// The status shown for a pipeline: its hold, its job's state, or `INVALID` / `FAILED` when
/// no job runs for it.
pub fn status(e: &PipelineEntry, job: Option<&JobView>) -> &'static str {
    match (e.held, job, &e.problem) {
        (Some(Hold::Stopped), _, _) => "STOPPED",
        (Some(Hold::Cancelled), _, _) => "CANCELED",
        (None, Some(j), _) => j.state.flink_name(),
        (None, None, Some((ProblemKind::Invalid | ProblemKind::NameClash, _))) => "INVALID",
        (None, None, _) => "FAILED",
    }
}

fn version_json(j: &JobView) -> Value {
    json!({
        "job-id": j.id.0,
        "state": j.state.flink_name(),
        "start-time": j.start_time,
        "end-time": j.end_time.map_or(-1, |t| t as i64),
        "restarts": j.restarts,
        "failure-cause": j.error,
    })
}

/// One pipeline as `/pipelines` lists it; `jobs` are the registry's views by id.
pub fn entry_json(e: &PipelineEntry, jobs: &BTreeMap<JobId, JobView>) -> Value {
    let job = e.job.as_ref().and_then(|id| jobs.get(id));
    let ready = readiness(e, job);
    let versions: Vec<Value> = e
        .history
        .iter()
        .chain(e.job.iter())
        .filter_map(|id| jobs.get(id))
        .map(version_json)
        .collect();
    json!({
        "file": e.file,
        "name": e.name,
        "status": status(e, job),
        "ready": ready.is_ok(),
        "reason": ready.err(),
        "job-id": e.job.as_ref().map(|j| j.0.clone()),
        "current": e.current,
        "held": e.held.map(Hold::as_str),
        "problem": e.problem.as_ref().map(|(_, p)| p.clone()),
        "reload-error": job.and_then(|j| j.notes.reload_error.clone()),
        "versions": versions,
        "versions-started": e.versions_started,
        "restarts": restarts_total(e, |id| jobs.get(id).map_or(0, |j| j.restarts)),
        "reload-errors": e.reload_errors,
        "rollbacks": e.rollbacks,
    })
}

/// `GET /pipelines`.
pub fn pipelines_json(entries: &[PipelineEntry], jobs: &[JobView]) -> Value {
    let by_id: BTreeMap<JobId, JobView> = jobs.iter().map(|j| (j.id.clone(), j.clone())).collect();
    let list: Vec<Value> = entries.iter().map(|e| entry_json(e, &by_id)).collect();
    json!({ "pipelines": list })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::runtime::JobMetrics;
    use crate::service::registry::{JobRegistration, JobRegistry};

    fn job(state: JobState) -> JobView {
        let r = JobRegistry::new();
        let id = JobId("a".repeat(32));
        let _rx = r.register(JobRegistration {
            id: id.clone(),
            name: "wc".into(),
            start_time: 1,
            vertices: Vec::new(),
            metrics: Arc::new(JobMetrics::default()),
            stats: None,
            config: Arc::new(Config::default()),
            entries: Arc::new(Vec::new()),
            restore: None,
        });
        r.finish(&id, state, Some("boom".into()));
        r.get(&id).unwrap()
    }

    #[test]
    fn restarts_count_every_version_and_never_go_down() {
        let ids: Vec<JobId> = (0..3).map(|i| JobId(format!("{i}").repeat(32))).collect();
        let restarts = |id: &JobId| [2, 3, 1][ids.iter().position(|i| i == id).unwrap()];
        let mut e = PipelineEntry::new("wc.yaml");
        e.job = Some(ids[0].clone());
        assert_eq!(restarts_total(&e, restarts), 2);
        // A reload: the first version ends and is listed, its restarts still count.
        e.history.push(ids[0].clone());
        e.job = Some(ids[1].clone());
        assert_eq!(restarts_total(&e, restarts), 5);
        // It leaves the history: its restarts move into the total of dropped versions.
        e.history.remove(0);
        e.restarts_before += 2;
        e.history.push(ids[1].clone());
        e.job = Some(ids[2].clone());
        assert_eq!(restarts_total(&e, restarts), 6);
    }

    #[test]
    fn ready_exactly_when_the_file_runs_as_intended() {
        let mut e = PipelineEntry::new("wc.yaml");
        assert!(readiness(&e, None).is_err(), "no job");
        e.job = Some(JobId("a".repeat(32)));
        e.current = true;
        assert_eq!(readiness(&e, Some(&job(JobState::Running))), Ok(()));
        assert_eq!(readiness(&e, Some(&job(JobState::Finished))), Ok(()));
        let failed = readiness(&e, Some(&job(JobState::Failed))).unwrap_err();
        assert!(failed.contains("boom"), "{failed}");
        // A user's cancel is as intended.
        e.held = Some(Hold::Cancelled);
        assert_eq!(readiness(&e, Some(&job(JobState::Canceled))), Ok(()));
        assert_eq!(status(&e, Some(&job(JobState::Canceled))), "CANCELED");
        e.held = None;
        e.current = false;
        assert!(readiness(&e, Some(&job(JobState::Running))).is_err());
        e.problem = Some((ProblemKind::Refused, "wc.yaml: bad".into()));
        assert_eq!(
            readiness(&e, Some(&job(JobState::Running))),
            Err("wc.yaml: bad".into())
        );
        let mut invalid = PipelineEntry::new("bad.yaml");
        invalid.problem = Some((ProblemKind::Invalid, "bad.yaml:1: …".into()));
        assert_eq!(status(&invalid, None), "INVALID");
    }
}
