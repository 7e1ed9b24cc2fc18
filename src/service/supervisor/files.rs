//! What the supervisor does to a pipeline file's job: a new file starts (resuming from the
//! pipeline's newest state), a removed one stops with a savepoint, an edited one is
//! validated, stopped with a savepoint and started again from it as the new version, on
//! probation; a refused restore or a failed probation brings the version before back from
//! that same savepoint. And `floe start` for a pipeline a user stopped or cancelled.

use super::launch::{self, LaunchError, LaunchSpec};
use super::memory::{self, Held};
use super::probation::{self, Verdict};
use super::report::{Outcome, ReloadReport};
use super::resume;
use super::service::{Managed, Request, ServeOptions, Supervisor};
use super::stop::stop_with_savepoint;
use crate::checkpoint::JobId;
use crate::pipeline::Pipeline;
use crate::service::pipelines::ProblemKind;
use crate::service::rest::service::SubmitError;
use crate::service::watcher::{self, ScannedFile};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The launch of pipeline `p` from `restore`, with the service's conf dir.
pub(super) fn spec_for(opts: &ServeOptions, p: Pipeline, restore: Option<String>) -> LaunchSpec {
    LaunchSpec {
        pipeline: p,
        conf_dir: opts.conf_dir.clone(),
        dynamic: opts.dynamic.clone(),
        restore,
        allow_non_restored: false,
        dry_run: false,
    }
}

/// An edit's text checked as far as it can be without stopping anything: YAML, operators,
/// and the one check `floe validate` and `floe run` make (configuration, plan, memory,
/// operator inputs). Reads the configuration file: call it off the async workers.
fn validate(opts: &ServeOptions, text: &str, path: &Path) -> Result<Pipeline, String> {
    let pipeline = crate::pipeline::parse(text, path).map_err(|e| e.to_string())?;
    let spec = spec_for(opts, pipeline.clone(), None);
    // Its warnings are logged when the job starts.
    super::check::check(&spec).map_err(|e| e.to_string())?;
    Ok(pipeline)
}

/// [`validate`] on a blocking thread.
async fn validate_off_workers(
    opts: &ServeOptions,
    text: &str,
    path: &Path,
) -> Result<Pipeline, String> {
    let (opts, text, path) = (opts.clone(), text.to_string(), path.to_path_buf());
    tokio::task::spawn_blocking(move || validate(&opts, &text, &path))
        .await
        .unwrap_or_else(|e| Err(format!("bug: validating the pipeline panicked: {e}")))
}

/// Where pipeline `name` resumes from (see `resume`), on a blocking thread: it lists the
/// checkpoint and savepoint directories, on S3 over the network.
async fn resume_point(cfg: Arc<crate::config::Config>, name: &str) -> Option<PathBuf> {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || resume::resume_point(&cfg, &name))
        .await
        .ok()
        .flatten()
}

fn stopping() -> Outcome {
    Outcome::Failed {
        error: "not started: floe serve is stopping".into(),
    }
}

