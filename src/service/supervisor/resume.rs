//! Where `floe serve` keeps the savepoints it takes (on a reload, a removed file, shutdown)
//! and where a pipeline resumes from when its job starts: the newest of its final savepoints
//! and its retained checkpoints, found by the pipeline's name as `-s latest` finds
//! checkpoints.
//!
//! Savepoints go to `state.savepoints.dir` when it is set, else to `floe-savepoints/` under
//! the checkpoint directory (`state.checkpoints.dir`), where the checkpoint scan never looks
//! (it only enters job-id directories). Each savepoint's `_metadata` names its pipeline, so a
//! directory shared by several pipelines is fine.

use crate::checkpoint::restore::{pick_latest, Candidate};
use crate::checkpoint::storage;
use crate::config::Config;
use std::path::PathBuf;

/// The directory under the checkpoint directory that holds `floe serve`'s savepoints when
/// `state.savepoints.dir` is not set.
pub const MANAGED_SAVEPOINTS: &str = "floe-savepoints";

/// Where this job's service savepoints go; `None` when neither a savepoint nor a checkpoint
/// directory is configured (the job then stops without keeping state).
pub fn savepoint_root(cfg: &Config) -> Option<PathBuf> {
    savepoint_location(cfg).map(|at| at.to_path_buf())
}

fn savepoint_location(cfg: &Config) -> Option<storage::Location> {
    if let Some(d) = &cfg.state.savepoints_dir {
        return storage::parse_dir(d).ok();
    }
    let ck = storage::parse_dir(cfg.state.checkpoints_dir.as_deref()?).ok()?;
    Some(ck.join(MANAGED_SAVEPOINTS))
}

/// The snapshot pipeline `name` resumes from: the newest (by completion time, then id) of
/// its retained checkpoints and of the savepoints in [`savepoint_root`]. Unreadable
/// snapshots are skipped with a warning.
pub fn resume_point(cfg: &Config, name: &str) -> Option<PathBuf> {
    // The pipeline's storage settings (`s3.*`), before anything on S3 is listed.
    if let Err(e) = super::launch::configure_storage(cfg, name) {
        tracing::warn!(pipeline = name, "resume: {e}");
        return None;
    }
    let mut candidates = Vec::new();
    if let Some(ck) = cfg
        .state
        .checkpoints_dir
        .as_deref()
        .and_then(|d| storage::parse_dir(d).ok())
    {
        for (dir, loaded) in storage::scan_checkpoints(&ck).unwrap_or_default() {
            push(&mut candidates, dir, loaded);
        }
    }
    if let Some(root) = savepoint_location(cfg) {
        let dirs = storage::list_savepoints(&root).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "resume: the savepoint directory cannot be listed");
            Vec::new()
        });
        for dir in dirs {
            let loaded = storage::load_at(&dir);
            push(&mut candidates, dir, loaded);
        }
    }
    pick_latest(&candidates, name).map(|c| c.dir.clone())
}

fn push(
    out: &mut Vec<Candidate>,
    dir: storage::Location,
    loaded: Result<storage::LoadedSnapshot, crate::checkpoint::CheckpointError>,
) {
    match loaded {
        Ok(l) => out.push(Candidate {
            dir: dir.to_path_buf(),
            job_name: l.metadata.job_name,
            checkpoint_id: l.metadata.checkpoint_id,
            completion_timestamp_ms: l.metadata.completion_timestamp_ms,
        }),
        Err(e) => tracing::warn!(
            dir = %dir,
            error = %e,
            "resume: skipping a snapshot that cannot be read"
        ),
    }
}
