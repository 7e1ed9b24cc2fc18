//! `floe serve`'s supervisor: an actor that owns every job of the service and applies
//! changes one at a time from its queue ([`Request`]): rescans of the pipeline directory (the
//! watcher, SIGHUP, `POST /floe/reload`), submissions (`POST /jobs`), `floe start`, the end
//! of a job, and the shutdown.
//!
//! An edited pipeline is handled in this order, so that nothing is lost or doubled
//! (`files`):
//! 1. the new text is validated (YAML, configuration, plan); if invalid, the old version
//!    keeps running and the error is put on its job (`reload-error` in `/jobs`);
//! 2. the old job stops with a savepoint (`SavepointAction::Stop`: sources stop at the
//!    savepoint's barrier, sinks commit when it completes, the job ends);
//! 3. the new version starts from that savepoint, state mapped by operator id;
//! 4. if the mapping is refused, or the new version fails within its probation
//!    (`probation`), the old version starts again from the same savepoint, and the error is
//!    put on it. The new version committed nothing then: only a completed checkpoint commits.
//!
//! Between 2 and 3 no source reads: the savepoint holds every source position and every
//! key's state, and the new job continues from exactly there.
//!
//! Blocking work (reading the directory, the configuration and snapshots, listing and
//! deleting on S3) runs on blocking threads: the async workers carry every job's tasks.

use super::housekeeping::VersionInfo;
use super::launch::{JobEnded, StartedJob};
use super::memory;
use super::report::ReloadReport;
use super::resume;
use super::stop::stop_with_savepoint;
use crate::checkpoint::JobId;
use crate::config::{self, Entry, LoadOptions};
use crate::pipeline::Pipeline;
use crate::service::pipelines::PipelineBoard;
use crate::service::rest::service::{BoxFuture, ServiceControl, SubmitError, SubmitRequest};
use crate::service::sdnotify::Notifier;
use crate::service::signals::{Asked, Signals};
use crate::service::watcher;
use crate::service::JobRegistry;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Where the service keeps what it remembers across restarts (`memory`).
    pub state_dir: PathBuf,
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
    /// `floe start NAME`: a pipeline stopped or cancelled through the API runs again.
    Start {
        name: String,
        reply: oneshot::Sender<Result<Value, SubmitError>>,
    },
    /// A job ended (by itself, through the API, or stopped by the supervisor).
    Ended(JobEnded),
}

/// The sending side of the queue; cheap to clone.
#[derive(Clone)]
pub struct SupervisorHandle {
    tx: mpsc::UnboundedSender<Request>,
}

fn shutting_down() -> SubmitError {
    SubmitError::Unavailable("floe is shutting down".into())
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
            sent.map_err(|_| shutting_down())?;
            rx.await.map_err(|_| shutting_down())?
        })
    }

    fn start(&self, name: String) -> BoxFuture<Result<Value, SubmitError>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send(Request::Start { name, reply });
        Box::pin(async move {
            sent.map_err(|_| shutting_down())?;
            rx.await.map_err(|_| shutting_down())?
        })
    }
}

/// One job the supervisor runs for a pipeline file.
pub(super) struct Managed {
    /// The text the job runs (to bring this version back after a refused restore).
    pub text: String,
    /// Its content hash.
    pub hash: u64,
    /// The hash of the file's text last refused, why, and whether it had started and was
    /// rolled back: asked again (an explicit reload), it is reported again, the same way,
    /// without touching the job.
    pub refused: Option<(u64, String, bool)>,
    pub pipeline: Pipeline,
    pub job: StartedJob,
    pub entries: Arc<Vec<Entry>>,
    pub config: Arc<config::Config>,
}

/// A job submitted with `floe run -d`.
pub(super) struct SubmittedJob {
    pub job: StartedJob,
    pub config: Arc<config::Config>,
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
        crate::exit::EXIT_CONFIG
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
    pub(super) opts: ServeOptions,
    pub(super) registry: JobRegistry,
    pub(super) board: PipelineBoard,
    pub(super) notifier: Notifier,
    /// The last scan's content hashes, by file name.
    pub(super) seen: BTreeMap<String, u64>,
    /// The hash of the configuration file as last applied.
    pub(super) conf_hash: Option<u64>,
    /// Files with a job: running, or ended by itself or by a user.
    pub(super) jobs: BTreeMap<String, Managed>,
    pub(super) submitted: Vec<SubmittedJob>,
    /// Ended submitted jobs still listed, oldest first (capped).
    pub(super) ended_submitted: VecDeque<JobId>,
    pub(super) watcher: watcher::DirWatcher,
    pub(super) store: memory::Store,
    /// Every job started, for what its end means.
    pub(super) versions: HashMap<JobId, VersionInfo>,
    /// Where jobs report their end.
    pub(super) ended_tx: mpsc::UnboundedSender<Request>,
    /// SIGTERM or SIGINT came: start-up and probations are cut short.
    pub(super) stopping: Arc<AtomicBool>,
    /// The same, to wait on.
    pub(super) stop_rx: tokio::sync::watch::Receiver<bool>,
}

