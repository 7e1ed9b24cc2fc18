//! Keeping `floe serve` bounded and its memory true: what the end of a job means (a user's
//! stop or cancel is remembered; an ended submitted job is forgotten), how many ended
//! versions each pipeline lists (`service.history.max-versions`), how many service
//! savepoints each pipeline keeps (`service.savepoints.num-retained`), and the cleaning of
//! ended versions' checkpoint directories once a newer version proved itself.
//!
//! Deleting runs on blocking threads. Only what the service made is deleted: savepoints it
//! recorded as its own, and job directories `<checkpoint dir>/<job id>` of versions it
//! started, built from the pipeline's configuration (never from a path read from disk).

use super::launch::JobEnded;
use super::memory::{self, Version};
use super::resume;
use super::service::Supervisor;
use crate::checkpoint::retention::{self, TerminationAction};
use crate::checkpoint::storage::{self, Location, PathKind};
use crate::checkpoint::{JobId, JobTermination};
use crate::config::Config;
use crate::service::registry::JobState;
use std::path::Path;
use std::sync::Arc;

/// What the supervisor knows of a job it started.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    /// Its pipeline file; `None` for a submitted job.
    pub file: Option<String>,
    /// Its pipeline's name.
    pub name: String,
    pub config: Arc<Config>,
}

/// Whether a version's retention mode keeps its checkpoints for the way it ended: then the
/// service never cleans them. A stop (or a crash) keeps them only to resume from, which a
/// newer version's checkpoint makes needless.
pub fn keeps_checkpoints(cfg: &Config, state: JobState) -> bool {
    let how = match state {
        JobState::Canceled => JobTermination::Cancelled,
        JobState::Failed => JobTermination::Failed,
        _ => return false,
    };
    retention::on_termination(cfg.checkpointing.externalized_retention, how)
        == TerminationAction::Retain
}

/// `<checkpoint dir>/<job id>` of a job with configuration `cfg`; `None` without a
/// checkpoint directory or without the job-id level (then the directory is shared).
fn job_dir(cfg: &Config, job_id: &JobId) -> Option<Location> {
    if !cfg.state.create_subdir || !JobId::is_valid(&job_id.0) {
        return None;
    }
    let base = storage::parse_dir(cfg.state.checkpoints_dir.as_deref()?).ok()?;
    Some(storage::path(PathKind::JobDir {
        base: &base,
        job_id,
        create_subdir: true,
    }))
}

/// Deletes an ended version's job directory: each checkpoint (`_metadata` first), then
/// what is left (`shared/`, `taskowned/`). Blocking.
fn delete_job_dir(dir: &Location) {
    let checkpoints = storage::list_checkpoints(dir).unwrap_or_default();
    for (_, chk) in checkpoints {
        if let Err(e) = storage::delete_snapshot_dir(&chk) {
            tracing::warn!(dir = %chk, "cannot delete an ended version's checkpoint: {e}");
            return;
        }
    }
    match storage::delete_snapshot_dir(dir) {
        Ok(()) => {
            tracing::info!(dir = %dir, "deleted the checkpoint directory of an ended version")
        }
        Err(e) => {
            tracing::warn!(dir = %dir, "cannot delete an ended version's checkpoint directory: {e}")
        }
    }
}

