//! Following a running job for the REST API: registers it in the [`JobRegistry`] once its
//! first attempt runs, keeps the registry's view current (metrics of the running attempt,
//! restarts, restore point) and answers the API's commands (savepoint, stop, cancel) on the
//! job's [`FailoverHandle`]. It never starts or restarts a job.

use crate::checkpoint::restore;
use crate::checkpoint::JobId;
use crate::config::{Config, Entry};
use crate::pipeline::plan::Plan;
use crate::runtime::failover::FailoverHandle;
use crate::runtime::SavepointAction;
use crate::service::registry::RestoreInfo;
use crate::service::{JobCommand, JobRegistration, JobRegistry, JobState};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the registry shows of the job besides its live metrics.
pub struct FollowContext {
    pub plan: Plan,
    pub config: Arc<Config>,
    pub entries: Arc<Vec<Entry>>,
    pub restore: Option<RestoreInfo>,
}

/// Registers the job once its first attempt runs, keeps the registry's view of it current
/// (metrics of the running attempt, restarts, restore point) and answers the API's commands.
pub async fn follow_job(
    handle: FailoverHandle,
    registry: JobRegistry,
    job_id: JobId,
    name: String,
    ctx: FollowContext,
    stopped: Arc<AtomicBool>,
) {
    let mut current: Option<Arc<crate::runtime::JobMetrics>> = None;
    let mut restarts = 0;
    let mut commands = None;
    loop {
        if let Some(metrics) = handle.metrics() {
            match &current {
                None => {
                    let mut reg = JobRegistration::new(
                        job_id.clone(),
                        name.clone(),
                        &ctx.plan,
                        metrics.clone(),
                    );
                    let h = handle.clone();
                    reg.stats = Some(Arc::new(move || h.checkpoint_stats()));
                    reg.config = ctx.config.clone();
                    reg.entries = ctx.entries.clone();
                    reg.restore = ctx.restore.clone();
                    commands = Some(registry.register(reg));
                }
                Some(old) if !Arc::ptr_eq(old, &metrics) => {
                    let h = handle.clone();
                    registry.replace_sources(
                        &job_id,
                        metrics.clone(),
                        Some(Arc::new(move || h.checkpoint_stats())),
                    );
                }
                Some(_) => {}
            }
            current = Some(metrics);
        }
        let status = handle.status();
        if status.restarts > restarts {
            restarts = status.restarts;
            registry.record_restart(&job_id, status.last_failure.clone());
            if let Some(r) = &status.last_restore {
                registry.record_restore(
                    &job_id,
                    RestoreInfo {
                        id: r.checkpoint_id,
                        restore_timestamp: r.timestamp_ms,
                        is_savepoint: false,
                        external_path: restore::pointer(&r.path),
                    },
                );
            }
        }
        if current.is_some() && !status.restarting {
            registry.set_state(&job_id, JobState::Running);
        }
        // Until the first attempt runs, look often: the job should be listed as soon as it is.
        let period = if current.is_none() { 5 } else { 100 };
        let wait = tokio::time::sleep(std::time::Duration::from_millis(period));
        match commands.as_mut() {
            Some(rx) => {
                tokio::select! {
                    Some(cmd) = rx.recv() => answer(&handle, cmd, &stopped),
                    _ = wait => {}
                }
            }
            None => wait.await,
        }
    }
}

/// Answers one API command on the running job. Savepoints complete on their own time: the
/// reply is forwarded when the job's answer comes.
pub fn answer(handle: &FailoverHandle, command: JobCommand, stopped: &Arc<AtomicBool>) {
    let (target, action, reply) = match command {
        JobCommand::Cancel { reply } => {
            handle.cancel();
            let _ = reply.send(Ok(()));
            return;
        }
        JobCommand::TriggerSavepoint {
            target,
            cancel_job,
            reply,
        } => {
            let action = if cancel_job {
                SavepointAction::Cancel
            } else {
                SavepointAction::Keep
            };
            (target, action, reply)
        }
        JobCommand::Stop {
            target,
            drain,
            reply,
        } => {
            stopped.store(true, Ordering::Relaxed);
            (target, SavepointAction::Stop { drain }, reply)
        }
    };
    let Some(target) = target else {
        let _ = reply.send(Err(
            "Config key [execution.checkpointing.savepoint-dir] is not set. Property \
             [target-directory] must be provided."
                .to_string(),
        ));
        return;
    };
    let pending = handle.trigger_savepoint(PathBuf::from(target), action);
    tokio::spawn(async move {
        let result = pending
            .await
            .unwrap_or_else(|_| Err("the job ended before the savepoint completed".to_string()));
        let _ = reply.send(result);
    });
}