impl Supervisor {
    /// A new file (or one without a job): validate and start, resuming from the pipeline's
    /// newest savepoint or checkpoint; unless a user stopped or cancelled this very content.
    pub(super) async fn add(&mut self, file: &str, f: &ScannedFile) -> Outcome {
        if let Some(how) = self.hold_of(file, f.hash).await {
            self.board.update(file, |e| {
                e.held = Some(how);
                e.name = super::rescan::name_of(&f.text);
            });
            return Outcome::Held { how };
        }
        let pipeline = match crate::pipeline::parse(&f.text, &f.path) {
            Ok(p) => p,
            Err(e) => {
                return Outcome::Invalid {
                    error: e.to_string(),
                }
            }
        };
        self.board
            .update(file, |e| e.name = Some(pipeline.name.clone()));
        let (opts, p) = (self.opts.clone(), pipeline.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            launch::load_config(&spec_for(&opts, p, None)).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("bug: loading the configuration panicked: {e}")));
        let config = match loaded {
            Ok(l) => Arc::new(l.config),
            Err(error) => return Outcome::Invalid { error },
        };
        let Some(resumed) = self
            .unless_stopping(resume_point(config, &pipeline.name))
            .await
        else {
            return stopping();
        };
        let from = resumed.as_ref().map(|p| p.display().to_string());
        let spec = spec_for(&self.opts, pipeline, from.clone());
        match self.launch(file, &f.text, spec, None).await {
            Ok(job_id) => Outcome::Started {
                job_id,
                resumed: from,
            },
            Err(e) => Outcome::Failed {
                error: match &resumed {
                    Some(r) => format!(
                        "cannot resume {file} from its newest state {}: {e}; to start it \
                         anew, set `allow-non-restored-state: true` in it if operators were \
                         removed, or move that state away",
                        r.display()
                    ),
                    None => e.to_string(),
                },
            },
        }
    }

    /// The hold a user put on `file` when its content is still `hash`. Another content (an
    /// edit) ends the hold.
    async fn hold_of(&mut self, file: &str, hash: u64) -> Option<crate::service::pipelines::Hold> {
        let held = self.store.memory.held.get(file)?.clone();
        if held.hash == memory::hash_text(hash) {
            return Some(held.how);
        }
        tracing::info!(
            file,
            "{file} was edited since it was {} through the API: it runs again",
            held.how.as_str()
        );
        self.store.memory.held.remove(file);
        self.board.update(file, |e| e.held = None);
        self.persist().await;
        None
    }

    /// Prepares (off the async workers) and starts a job for file `file`, and records it.
    pub(super) async fn launch(
        &mut self,
        file: &str,
        text: &str,
        spec: LaunchSpec,
        reload_error: Option<String>,
    ) -> Result<JobId, LaunchError> {
        let pipeline = spec.pipeline.clone();
        let Some(job) = self
            .unless_stopping(launch::prepare_off_workers(spec))
            .await
        else {
            return Err(LaunchError::Stopping);
        };
        let job = job?;
        for w in &job.warnings {
            tracing::warn!(file = %file, "{w}");
        }
        let (entries, config) = (job.entries.clone(), job.config.clone());
        let job_id = job.job_id.clone();
        self.registry.annotate(&job_id, |n| {
            n.file = Some(file.to_string());
            n.reload_error = reload_error;
        });
        let tx = self.ended_tx.clone();
        let hook: launch::EndHook = Box::new(move |e| {
            let _ = tx.send(Request::Ended(e));
        });
        let started = launch::start(job, &self.registry, Some(hook));
        tracing::info!(file = %file, job_id = %job_id, "job of {file} started");
        self.new_version(Some(file), &pipeline.name, &job_id, &config)
            .await;
        self.jobs.insert(
            file.to_string(),
            Managed {
                text: text.to_string(),
                hash: watcher::content_hash(text.as_bytes()),
                refused: None,
                pipeline,
                job: started,
                entries,
                config,
            },
        );
        Ok(job_id)
    }

    /// A removed file: its job stops with a savepoint; a hold on it ends.
    pub(super) async fn remove(&mut self, file: &str) -> Outcome {
        // Persisted before the views drop it: once the API shows it gone, a restart agrees.
        if self.store.memory.held.remove(file).is_some() {
            self.persist().await;
        }
        self.board.remove(file);
        let Some(mut m) = self.jobs.remove(file) else {
            // It never ran (it was invalid): nothing to stop.
            return Outcome::Stopped { savepoint: None };
        };
        let root = resume::savepoint_root(&m.config);
        match stop_with_savepoint(&mut m.job, root.as_deref(), self.opts.stop_timeout).await {
            Ok(sp) => {
                if let Some(sp) = &sp {
                    self.keep_savepoint(&m.pipeline.name, &m.config, sp).await;
                    // The savepoint is its newest state: its versions' directories go.
                    self.clean_versions(&m.pipeline.name, &m.config, None);
                }
                Outcome::Stopped {
                    savepoint: sp.map(|p| p.display().to_string()),
                }
            }
            Err(e) => Outcome::Failed {
                error: format!("the job of removed {file} did not stop with a savepoint: {e}"),
            },
        }
    }

    /// An edit refused before anything stopped: the version before runs on, with the error.
    pub(super) fn refuse(&mut self, file: &str, hash: u64, error: String) -> Outcome {
        if let Some(m) = self.jobs.get_mut(file) {
            self.registry
                .annotate(&m.job.job_id, |n| n.reload_error = Some(error.clone()));
            m.refused = Some((hash, error.clone(), false));
        }
        self.board.update(file, |e| {
            e.current = false;
            e.reload_errors += 1;
        });
        Outcome::Rejected { error }
    }

    /// An edited file: validate, stop the old version with a savepoint, start the new one
    /// from it on probation, or bring the old one back.
    pub(super) async fn change(&mut self, file: &str, f: &ScannedFile) -> Outcome {
        let held = self.store.memory.held.contains_key(file);
        if held {
            if let Some(how) = self.hold_of(file, f.hash).await {
                return Outcome::Held { how };
            }
        }
        let Some(current) = self.jobs.get(file) else {
            // The version before never ran (invalid, or it failed to start): start this one.
            return self.add(file, f).await;
        };
        let old_id = current.job.job_id.clone();
        if current.hash == f.hash && !current.job.done.is_finished() {
            // An edit undone: the job runs this very text.
            self.registry.annotate(&old_id, |n| n.reload_error = None);
            self.board.update(file, |e| {
                e.current = true;
                e.problem = None;
            });
            return Outcome::Kept { job_id: old_id };
        }
        if let Some((_, error, rolled_back)) = current.refused.as_ref().filter(|r| r.0 == f.hash) {
            let error = error.clone();
            return match rolled_back {
                true => Outcome::RolledBack {
                    job_id: old_id,
                    error,
                },
                false => Outcome::Rejected { error },
            };
        }
        let pipeline = match validate_off_workers(&self.opts, &f.text, &f.path).await {
            Ok(p) => p,
            Err(error) => {
                let shown =
                    format!("{file}: the edit is not applied, the version before runs on: {error}");
                return self.refuse(file, f.hash, shown);
            }
        };
        let Some(mut old) = self.jobs.remove(file) else {
            return Outcome::Failed {
                error: "bug: the job vanished during its reload".into(),
            };
        };
        let was_running = !old.job.done.is_finished();
        let savepoint = if !was_running {
            // The old version ended (by itself, or a user's stop): resume from its newest
            // state.
            resume_point(old.config.clone(), &old.pipeline.name).await
        } else {
            let root = resume::savepoint_root(&old.config);
            match stop_with_savepoint(&mut old.job, root.as_deref(), self.opts.stop_timeout).await {
                Ok(sp) => {
                    if let Some(sp) = &sp {
                        self.keep_savepoint(&old.pipeline.name, &old.config, sp)
                            .await;
                    }
                    sp
                }
                Err(e) => {
                    let error = format!(
                        "{file}: the edit is not applied, the version before could not stop \
                         with a savepoint: {e}"
                    );
                    if old.job.done.is_finished() {
                        self.jobs.insert(file.to_string(), old);
                        return Outcome::Failed { error };
                    }
                    self.jobs.insert(file.to_string(), old);
                    return self.refuse(file, f.hash, error);
                }
            }
        };
        let from = savepoint.as_ref().map(|p| p.display().to_string());
        let spec = spec_for(&self.opts, pipeline, from.clone());
        let job_id = match self.launch(file, &f.text, spec, None).await {
            Ok(id) => id,
            Err(e) => {
                let error = format!(
                    "{file}: the new version cannot start from {}: {e}; the version before runs \
                     again from there",
                    from.as_deref().unwrap_or("scratch")
                );
                return self.roll_back(file, old, f.hash, from, error).await;
            }
        };
        if !was_running {
            return Outcome::Applied {
                job_id,
                savepoint: from,
            };
        }
        match self.probation(file).await {
            Verdict::Passed => Outcome::Applied {
                job_id,
                savepoint: from,
            },
            Verdict::Failed(cause) => self.after_failed_probation(file, old, f, from, cause).await,
        }
    }

    /// The new version of `file` failed its probation: it is stopped; if it committed
    /// nothing (no checkpoint completed), the version before runs again from the same
    /// savepoint. One that did complete a checkpoint cannot be undone without doubling its
    /// output: it starts again from its own newest state instead.
    async fn after_failed_probation(
        &mut self,
        file: &str,
        old: Managed,
        f: &ScannedFile,
        from: Option<String>,
        cause: String,
    ) -> Outcome {
        let Some(mut new) = self.jobs.remove(file) else {
            return Outcome::Failed {
                error: "bug: the new version vanished during its probation".into(),
            };
        };
        probation::end(&mut new.job, self.opts.stop_timeout).await;
        let error = format!(
            "{file}: the new version failed within its probation ({cause}); the version before \
             runs again from {}",
            from.as_deref().unwrap_or("scratch")
        );
        if new.job.handle.checkpoints_completed() == 0 {
            tracing::error!(file = %file, "{error}");
            return self.roll_back(file, old, f.hash, from, error).await;
        }
        tracing::error!(
            file = %file,
            "{file}: the new version failed within its probation ({cause}) after completing a \
             checkpoint, so its output is committed: it starts again from its newest state"
        );
        let resumed = resume_point(new.config.clone(), &new.pipeline.name).await;
        let spec = spec_for(
            &self.opts,
            new.pipeline.clone(),
            resumed.map(|p| p.display().to_string()),
        );
        match self.launch(file, &f.text, spec, None).await {
            Ok(job_id) => Outcome::Applied {
                job_id,
                savepoint: from,
            },
            Err(e) => Outcome::Failed {
                error: format!("{file}: the new version did not start again: {e}"),
            },
        }
    }

    /// The version before (`old`) starts again from `from`, with `error` on it; the edit with
    /// content `hash` is remembered as refused.
    async fn roll_back(
        &mut self,
        file: &str,
        old: Managed,
        hash: u64,
        from: Option<String>,
        error: String,
    ) -> Outcome {
        let spec = spec_for(&self.opts, old.pipeline.clone(), from);
        match self
            .launch(file, &old.text, spec, Some(error.clone()))
            .await
        {
            Ok(job_id) => {
                if let Some(m) = self.jobs.get_mut(file) {
                    m.refused = Some((hash, error.clone(), true));
                }
                self.board.update(file, |e| {
                    e.current = false;
                    e.reload_errors += 1;
                    e.rollbacks += 1;
                });
                Outcome::RolledBack { job_id, error }
            }
            Err(e2) => Outcome::Failed {
                error: format!("{error}; but the version before did not start either: {e2}"),
            },
        }
    }

    /// Watches the new version of `file` through its probation.
    async fn probation(&self, file: &str) -> Verdict {
        let Some(m) = self.jobs.get(file) else {
            return Verdict::Failed("bug: no job to watch".into());
        };
        let limit = m
            .config
            .service
            .probation_for(m.config.checkpointing.interval);
        let checkpointing = m.config.checkpointing.interval.is_some();
        probation::watch(&m.job, &self.registry, limit, checkpointing, &self.stopping).await
    }

    /// `floe start NAME` (`POST /pipelines/:name/start`): a pipeline stopped or cancelled
    /// through the API runs again, resuming from its newest state; one that failed is
    /// tried again. The answer is a reload report of that one pipeline.
    pub(super) async fn start_held(&mut self, name: &str) -> Result<Value, SubmitError> {
        let Some(entry) = self.board.find(name) else {
            return Err(SubmitError::NotFound(format!(
                "no pipeline file or pipeline is named {name}; `GET /pipelines` lists them"
            )));
        };
        let file = entry.file.clone();
        let running = self
            .jobs
            .get(&file)
            .is_some_and(|m| !m.job.done.is_finished());
        let mut report = ReloadReport::default();
        if running && entry.held.is_none() {
            let job_id = self.jobs[&file].job.job_id.clone();
            report.push(file, "started", Outcome::Kept { job_id });
            return Ok(report.to_json());
        }
        if self.store.memory.held.remove(&file).is_some() {
            tracing::info!(file = %file, "floe start: {file} runs again");
            self.board.update(&file, |e| e.held = None);
            self.persist().await;
        }
        let dir = self.opts.pipelines.clone();
        let scanned = tokio::task::spawn_blocking(move || watcher::scan(&dir))
            .await
            .ok()
            .and_then(Result::ok);
        let Some(f) = scanned.and_then(|mut s| s.remove(&file)) else {
            return Err(SubmitError::NotFound(format!(
                "{file} is no longer in {}",
                self.opts.pipelines.display()
            )));
        };
        let outcome = self.add(&file, &f).await;
        let problem = match &outcome {
            Outcome::Failed { error } => Some((ProblemKind::Failed, error.clone())),
            Outcome::Invalid { error } => Some((ProblemKind::Invalid, error.clone())),
            _ => None,
        };
        self.board.update(&file, |e| e.problem = problem);
        report.push(file, "started", outcome);
        Ok(report.to_json())
    }

    /// The user's stop or cancel of `file`'s job, remembered until `floe start`, an edit or
    /// its removal.
    pub(super) async fn hold(&mut self, file: &str, how: crate::service::pipelines::Hold) {
        let Some(m) = self.jobs.get(file) else {
            return;
        };
        let held = Held {
            how,
            hash: memory::hash_text(m.hash),
            since_ms: crate::service::registry::now_ms(),
        };
        tracing::info!(
            file = %file,
            "{file}: its job was {} through the API; it stays down, also across restarts of \
             floe serve, until `floe start {}`, an edit of the file or its removal",
            how.as_str(),
            m.pipeline.name
        );
        self.store.memory.held.insert(file.to_string(), held);
        self.board.update(file, |e| e.held = Some(how));
        self.persist().await;
    }
}