impl Supervisor {
    /// Writes the memory, off the async workers.
    pub(super) async fn persist(&self) {
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.save()).await;
    }

    /// A version started: remembered for its end, for the pipeline's history and for the
    /// cleaning of its checkpoint directory.
    pub(super) async fn new_version(
        &mut self,
        file: Option<&str>,
        name: &str,
        job_id: &JobId,
        config: &Arc<Config>,
    ) {
        self.versions.insert(
            job_id.clone(),
            VersionInfo {
                file: file.map(str::to_string),
                name: name.to_string(),
                config: config.clone(),
            },
        );
        let list = self
            .store
            .memory
            .versions
            .entry(name.to_string())
            .or_default();
        list.push(Version {
            job_id: job_id.0.clone(),
            keep: false,
        });
        self.persist().await;
        let Some(file) = file else {
            return;
        };
        let cap = config.service.history_versions as usize;
        let mut dropped = Vec::new();
        self.board.update(file, |e| {
            if let Some(before) = e.job.replace(job_id.clone()) {
                if before != *job_id {
                    e.history.push(before);
                }
            }
            while e.history.len() > cap {
                dropped.push(e.history.remove(0));
            }
            e.name = Some(name.to_string());
            e.current = true;
            e.held = None;
            e.problem = None;
            e.versions_started += 1;
        });
        for id in dropped {
            if let Some(v) = self.registry.get(&id) {
                self.board.update(file, |e| e.restarts_before += v.restarts);
            }
            self.registry.remove(&id);
            self.versions.remove(&id);
        }
    }

    /// A job ended. A user's stop or cancel of a pipeline's current version is remembered;
    /// an ended submitted job is forgotten (it is not resumed); the version's retention
    /// decides whether the service may clean its checkpoints.
    pub(super) async fn on_job_ended(&mut self, ended: JobEnded) {
        let Some(info) = self.versions.get(&ended.job_id).cloned() else {
            return;
        };
        let keep = keeps_checkpoints(&info.config, ended.state);
        if let Some(v) = self
            .store
            .memory
            .versions
            .get_mut(&info.name)
            .and_then(|l| l.iter_mut().find(|v| v.job_id == ended.job_id.0))
        {
            v.keep = keep;
        }
        let current_of_file = info.file.as_ref().filter(|f| {
            self.jobs
                .get(f.as_str())
                .is_some_and(|m| m.job.job_id == ended.job_id)
        });
        if let (Some(file), Some(how)) = (current_of_file.cloned(), ended.by_user) {
            self.hold(&file, how).await;
        }
        if let Some(at) = self
            .submitted
            .iter()
            .position(|s| s.job.job_id == ended.job_id)
        {
            let s = self.submitted.remove(at);
            tracing::info!(
                job_id = %ended.job_id,
                "submitted job {} ({}) ended {}: it is not resumed at the next start",
                s.job.name,
                ended.job_id,
                ended.state
            );
            self.store
                .memory
                .submitted
                .retain(|m| m.job_id != ended.job_id.0);
            self.ended_submitted.push_back(ended.job_id.clone());
            let cap = info.config.service.history_versions as usize;
            while self.ended_submitted.len() > cap {
                if let Some(old) = self.ended_submitted.pop_front() {
                    self.registry.remove(&old);
                    self.versions.remove(&old);
                }
            }
        }
        self.persist().await;
    }

    /// A savepoint the service took of pipeline `name`: recorded, and the oldest beyond
    /// `service.savepoints.num-retained` deleted now that this one is complete.
    pub(super) async fn keep_savepoint(&mut self, name: &str, cfg: &Config, savepoint: &Path) {
        let Some(dir_name) = savepoint.file_name().and_then(|n| n.to_str()) else {
            return;
        };
        if !memory::is_savepoint_name(dir_name) {
            return;
        }
        let list = self
            .store
            .memory
            .savepoints
            .entry(name.to_string())
            .or_default();
        list.retain(|n| n != dir_name);
        list.push(dir_name.to_string());
        let keep = cfg.service.savepoints_retained.max(1) as usize;
        let extra = list.len().saturating_sub(keep);
        let old: Vec<String> = list.drain(..extra).collect();
        self.persist().await;
        let Some(root) = resume::savepoint_root(cfg) else {
            return;
        };
        if old.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for n in old {
                let dir = root.join(&n);
                match crate::checkpoint::savepoint::dispose(&dir) {
                    Ok(_) => tracing::info!(savepoint = %dir.display(), "deleted an older service savepoint (service.savepoints.num-retained)"),
                    Err(e) => tracing::warn!(savepoint = %dir.display(), "cannot delete an older service savepoint: {e}"),
                }
            }
        })
        .await;
    }

    /// Every second: the checkpoint directories of ended versions of each pipeline whose
    /// current version proved itself (completed a checkpoint; with checkpointing off: runs)
    /// are cleaned, unless their retention mode keeps them.
    pub(super) fn housekeeping(&mut self) {
        let proven: Vec<(String, JobId, Arc<Config>)> = self
            .jobs
            .values()
            .map(|m| (&m.job, m.pipeline.name.clone(), m.config.clone()))
            .chain(
                self.submitted
                    .iter()
                    .map(|s| (&s.job, s.job.name.clone(), s.config.clone())),
            )
            .filter(|(job, _, cfg)| {
                !job.done.is_finished()
                    && job.handle.metrics().is_some()
                    && (cfg.checkpointing.interval.is_none()
                        || job.handle.checkpoints_completed() > 0)
            })
            .map(|(job, name, cfg)| (name, job.job_id.clone(), cfg))
            .collect();
        for (name, current, cfg) in proven {
            self.clean_versions(&name, &cfg, Some(&current));
        }
    }

    /// Deletes (on a blocking thread) the checkpoint directories of pipeline `name`'s
    /// versions other than `current` whose retention does not keep them.
    pub(super) fn clean_versions(&mut self, name: &str, cfg: &Config, current: Option<&JobId>) {
        let Some(list) = self.store.memory.versions.get_mut(name) else {
            return;
        };
        let obsolete =
            |v: &Version| Some(v.job_id.as_str()) != current.map(|c| c.0.as_str()) && !v.keep;
        if !list.iter().any(obsolete) {
            return;
        }
        let mut doomed = Vec::new();
        list.retain(|v| {
            let gone = obsolete(v);
            if gone {
                doomed.extend(job_dir(cfg, &JobId(v.job_id.clone())));
            }
            !gone
        });
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.save();
            for dir in doomed {
                delete_job_dir(&dir);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExternalizedRetention;

    #[test]
    fn only_the_retention_mode_keeps_an_ended_versions_checkpoints() {
        let mut cfg = Config::default();
        cfg.checkpointing.externalized_retention = ExternalizedRetention::RetainOnCancellation;
        assert!(keeps_checkpoints(&cfg, JobState::Canceled));
        assert!(keeps_checkpoints(&cfg, JobState::Failed));
        assert!(!keeps_checkpoints(&cfg, JobState::Finished));
        cfg.checkpointing.externalized_retention = ExternalizedRetention::NoExternalizedCheckpoints;
        assert!(!keeps_checkpoints(&cfg, JobState::Canceled));
    }

    #[test]
    fn a_job_directory_is_built_from_the_configuration_and_a_valid_id_only() {
        let mut cfg = Config::default();
        assert_eq!(job_dir(&cfg, &JobId("a".repeat(32))), None);
        cfg.state.checkpoints_dir = Some("file:///var/lib/floe/ck".into());
        assert_eq!(
            job_dir(&cfg, &JobId("a".repeat(32))),
            Some(Location::Local(std::path::PathBuf::from(format!(
                "/var/lib/floe/ck/{}",
                "a".repeat(32)
            ))))
        );
        assert_eq!(job_dir(&cfg, &JobId("../etc".into())), None);
        cfg.state.create_subdir = false;
        assert_eq!(job_dir(&cfg, &JobId("a".repeat(32))), None);
    }
}
