//! Jobs submitted with `floe run -d` (`POST /jobs`): started, remembered while they run, and
//! resumed at the next start of `floe serve` from their pipeline's newest state (the final
//! savepoint of the shutdown, or the latest retained checkpoint after a crash). A job that
//! ends (by itself, or stopped or cancelled through the API) is forgotten.
//!
//! A submission whose pipeline name a pipeline file or another running submitted job
//! already has is refused: the name is the identity of the state it resumes from.

use super::launch::{self, LaunchSpec};
use super::memory;
use super::service::{Request, ServeOptions, SubmittedJob, Supervisor};
use crate::service::rest::service::{SubmitError, SubmitRequest};
use std::path::PathBuf;

/// The pipeline of a submission, parsed.
fn parse(r: &SubmitRequest) -> Result<crate::pipeline::Pipeline, SubmitError> {
    let path = PathBuf::from(
        r.pipeline_path
            .clone()
            .unwrap_or_else(|| "submitted.yaml".into()),
    );
    crate::pipeline::parse(&r.pipeline, &path).map_err(|e| SubmitError::Invalid(e.to_string()))
}

/// The launch of a submission, restoring `restore`.
fn spec(
    r: &SubmitRequest,
    pipeline: crate::pipeline::Pipeline,
    opts: &ServeOptions,
    restore: Option<String>,
) -> LaunchSpec {
    // The service's own -D first: the submission's are more specific.
    let mut dynamic = opts.dynamic.clone();
    dynamic.extend(r.dynamic.iter().cloned());
    if let Some(p) = r.parallelism {
        dynamic.push(format!("parallelism.default={p}"));
    }
    if let Some(m) = &r.claim_mode {
        dynamic.push(format!("execution.state-recovery.claim-mode={m}"));
    }
    LaunchSpec {
        pipeline,
        conf_dir: opts.conf_dir.clone(),
        dynamic,
        restore,
        allow_non_restored: r.allow_non_restored_state,
        dry_run: false,
    }
}

/// Refuses a submission that would read or write outside the directories a submitted job
/// may use (see `submission`), before anything is created for it. The policy is read from
/// `flink-conf.yaml` now, so a resumed submission is checked against today's rules.
fn check_submission(conf_dir: Option<PathBuf>, spec: &LaunchSpec) -> Result<(), SubmitError> {
    let base = crate::config::load(&crate::config::LoadOptions {
        conf_dir,
        ..crate::config::LoadOptions::default()
    })
    .map_err(|e| SubmitError::Unavailable(format!("flink-conf.yaml does not load: {e}")))?;
    let job = launch::load_config(spec).map_err(|e| SubmitError::Invalid(e.to_string()))?;
    super::submission::SubmitPolicy::from_config(&base.config)
        .check(spec, &job.config)
        .map_err(SubmitError::Refused)
}

impl Supervisor {
    /// `POST /jobs`: a pipeline to run in the service, not followed as a file.
    pub(super) async fn submit(&mut self, r: SubmitRequest) -> Result<String, SubmitError> {
        let pipeline = parse(&r)?;
        let name = pipeline.name.clone();
        if let Some(e) = self
            .board
            .list()
            .into_iter()
            .find(|e| e.name.as_deref() == Some(&name))
        {
            return Err(SubmitError::Invalid(format!(
                "pipeline file {} already has `name: {name}`; a pipeline's name is the \
                 identity of its state: give the submitted pipeline another name",
                e.file
            )));
        }
        if self.submitted.iter().any(|s| s.job.name == name) {
            return Err(SubmitError::Invalid(format!(
                "a submitted job named {name} runs already; a pipeline's name is the identity \
                 of its state: give this one another name, or stop that one first"
            )));
        }
        let restore = r.savepoint_path.clone();
        let spec = spec(&r, pipeline, &self.opts, restore);
        let id = self.start_submitted(spec, r).await?;
        self.persist().await;
        Ok(id)
    }

    /// Starts a submission and records it (in memory too: a restart resumes it).
    async fn start_submitted(
        &mut self,
        spec: LaunchSpec,
        request: SubmitRequest,
    ) -> Result<String, SubmitError> {
        let name = spec.pipeline.name.clone();
        let conf_dir = self.opts.conf_dir.clone();
        let checked = spec.clone();
        tokio::task::spawn_blocking(move || check_submission(conf_dir, &checked))
            .await
            .map_err(|e| SubmitError::Unavailable(format!("the submission check failed: {e}")))??;
        let job = launch::prepare_off_workers(spec)
            .await
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let config = job.config.clone();
        let tx = self.ended_tx.clone();
        let hook: launch::EndHook = Box::new(move |e| {
            let _ = tx.send(Request::Ended(e));
        });
        let started = launch::start(job, &self.registry, Some(hook));
        let id = started.job_id.clone();
        tracing::info!(job_id = %id, job = %started.name, "submitted job started");
        self.new_version(None, &name, &id, &config).await;
        self.store.memory.submitted.retain(|s| s.name != name);
        self.store.memory.submitted.push(memory::Submitted {
            name,
            job_id: id.0.clone(),
            request,
        });
        self.submitted.push(SubmittedJob {
            job: started,
            config,
        });
        Ok(id.0)
    }

    /// At start: every submitted job the last run had running starts again, from its
    /// pipeline's newest state (else what it was submitted with).
    pub(super) async fn resume_submitted(&mut self) {
        let remembered = self.store.memory.submitted.clone();
        for s in remembered {
            if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let pipeline = match parse(&s.request) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(job = %s.name, "a remembered submitted job cannot be resumed: {e}");
                    self.store.memory.submitted.retain(|m| m.name != s.name);
                    continue;
                }
            };
            let (opts, p) = (self.opts.clone(), pipeline.clone());
            let (r, name) = (s.request.clone(), s.name.clone());
            let newest = tokio::task::spawn_blocking(move || {
                let loaded = launch::load_config(&spec(&r, p, &opts, None)).ok()?;
                super::resume::resume_point(&loaded.config, &name)
            })
            .await
            .ok()
            .flatten();
            let restore = newest
                .map(|p| p.display().to_string())
                .or_else(|| s.request.savepoint_path.clone());
            tracing::info!(job = %s.name, from = ?restore, "resuming the submitted job {}", s.name);
            let spec = spec(&s.request, pipeline, &self.opts, restore);
            if let Err(e) = self.start_submitted(spec, s.request.clone()).await {
                tracing::error!(job = %s.name, "the submitted job {} cannot be resumed: {e}", s.name);
                self.store.memory.submitted.retain(|m| m.name != s.name);
            }
        }
        self.persist().await;
    }
}