/// Runs `floe serve` until SIGINT/SIGTERM: the REST API, the jobs of every pipeline file and
/// the submitted jobs remembered, the watcher, SIGHUP, systemd notifications; then stops
/// every job with a final savepoint. Errors only at start (exit code 78): after that,
/// problems are reported per pipeline.
pub async fn run(opts: ServeOptions) -> Result<ShutdownSummary, StartError> {
    // First of all: a SIGTERM from here on stops cleanly, with savepoints.
    let signals = Signals::install();
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
    // s3:// paths under no pipeline's directories (REST savepoint targets) use the conf's.
    crate::checkpoint::storage::configure(&conf.config.s3);
    let registry = JobRegistry::new();
    let board = PipelineBoard::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = SupervisorHandle { tx: tx.clone() };
    let rest_options = crate::service::RestOptions::from_config(&conf.config);
    warn_if_submission_stays_off(&rest_options);
    let state = crate::service::ApiState::new(registry.clone(), &rest_options)
        .with_disposal(Arc::new(|path| {
            crate::checkpoint::savepoint::dispose(path)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }))
        .with_service(Arc::new(handle.clone()))
        .with_pipelines(board.clone());
    let app = crate::service::router(state).merge(crate::service::dashboard::routes());
    let server = crate::service::serve(app, &rest_options).await?;
    let _rates = registry.spawn_rate_sampler();

    let mut watched = vec![opts.pipelines.clone()];
    if let Some(dir) = conf.conf_file.as_ref().and_then(|f| f.parent()) {
        watched.push(dir.to_path_buf());
    }
    let (dir_watcher, mut changes) = watcher::watch(&watched).map_err(|e| StartError::Watch {
        dir: opts.pipelines.clone(),
        reason: e.to_string(),
    })?;
    let stopping = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    spawn_signal_task(signals, &stopping, stop_tx, &tx);
    let notifier = Notifier;
    let _watchdog = notifier.spawn_watchdog();
    let state_dir = opts.state_dir.clone();
    let store = tokio::task::spawn_blocking(move || memory::Store::open(&state_dir))
        .await
        .unwrap_or_else(|_| memory::Store::open(Path::new(".")));
    let mut sup = Supervisor {
        opts,
        registry,
        board,
        notifier,
        seen: BTreeMap::new(),
        conf_hash: conf_hash(conf.conf_file.as_deref()),
        jobs: BTreeMap::new(),
        submitted: Vec::new(),
        ended_submitted: VecDeque::new(),
        watcher: dir_watcher,
        store,
        versions: HashMap::new(),
        ended_tx: tx,
        stopping: stopping.clone(),
        stop_rx: stop_rx.clone(),
    };
    sup.start_up().await;

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut stop = stop_rx;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            Some(()) = changes.recv() => {
                sup.handle(Request::Rescan { explicit: false, reply: None }).await;
            }
            Some(req) = rx.recv() => sup.handle(req).await,
            _ = tick.tick() => sup.housekeeping(),
        }
        if sup.stopping.load(Ordering::SeqCst) {
            break;
        }
    }
    sup.notifier
        .stopping("stopping every job with a final savepoint");
    tracing::info!("stop requested: stopping every job with a final savepoint");
    // Jobs that ended just before (a user's cancel) are settled first, so that the next
    // start remembers them; other requests still queued are refused.
    drop(handle);
    sup.drain_ended(&mut rx).await;
    let summary = sup.shutdown().await;
    rx.close();
    server.shutdown().await;
    Ok(summary)
}

