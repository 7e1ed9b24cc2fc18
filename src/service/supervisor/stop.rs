//! Stopping one job with a savepoint, bounded in time: what a reload, a removed file and
//! the shutdown of `floe serve` do to a job. A job between attempts (starting, restarting)
//! cannot take a savepoint yet: the request is repeated until the deadline.

use super::launch::StartedJob;
use crate::runtime::SavepointAction;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Stops `job` with a savepoint into `root` and waits for it to end. `Ok(None)`: no root
/// (the job stops keeping its checkpoints), or it had already ended. Tries again while the
/// job is between attempts (starting or restarting), up to `timeout`.
pub async fn stop_with_savepoint(
    job: &mut StartedJob,
    root: Option<&Path>,
    timeout: Duration,
) -> Result<Option<PathBuf>, String> {
    let deadline = Instant::now() + timeout;
    if job.done.is_finished() {
        return Ok(None);
    }
    let Some(root) = root else {
        job.handle.stop();
        wait_done(job, deadline).await?;
        return Ok(None);
    };
    // The configured directory is trusted, symlinks included (systemd's StateDirectory with
    // DynamicUser is one): resolve them here, since savepoints are written through a walk
    // that follows none.
    let root = if crate::checkpoint::storage::is_object_path(root) {
        root.to_path_buf()
    } else {
        crate::service::rest::paths::resolve(root)
    };
    let completed = loop {
        let rx = job
            .handle
            .trigger_savepoint(root.clone(), SavepointAction::Stop { drain: false });
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx).await {
            Err(_) => return Err(format!("no savepoint within {} s", timeout.as_secs())),
            Ok(Err(_)) => return Err("the job ended before the savepoint completed".into()),
            Ok(Ok(Ok(c))) => break c,
            Ok(Ok(Err(e))) => {
                if job.done.is_finished() {
                    // It ended meanwhile (cancelled or failed by then): nothing to stop.
                    return Ok(None);
                }
                if Instant::now() > deadline {
                    return Err(e);
                }
                // Not running yet (its first attempt is being built) or restarting.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_done(job, deadline).await?;
    Ok(Some(completed.path.to_path_buf()))
}

async fn wait_done(job: &mut StartedJob, deadline: Instant) -> Result<(), String> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, &mut job.done).await {
        Err(_) => Err("the job did not end in time after its stop".into()),
        Ok(Err(e)) => Err(format!("bug: the job's task ended abnormally: {e}")),
        Ok(Ok(Err(e))) => Err(format!("the job failed while stopping: {e}")),
        Ok(Ok(Ok(_))) => Ok(()),
    }
}
