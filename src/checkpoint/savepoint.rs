//! Savepoints in checkpoint storage (a local directory or an `s3://` prefix): their directory
//! name and their disposal (`floe savepoint -d`).
//!
//! A savepoint directory is `savepoint-<first 6 of the job id>-<12 lowercase hex>` and holds its
//! `_metadata` and its own state files only (relative names), so it can be moved. Disposal
//! refuses anything that is not a floe savepoint, then deletes `_metadata` first (from then on
//! it is no savepoint), then the state files `_metadata` listed, then the directory if nothing
//! else is left in it: files floe did not write are never deleted.

use crate::checkpoint::metadata::{
    self, BlobLocation, CheckpointMetadata, KeyedStateHandle, SnapshotKind, StateBlob,
    SubtaskStateMeta,
};
use crate::checkpoint::storage::{self, path, placement, PathKind, Placement};
use crate::checkpoint::{
    CheckpointError, CheckpointId, CompletedCheckpoint, JobId, OperatorSnapshot, SubtaskSnapshot,
};
use std::path::{Path, PathBuf};

/// `savepoint-<first 6 of the job id>-<12 random lowercase hex>`, as Flink names them.
pub fn directory_name(job_id: &JobId) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let prefix: String = job_id.0.chars().take(6).collect();
    format!("savepoint-{prefix}-{}", &random[..12])
}

/// Creates the directory of a new savepoint of `job_id` under `target` (and `target` itself if
/// missing) and returns it. Called before the savepoint's barrier is injected, so a target
/// that cannot be written fails the request before the job does any work for it.
pub fn create_savepoint_dir(target: &Path, job_id: &JobId) -> Result<PathBuf, CheckpointError> {
    let target = storage::normalize(target)?;
    if let storage::Target::Object(obj) = storage::target(&target)? {
        // No directories to create: one listing checks that the bucket is there and the
        // credentials are good before the job does any work for the savepoint.
        obj.has_children().map_err(|e| {
            CheckpointError::Format(format!(
                "cannot reach the savepoint target '{}': {e}",
                target.display()
            ))
        })?;
        return Ok(target.join(directory_name(job_id)));
    }
    std::fs::create_dir_all(&target).map_err(|source| CheckpointError::Io {
        context: format!(
            "cannot create the savepoint target directory '{}' (give a writable directory, or \
             set state.savepoints.dir)",
            target.display()
        ),
        source,
    })?;
    let dir = target.join(directory_name(job_id));
    // `create_dir`, not `_all`: the random name must be new, never an existing directory.
    std::fs::create_dir(&dir).map_err(|source| CheckpointError::Io {
        context: format!(
            "cannot create the savepoint directory '{}' (check that '{}' is writable)",
            dir.display(),
            target.display()
        ),
        source,
    })?;
    storage::sync_dir(&target)?;
    Ok(dir)
}

/// How a savepoint places the blobs it writes: what `state.backend.fs.memory-threshold` and the
/// `jobmanager` storage say about inlining. Incremental never applies to a savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavepointWriter {
    pub inline_threshold: u64,
    pub always_inline: bool,
}

impl SavepointWriter {
    /// Writes one subtask's snapshot into savepoint directory `dir`: keyed state always as one
    /// full blob (canonical: the same whatever `state.backend.incremental` says), inline or as
    /// an exclusive file in `dir` (so the directory is self-contained and can be moved).
    /// Durable when this returns.
    pub fn write_subtask(
        &self,
        dir: &Path,
        snapshot: SubtaskSnapshot,
    ) -> Result<SubtaskStateMeta, CheckpointError> {
        let subtask = snapshot.subtask;
        let mut meta = SubtaskStateMeta {
            subtask,
            key_groups: None,
            keyed: None,
            source: None,
            sink: None,
        };
        match snapshot.state {
            OperatorSnapshot::Source(pos) => meta.source = Some(pos),
            OperatorSnapshot::Sink(sink) => {
                storage::fsync_paths(&sink.fsync)?;
                meta.sink = Some(sink.state);
            }
            OperatorSnapshot::Keyed(ks) => {
                let blob = crate::state::snapshot::encode_full(&ks);
                let size = blob.bytes.len() as u64;
                let location =
                    match placement(size, self.inline_threshold, self.always_inline, false) {
                        Placement::Inline => BlobLocation::Inline(blob.bytes),
                        Placement::Exclusive | Placement::Shared => {
                            BlobLocation::Exclusive(storage::write_state_file(dir, blob.bytes)?)
                        }
                    };
                meta.key_groups = Some((ks.range.start, ks.range.end));
                meta.keyed = Some(KeyedStateHandle::Full(StateBlob {
                    location,
                    size,
                    groups: blob.groups,
                }));
            }
        }
        Ok(meta)
    }
}

