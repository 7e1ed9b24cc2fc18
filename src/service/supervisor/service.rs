//! `floe serve`'s supervisor: an actor that owns every job of the service and applies
//! changes one at a time from its queue ([`Request`]): rescans of the pipeline directory (the
//! watcher, SIGHUP, `POST /floe/reload`), submissions (`POST /jobs`), and the shutdown.
//!
//! An edited pipeline is handled in this order, so that nothing is lost or doubled:
//! 1. the new text is validated (YAML, configuration, plan); if invalid, the old version
//!    keeps running and the error is put on its job (`reload-error` in `/jobs`);
//! 2. the old job stops with a savepoint (`SavepointAction::Stop`: sources stop at the
//!    savepoint's barrier, sinks commit when it completes, the job ends);
//! 3. the new version starts from that savepoint, state mapped by operator id (state of
//!    removed ids only with the pipeline's `allow-non-restored-state: true` or
//!    `execution.state-recovery.ignore-unclaimed-state`);
//! 4. if the mapping is refused, the old version starts again from the same savepoint, and
//!    the error is put on it.
//!
//! Between 2 and 3 no source reads: the savepoint holds every source position and every
//! key's state, and the new job continues from exactly there.

use super::launch::{self, LaunchError, LaunchSpec, StartedJob};
use super::report::{Outcome, PipelineResult, ReloadReport};
use super::resume;
use super::stop::stop_with_savepoint;
use crate::checkpoint::JobId;
use crate::config::{self, Entry, LoadOptions};
use crate::pipeline::Pipeline;
use crate::service::rest::service::{BoxFuture, ServiceControl, SubmitError, SubmitRequest};
use crate::service::sdnotify::Notifier;
use crate::service::watcher::{self, ScannedFile};
use crate::service::JobRegistry;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How `floe serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `--conf-dir` (`None`: `FLOE_CONF_DIR`, else `./conf`).
    pub conf_dir: Option<PathBuf>,
    /// `-D key=value`: over every other layer, for every job (as `floe run -D`).
    pub dynamic: Vec<String>,
    /// The pipeline directory.
    pub pipelines: PathBuf,
    /// How long a stop with a savepoint may take (a reload's, a removal's, shutdown's).
    pub stop_timeout: Duration,
}

/// What the queue carries.
pub enum Request {
    /// Rescan the directory and the configuration and apply what changed; the report goes
    /// to `reply` when given.
    Rescan {
        explicit: bool,
        reply: Option<oneshot::Sender<ReloadReport>>,
    },
    Submit {
        request: SubmitRequest,
        reply: oneshot::Sender<Result<String, SubmitError>>,
    },
}

/// The sending side of the queue; cheap to clone.
#[derive(Clone)]
pub struct SupervisorHandle {
    tx: mpsc::UnboundedSender<Request>,
}

impl ServiceControl for SupervisorHandle {
    fn reload(&self) -> BoxFuture<Result<Value, String>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send(Request::Rescan {
            explicit: true,
            reply: Some(reply),
        });
        Box::pin(async move {
            sent.map_err(|_| "floe is shutting down".to_string())?;
            rx.await
                .map(|r| r.to_json())
                .map_err(|_| "floe is shutting down".to_string())
        })
    }

    fn submit(&self, request: SubmitRequest) -> BoxFuture<Result<String, SubmitError>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send(Request::Submit { request, reply });
        Box::pin(async move {
            let down = || SubmitError::Unavailable("floe is shutting down".into());
            sent.map_err(|_| down())?;
            rx.await.map_err(|_| down())?
        })
    }
}

/// One job the supervisor runs for a pipeline file.
struct Managed {
    /// The text the job runs (to bring this version back after a refused restore).
    text: String,
    /// Its content hash.
    hash: u64,
    /// The hash of the file's text last refused, with why: asked again (an explicit reload),
    /// it is reported again without touching the job.
    refused: Option<(u64, String)>,
    pipeline: Pipeline,
    job: StartedJob,
    entries: Arc<Vec<Entry>>,
    config: Arc<config::Config>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(
        "the pipeline directory {} cannot be read: {reason}; create it or pass --pipelines DIR",
        dir.display()
    )]
    Pipelines { dir: PathBuf, reason: String },
    #[error(transparent)]
    Rest(#[from] crate::service::ServeError),
    #[error("cannot watch {}: {reason}", dir.display())]
    Watch { dir: PathBuf, reason: String },
}

impl StartError {
    /// All of them are the configuration's to fix.
    pub fn exit_code(&self) -> u8 {
        crate::cli::EXIT_CONFIG
    }
}

/// How the service ended.
#[derive(Debug, Default)]
pub struct ShutdownSummary {
    /// Jobs that stopped with a final savepoint (file or job name, savepoint).
    pub savepoints: Vec<(String, PathBuf)>,
    /// Jobs that did not stop in time or could not take a savepoint: they resume from their
    /// latest retained checkpoint.
    pub unclean: Vec<(String, String)>,
}

/// The actor.
pub struct Supervisor {
    opts: ServeOptions,
    registry: JobRegistry,
    notifier: Notifier,
    /// The last scan's content hashes, by file name.
    seen: BTreeMap<String, u64>,
    /// The hash of the configuration file as last applied.
    conf_hash: Option<u64>,
    jobs: BTreeMap<String, Managed>,
    /// Jobs of `floe run -d`, with their configuration (for their savepoint directory).
    submitted: Vec<(StartedJob, Arc<config::Config>)>,
    watcher: watcher::DirWatcher,
}

/// Runs `floe serve` until SIGINT/SIGTERM: the REST API, the jobs of every pipeline file, the
/// watcher, SIGHUP, systemd notifications; then stops every job with a final savepoint.
/// Errors only at start (exit code 78): after that, problems are reported per pipeline.
pub async fn run(opts: ServeOptions) -> Result<ShutdownSummary, StartError> {
    let conf = config::load(&LoadOptions {
        conf_dir: opts.conf_dir.clone(),
        pipeline_settings: Vec::new(),
        dynamic: opts.dynamic.clone(),
    })?;
    for w in &conf.warnings {
        tracing::warn!("{w}");
    }
    if let Err(e) = std::fs::read_dir(&opts.pipelines) {
        return Err(StartError::Pipelines {
            dir: opts.pipelines.clone(),
            reason: e.to_string(),
        });
    }
    let registry = JobRegistry::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = SupervisorHandle { tx };
    let rest_options = crate::service::RestOptions::from_config(&conf.config);
    warn_if_submission_stays_off(&rest_options);
    let state = crate::service::ApiState::new(registry.clone(), &rest_options)
        .with_disposal(Arc::new(|path| {
            crate::checkpoint::savepoint::dispose(path)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }))
        .with_service(Arc::new(handle.clone()));
    let app = crate::service::router(state).merge(crate::service::dashboard::routes());
    let server = crate::service::serve(app, &rest_options).await?;

    let mut watched = vec![opts.pipelines.clone()];
    if let Some(dir) = conf.conf_file.as_ref().and_then(|f| f.parent()) {
        watched.push(dir.to_path_buf());
    }
    let (dir_watcher, mut changes) = watcher::watch(&watched).map_err(|e| StartError::Watch {
        dir: opts.pipelines.clone(),
        reason: e.to_string(),
    })?;
    let notifier = Notifier;
    let _watchdog = notifier.spawn_watchdog();
    let mut sup = Supervisor {
        opts,
        registry,
        notifier,
        seen: BTreeMap::new(),
        conf_hash: conf_hash(conf.conf_file.as_deref()),
        jobs: BTreeMap::new(),
        submitted: Vec::new(),
        watcher: dir_watcher,
    };
    let first = sup.rescan(false).await;
    for p in &first.pipelines {
        if let Outcome::Failed { error } = &p.outcome {
            tracing::error!(file = %p.file, "{error}");
        }
    }
    sup.wait_running().await;
    let status = sup.status_line();
    tracing::info!("floe serve: {status}");
    sup.notifier.ready(&status);

    #[cfg(unix)]
    let mut hup = crate::service::signals::hangups();
    let stop = crate::service::signals::wait_for_stop_or_closed_output();
    tokio::pin!(stop);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        tokio::select! {
            _ = &mut stop => break,
            _ = hangup => {
                tracing::info!("SIGHUP: reloading");
                sup.handle(Request::Rescan { explicit: true, reply: None }).await;
            }
            Some(()) = changes.recv() => {
                sup.handle(Request::Rescan { explicit: false, reply: None }).await;
            }
            Some(req) = rx.recv() => sup.handle(req).await,
        }
    }
    sup.notifier
        .stopping("stopping every job with a final savepoint");
    tracing::info!("stop requested: stopping every job with a final savepoint");
    // Refuse what is still queued: nobody waits long for it.
    drop(handle);
    rx.close();
    let summary = sup.shutdown().await;
    server.shutdown().await;
    Ok(summary)
}

/// `web.submit.enable` without a token does nothing: say so once, at start.
fn warn_if_submission_stays_off(o: &crate::service::RestOptions) {
    if o.submit_enabled && !o.submission_allowed() {
        tracing::warn!(
            "web.submit.enable is true but no token is set (rest.auth.token or \
             rest.auth.token-file): job submission stays off"
        );
    }
}

fn conf_hash(file: Option<&Path>) -> Option<u64> {
    // read_text: a FIFO or device named flink-conf.yaml is no file to wait on.
    file.and_then(|f| crate::textfile::read_text(f, config::MAX_CONF_BYTES).ok())
        .map(|t| watcher::content_hash(t.as_bytes()))
}

impl Supervisor {
    async fn handle(&mut self, req: Request) {
        match req {
            Request::Rescan { explicit, reply } => {
                let report = self.rescan(explicit).await;
                if let Some(r) = reply {
                    let _ = r.send(report);
                }
            }
            Request::Submit { request, reply } => {
                let _ = reply.send(self.submit(request));
            }
        }
    }

    fn status_line(&self) -> String {
        format!(
            "{} pipeline job(s) and {} submitted job(s) running from {}",
            self.jobs.len(),
            self.submitted.len(),
            self.opts.pipelines.display()
        )
    }

    /// Waits (bounded) until every job's first attempt runs or the job ended, so that
    /// READY=1 means the jobs run.
    async fn wait_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pending = self
                .jobs
                .values()
                .filter(|m| m.job.handle.metrics().is_none() && !m.job.done.is_finished())
                .count();
            if pending == 0 || Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Scans the pipeline directory and the configuration file and applies what changed.
    async fn rescan(&mut self, explicit: bool) -> ReloadReport {
        let mut report = ReloadReport::default();
        let mut scanned = match self.scan() {
            Ok(s) => s,
            Err(e) => {
                report.config_error = Some(e);
                return report;
            }
        };
        if watcher::diff(&self.seen, &watcher::hashes(&scanned))
            .removed
            .iter()
            .any(|r| self.jobs.contains_key(r))
        {
            // A file gone may be an editor's save in the middle (old file moved aside, new
            // one not written yet): look once more after a quiet moment before stopping a job.
            tokio::time::sleep(watcher::DEBOUNCE).await;
            match self.scan() {
                Ok(s) => scanned = s,
                Err(e) => {
                    report.config_error = Some(e);
                    return report;
                }
            }
        }
        self.watcher
            .watch_more(watcher::link_target_dirs(&self.opts.pipelines, &scanned));
        let new_hashes = watcher::hashes(&scanned);
        let mut changes = watcher::diff(&self.seen, &new_hashes);
        if explicit {
            self.add_pending(&scanned, &mut changes);
        }
        let conf = self.conf_changed();
        let startup = self.seen.is_empty() && self.jobs.is_empty();
        let reloading = !startup && (explicit || !changes.is_empty() || conf.is_some());
        if reloading {
            self.notifier.reloading();
        }
        if !changes.is_empty() {
            tracing::info!(
                added = ?changes.added,
                changed = ?changes.changed,
                removed = ?changes.removed,
                "pipeline directory changed"
            );
        }
        self.seen = new_hashes;
        if let Some((file, hash)) = conf {
            self.apply_conf(file.as_deref(), hash, &mut report);
        }
        for name in changes.removed {
            let outcome = self.remove(&name).await;
            report.pipelines.push(PipelineResult {
                file: name,
                change: "removed",
                outcome,
            });
        }
        for name in changes.added {
            let outcome = self.add(&name, &scanned[&name]);
            report.pipelines.push(PipelineResult {
                file: name,
                change: "added",
                outcome,
            });
        }
        for name in changes.changed {
            let outcome = self.change(&name, &scanned[&name]).await;
            report.pipelines.push(PipelineResult {
                file: name,
                change: "changed",
                outcome,
            });
        }
        for p in &report.pipelines {
            match &p.outcome {
                o if o.ok() => tracing::info!(file = %p.file, change = p.change, "{}: {o}", p.file),
                o => tracing::error!(file = %p.file, change = p.change, "{}: {o}", p.file),
            }
        }
        if reloading {
            let status = self.status_line();
            self.notifier.ready(&status);
        }
        report
    }

    fn scan(&self) -> Result<BTreeMap<String, ScannedFile>, String> {
        watcher::scan(&self.opts.pipelines).map_err(|e| {
            format!(
                "cannot read the pipeline directory {}: {e}; nothing changed",
                self.opts.pipelines.display()
            )
        })
    }

    /// An explicit reload also retries what an earlier scan could not apply: files whose
    /// text is not the one their job runs (an edit rejected before) and files without a job
    /// (they failed to start), so that its report and exit code say where things stand.
    fn add_pending(&self, scanned: &BTreeMap<String, ScannedFile>, changes: &mut watcher::Changes) {
        for (name, f) in scanned {
            if changes.added.contains(name) || changes.changed.contains(name) {
                continue;
            }
            match self.jobs.get(name) {
                Some(m) if m.hash != f.hash => changes.changed.push(name.clone()),
                Some(_) => {}
                None => changes.added.push(name.clone()),
            }
        }
        changes.added.sort();
        changes.changed.sort();
    }

    /// `Some((file, hash))` when the configuration file's content differs from the last one
    /// applied.
    fn conf_changed(&self) -> Option<(Option<PathBuf>, Option<u64>)> {
        let file = config::conf_file(self.opts.conf_dir.as_deref());
        let hash = conf_hash(file.as_deref());
        (hash != self.conf_hash).then_some((file, hash))
    }

    /// The configuration file changed: every job gets its live keys now; keys that need a
    /// restart are named in the log.
    fn apply_conf(&mut self, file: Option<&Path>, hash: Option<u64>, report: &mut ReloadReport) {
        let shown = file.map_or("flink-conf.yaml".into(), |f| f.display().to_string());
        let mut live = std::collections::BTreeSet::new();
        let mut restart = std::collections::BTreeSet::new();
        for (name, m) in self.jobs.iter_mut() {
            let spec = spec_for(&self.opts, m.pipeline.clone(), None);
            let loaded = match launch::load_config(&spec) {
                Ok(l) => l,
                Err(e) => {
                    report.config_error = Some(format!(
                        "{shown} is invalid; the running jobs keep their configuration: {e}"
                    ));
                    return;
                }
            };
            let d = super::conf::diff(&m.entries, &loaded.entries);
            if !d.live.is_empty() {
                super::conf::apply_live(&m.job, &loaded.config);
                tracing::info!(file = %name, keys = ?d.live, "configuration applied live");
            }
            if !d.restart.is_empty() {
                tracing::warn!(
                    file = %name,
                    keys = ?d.restart,
                    "{shown} changed keys that apply only when the job restarts: {}; edit the \
                     pipeline file or restart floe to apply them",
                    d.restart.join(", ")
                );
            }
            if !d.live.is_empty() {
                // The views show what the job runs with: its configuration with the live
                // keys replaced, not the keys that wait for a restart.
                let mut shown = (*m.config).clone();
                config::live::LiveSettings::from_config(&loaded.config).apply_to(&mut shown);
                self.registry.set_config(
                    &m.job.job_id,
                    Arc::new(shown),
                    Arc::new(loaded.entries.clone()),
                );
            }
            live.extend(d.live);
            restart.extend(d.restart);
            m.entries = Arc::new(loaded.entries);
            m.config = Arc::new(loaded.config);
        }
        self.conf_hash = hash;
        report.config_live = live.into_iter().collect();
        report.config_restart = restart.into_iter().collect();
    }

    /// A new file: validate and start, resuming from the pipeline's newest savepoint or
    /// checkpoint.
    fn add(&mut self, name: &str, file: &ScannedFile) -> Outcome {
        let pipeline = match crate::pipeline::parse(&file.text, &file.path) {
            Ok(p) => p,
            Err(e) => {
                return Outcome::Failed {
                    error: e.to_string(),
                }
            }
        };
        let spec = spec_for(&self.opts, pipeline.clone(), None);
        let loaded = match launch::load_config(&spec) {
            Ok(l) => l,
            Err(e) => {
                return Outcome::Failed {
                    error: e.to_string(),
                }
            }
        };
        let resumed = resume::resume_point(&loaded.config, &pipeline.name);
        let spec = spec_for(
            &self.opts,
            pipeline.clone(),
            resumed.as_ref().map(|p| p.display().to_string()),
        );
        match self.launch(name, &file.text, spec, None) {
            Ok(job_id) => {
                if let Some(r) = &resumed {
                    tracing::info!(file = %name, "resuming from {}", r.display());
                }
                Outcome::Started {
                    job_id,
                    resumed: resumed.map(|p| p.display().to_string()),
                }
            }
            Err(e) => Outcome::Failed {
                error: match &resumed {
                    Some(r) => format!(
                        "cannot resume {name} from its newest state {}: {e}; to start it \
                         anew, set `allow-non-restored-state: true` in it if operators were \
                         removed, or move that state away",
                        r.display()
                    ),
                    None => e.to_string(),
                },
            },
        }
    }

    /// Prepares and starts a job for file `name`, and records it.
    fn launch(
        &mut self,
        name: &str,
        text: &str,
        spec: LaunchSpec,
        reload_error: Option<String>,
    ) -> Result<JobId, LaunchError> {
        let pipeline = spec.pipeline.clone();
        let job = launch::prepare(spec)?;
        if let Err(e) = job.check_restore_files() {
            return Err(LaunchError::Restore(e));
        }
        for w in &job.warnings {
            tracing::warn!(file = %name, "{w}");
        }
        let (entries, config) = (job.entries.clone(), job.config.clone());
        let job_id = job.job_id.clone();
        self.registry.annotate(&job_id, |n| {
            n.file = Some(name.to_string());
            n.reload_error = reload_error;
        });
        let started = launch::start(job, &self.registry);
        tracing::info!(file = %name, job_id = %job_id, "job started");
        self.jobs.insert(
            name.to_string(),
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

    /// A removed file: its job stops with a savepoint.
    async fn remove(&mut self, name: &str) -> Outcome {
        let Some(mut m) = self.jobs.remove(name) else {
            // It never ran (it was invalid): nothing to stop.
            return Outcome::Stopped { savepoint: None };
        };
        let root = resume::savepoint_root(&m.config);
        match stop_with_savepoint(&mut m.job, root.as_deref(), self.opts.stop_timeout).await {
            Ok(sp) => Outcome::Stopped {
                savepoint: sp.map(|p| p.display().to_string()),
            },
            Err(e) => Outcome::Failed {
                error: format!("the job of removed {name} did not stop with a savepoint: {e}"),
            },
        }
    }

    /// An edited file: validate, stop the old version with a savepoint, start the new one
    /// from it, or bring the old one back.
    async fn change(&mut self, name: &str, file: &ScannedFile) -> Outcome {
        if !self.jobs.contains_key(name) {
            // The version before never ran (invalid, or it failed to start): start this one.
            return self.add(name, file);
        }
        let old_id = self.jobs[name].job.job_id.clone();
        if self.jobs[name].hash == file.hash {
            // An edit undone: the job runs this very text.
            self.registry.annotate(&old_id, |n| n.reload_error = None);
            return Outcome::Kept { job_id: old_id };
        }
        if let Some((_, error)) = self.jobs[name]
            .refused
            .as_ref()
            .filter(|(h, _)| *h == file.hash)
        {
            return Outcome::Rejected {
                error: error.clone(),
            };
        }
        let pipeline = match validate(&self.opts, &file.text, &file.path) {
            Ok(p) => p,
            Err(error) => {
                let shown =
                    format!("{name}: the edit is not applied, the version before runs on: {error}");
                self.registry
                    .annotate(&old_id, |n| n.reload_error = Some(shown.clone()));
                if let Some(m) = self.jobs.get_mut(name) {
                    m.refused = Some((file.hash, shown.clone()));
                }
                return Outcome::Rejected { error: shown };
            }
        };
        let Some(mut old) = self.jobs.remove(name) else {
            return Outcome::Failed {
                error: "bug: the job vanished during its reload".into(),
            };
        };
        let root = resume::savepoint_root(&old.config);
        let savepoint = if old.job.done.is_finished() {
            // The old version ended by itself (a bounded source, a failure): resume from
            // its newest state.
            resume::resume_point(&old.config, &old.pipeline.name)
        } else {
            match stop_with_savepoint(&mut old.job, root.as_deref(), self.opts.stop_timeout).await {
                Ok(sp) => sp,
                Err(e) => {
                    let error = format!(
                        "{name}: the edit is not applied, the version before could not stop \
                         with a savepoint: {e}"
                    );
                    if old.job.done.is_finished() {
                        return Outcome::Failed { error };
                    }
                    self.registry
                        .annotate(&old_id, |n| n.reload_error = Some(error.clone()));
                    self.jobs.insert(name.to_string(), old);
                    return Outcome::Rejected { error };
                }
            }
        };
        let from = savepoint.as_ref().map(|p| p.display().to_string());
        let spec = spec_for(&self.opts, pipeline, from.clone());
        match self.launch(name, &file.text, spec, None) {
            Ok(job_id) => Outcome::Applied {
                job_id,
                savepoint: from,
            },
            Err(e) => {
                let error = format!(
                    "{name}: the new version cannot start from {}: {e}; the version before runs \
                     again from there",
                    from.as_deref().unwrap_or("scratch")
                );
                let spec = spec_for(&self.opts, old.pipeline.clone(), from);
                let text = old.text.clone();
                match self.launch(name, &text, spec, Some(error.clone())) {
                    Ok(job_id) => {
                        if let Some(m) = self.jobs.get_mut(name) {
                            m.refused = Some((file.hash, error.clone()));
                        }
                        Outcome::RolledBack { job_id, error }
                    }
                    Err(e2) => Outcome::Failed {
                        error: format!(
                            "{error}; but the version before did not start either: {e2}"
                        ),
                    },
                }
            }
        }
    }

    /// `POST /jobs`: a pipeline to run in the service, not followed as a file.
    fn submit(&mut self, r: SubmitRequest) -> Result<String, SubmitError> {
        let path = PathBuf::from(r.pipeline_path.unwrap_or_else(|| "submitted.yaml".into()));
        let pipeline = crate::pipeline::parse(&r.pipeline, &path)
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        // The service's own -D first: the submission's are more specific.
        let mut dynamic = self.opts.dynamic.clone();
        dynamic.extend(r.dynamic);
        if let Some(p) = r.parallelism {
            dynamic.push(format!("parallelism.default={p}"));
        }
        if let Some(m) = r.claim_mode {
            dynamic.push(format!("execution.state-recovery.claim-mode={m}"));
        }
        let spec = LaunchSpec {
            pipeline,
            conf_dir: self.opts.conf_dir.clone(),
            dynamic,
            restore: r.savepoint_path,
            allow_non_restored: r.allow_non_restored_state,
            dry_run: false,
        };
        self.check_submission(&spec)?;
        let job = launch::prepare(spec).map_err(|e| SubmitError::Invalid(e.to_string()))?;
        job.check_restore_files()
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let config = job.config.clone();
        let started = launch::start(job, &self.registry);
        let id = started.job_id.0.clone();
        tracing::info!(job_id = %id, job = %started.name, "submitted job started");
        self.submitted.push((started, config));
        Ok(id)
    }

    /// Refuses a submission that would read or write outside the directories a submitted
    /// job may use (see `submission`), before anything is created for it.
    fn check_submission(&self, spec: &LaunchSpec) -> Result<(), SubmitError> {
        let base = config::load(&LoadOptions {
            conf_dir: self.opts.conf_dir.clone(),
            ..LoadOptions::default()
        })
        .map_err(|e| SubmitError::Unavailable(format!("flink-conf.yaml does not load: {e}")))?;
        let job = launch::load_config(spec).map_err(|e| SubmitError::Invalid(e.to_string()))?;
        super::submission::SubmitPolicy::from_config(&base.config)
            .check(spec, &job.config)
            .map_err(SubmitError::Refused)
    }

    /// Stops every job with a final savepoint, all at once, each within the stop timeout.
    async fn shutdown(self) -> ShutdownSummary {
        let timeout = self.opts.stop_timeout;
        let mut stops = Vec::new();
        for (name, m) in self.jobs {
            let root = resume::savepoint_root(&m.config);
            let mut job = m.job;
            stops.push(tokio::spawn(async move {
                let r = stop_with_savepoint(&mut job, root.as_deref(), timeout).await;
                (name, r)
            }));
        }
        for (mut job, config) in self.submitted {
            let root = resume::savepoint_root(&config);
            stops.push(tokio::spawn(async move {
                let name = format!("{} ({})", job.name, job.job_id);
                let r = stop_with_savepoint(&mut job, root.as_deref(), timeout).await;
                (name, r)
            }));
        }
        let mut summary = ShutdownSummary::default();
        for s in stops {
            match s.await {
                Ok((name, Ok(Some(sp)))) => {
                    tracing::info!(job = %name, savepoint = %sp.display(), "stopped with a final savepoint");
                    summary.savepoints.push((name, sp));
                }
                Ok((_, Ok(None))) => {}
                Ok((name, Err(e))) => {
                    tracing::error!(job = %name, "no final savepoint: {e}; it resumes from its latest retained checkpoint");
                    summary.unclean.push((name, e));
                }
                Err(e) => summary
                    .unclean
                    .push(("?".into(), format!("bug: a stop task panicked: {e}"))),
            }
        }
        summary
    }
}

/// The launch of pipeline `p` from `restore`, with the service's conf dir.
fn spec_for(opts: &ServeOptions, p: Pipeline, restore: Option<String>) -> LaunchSpec {
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
/// operator inputs).
fn validate(opts: &ServeOptions, text: &str, path: &Path) -> Result<Pipeline, String> {
    let pipeline = crate::pipeline::parse(text, path).map_err(|e| e.to_string())?;
    let spec = spec_for(opts, pipeline.clone(), None);
    // Its warnings are logged when the job starts.
    super::check::check(&spec).map_err(|e| e.to_string())?;
    Ok(pipeline)
}