/// Turns signals into the stop flag (and its notice) and SIGHUP into reload requests.
fn spawn_signal_task(
    mut signals: Signals,
    stopping: &Arc<AtomicBool>,
    notice: tokio::sync::watch::Sender<bool>,
    tx: &mpsc::UnboundedSender<Request>,
) {
    let (stopping, tx) = (stopping.clone(), tx.clone());
    tokio::spawn(async move {
        loop {
            match signals.next().await {
                Asked::Stop => {
                    if !stopping.swap(true, Ordering::SeqCst) {
                        tracing::info!("SIGTERM/SIGINT (or closed output): floe serve stops");
                    }
                    notice.send_replace(true);
                }
                Asked::Reload => {
                    tracing::info!("SIGHUP: reloading");
                    let _ = tx.send(Request::Rescan {
                        explicit: true,
                        reply: None,
                    });
                }
            }
        }
    });
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

pub(super) fn conf_hash(file: Option<&Path>) -> Option<u64> {
    // read_text: a FIFO or device named flink-conf.yaml is no file to wait on.
    file.and_then(|f| crate::textfile::read_text(f, config::MAX_CONF_BYTES).ok())
        .map(|t| watcher::content_hash(t.as_bytes()))
}

impl Supervisor {
    /// The first scan (every valid pipeline starts; the others are shown as invalid), the
    /// submitted jobs remembered, then `READY=1` once the jobs run. A stop asked meanwhile
    /// cuts it short.
    async fn start_up(&mut self) {
        self.rescan(false).await;
        self.resume_submitted().await;
        self.board.set_started();
        self.wait_running().await;
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let status = self.status_line();
        tracing::info!("floe serve: {status}");
        self.notifier.ready(&status);
    }

    pub(super) async fn handle(&mut self, req: Request) {
        match req {
            Request::Rescan { explicit, reply } => {
                let report = self.rescan(explicit).await;
                if let Some(r) = reply {
                    let _ = r.send(report);
                }
            }
            Request::Submit { request, reply } => {
                let _ = reply.send(self.submit(request).await);
            }
            Request::Start { name, reply } => {
                let _ = reply.send(self.start_held(&name).await);
            }
            Request::Ended(ended) => self.on_job_ended(ended).await,
        }
    }

    /// `fut`, unless floe serve is asked to stop first (then `None`): a pipeline waiting on
    /// slow storage (a restore read, an S3 listing) must not hold up the shutdown.
    pub(super) async fn unless_stopping<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let mut rx = self.stop_rx.clone();
        if *rx.borrow() {
            return None;
        }
        tokio::select! {
            v = fut => Some(v),
            _ = rx.wait_for(|s| *s) => None,
        }
    }

    /// Handles the job ends already queued; drops (refuses) the other requests.
    async fn drain_ended(&mut self, rx: &mut mpsc::UnboundedReceiver<Request>) {
        while let Ok(req) = rx.try_recv() {
            if let Request::Ended(e) = req {
                self.on_job_ended(e).await;
            }
        }
    }

    pub(super) fn status_line(&self) -> String {
        let running = self
            .jobs
            .values()
            .filter(|m| !m.job.done.is_finished())
            .count();
        format!(
            "{running} pipeline job(s) and {} submitted job(s) running from {}",
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
                .map(|m| &m.job)
                .chain(self.submitted.iter().map(|s| &s.job))
                // Running and listed: the follower registers a job just after its first
                // attempt runs, and READY=1 promises what the API shows.
                .filter(|j| {
                    (j.handle.metrics().is_none() || self.registry.get(&j.job_id).is_none())
                        && !j.done.is_finished()
                })
                .count();
            if pending == 0 || Instant::now() > deadline || self.stopping.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops every job with a final savepoint, all at once, each within the stop timeout;
    /// then the savepoint retention of each pipeline.
    async fn shutdown(mut self) -> ShutdownSummary {
        let timeout = self.opts.stop_timeout;
        let mut stops = Vec::new();
        for (file, m) in std::mem::take(&mut self.jobs) {
            let root = resume::savepoint_root(&m.config);
            let (name, config) = (m.pipeline.name.clone(), m.config.clone());
            let mut job = m.job;
            stops.push(tokio::spawn(async move {
                let r = stop_with_savepoint(&mut job, root.as_deref(), timeout).await;
                (file, name, config, r)
            }));
        }
        for s in std::mem::take(&mut self.submitted) {
            let root = resume::savepoint_root(&s.config);
            let (mut job, config) = (s.job, s.config);
            stops.push(tokio::spawn(async move {
                let shown = format!("{} ({})", job.name, job.job_id);
                let name = job.name.clone();
                let r = stop_with_savepoint(&mut job, root.as_deref(), timeout).await;
                (shown, name, config, r)
            }));
        }
        let mut summary = ShutdownSummary::default();
        for s in stops {
            match s.await {
                Ok((shown, name, config, Ok(Some(sp)))) => {
                    tracing::info!(job = %shown, savepoint = %sp.display(), "stopped with a final savepoint");
                    self.keep_savepoint(&name, &config, &sp).await;
                    summary.savepoints.push((shown, sp));
                }
                Ok((_, _, _, Ok(None))) => {}
                Ok((shown, _, _, Err(e))) => {
                    tracing::error!(job = %shown, "no final savepoint: {e}; it resumes from its latest retained checkpoint");
                    summary.unclean.push((shown, e));
                }
                Err(e) => summary
                    .unclean
                    .push(("?".into(), format!("bug: a stop task panicked: {e}"))),
            }
        }
        summary
    }
}