/// Completes a savepoint: writes its `_metadata` (kind `Savepoint`) atomically into `dir`.
/// From then on it exists; it belongs to the user, never to a job's retention.
pub fn complete(
    dir: &Path,
    mut metadata: CheckpointMetadata,
) -> Result<CompletedCheckpoint, CheckpointError> {
    metadata.kind = SnapshotKind::Savepoint;
    let bytes = metadata::encode(&metadata);
    storage::write_metadata(dir, &bytes)?;
    // Each state file's size is in `_metadata` (its writer recorded it): no request per file.
    let files: u64 = metadata
        .blobs()
        .filter(|(_, _, b)| matches!(b.location, BlobLocation::Exclusive(_)))
        .map(|(_, _, b)| b.size)
        .sum();
    Ok(CompletedCheckpoint {
        checkpoint_id: CheckpointId(metadata.checkpoint_id),
        path: dir.to_path_buf(),
        size: bytes.len() as u64 + files,
    })
}

/// Removes what a failed savepoint wrote into `dir` (the directory is floe's own: it was
/// created fresh for this savepoint).
pub fn abort(dir: &Path) {
    if let Err(e) = storage::delete_snapshot_dir(dir) {
        tracing::warn!(error = %e, "cleanup of a failed savepoint failed; the files stay behind");
    }
}

/// What a disposal removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disposed {
    pub dir: PathBuf,
    pub files: usize,
    /// Whether the directory itself went (it stays when it holds files floe did not write).
    pub dir_removed: bool,
}

/// Disposes of the savepoint at `given` (its directory or its `_metadata`).
///
/// Refuses, leaving everything in place: a path that is no floe checkpoint or savepoint (its
/// `_metadata` does not parse), and a retained checkpoint (`chk-<n>`: those belong to their
/// job's retention, not to `savepoint -d`).
pub fn dispose(given: &Path) -> Result<Disposed, CheckpointError> {
    let loaded = storage::load(given).map_err(|e| {
        CheckpointError::Format(format!(
            "refusing to dispose of '{}': it is not a floe savepoint ({e})",
            given.display()
        ))
    })?;
    if loaded.metadata.kind != SnapshotKind::Savepoint {
        return Err(CheckpointError::Format(format!(
            "refusing to dispose of '{}': it is checkpoint {} of job {}, not a savepoint; \
             checkpoints are deleted by their job's retention (state.checkpoints.num-retained)",
            loaded.dir.display(),
            loaded.metadata.checkpoint_id,
            loaded.metadata.job_id
        )));
    }
    let dir = loaded.dir.clone();
    let files: Vec<PathBuf> = loaded
        .metadata
        .exclusive_files()
        .map(|name| {
            path(PathKind::ExclusiveFile {
                snapshot_dir: &dir,
                name,
            })
        })
        .collect();
    // `_metadata` first: once it is gone the directory is no savepoint, whatever else fails.
    storage::delete_file(&path(PathKind::Metadata { snapshot_dir: &dir }))?;
    for file in &files {
        storage::delete_file(file)?;
    }
    let dir_removed = storage::remove_dir_if_empty(&dir);
    Ok(Disposed {
        dir,
        files: files.len() + 1,
        dir_removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_flink() {
        let id = JobId("8f797489a0bbec8f9bbc61e6b7e3f916".into());
        let name = directory_name(&id);
        assert!(name.starts_with("savepoint-8f7974-"), "{name}");
        let suffix = name.trim_start_matches("savepoint-8f7974-");
        assert_eq!(suffix.len(), 12);
        assert!(suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(directory_name(&id), name, "random part differs");
    }

    #[test]
    fn refuses_a_directory_that_is_no_savepoint() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let err = dispose(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a floe savepoint"), "{err}");
        assert!(dir.path().join("keep.txt").exists(), "nothing deleted");
    }
}
