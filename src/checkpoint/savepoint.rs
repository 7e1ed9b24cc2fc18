//! Savepoints on disk: their directory name and their disposal (`floe savepoint -d`).
//!
//! A savepoint directory is `savepoint-<first 6 of the job id>-<12 lowercase hex>` and holds its
//! `_metadata` and its own state files only (relative names), so it can be moved. Disposal
//! refuses anything that is not a floe savepoint, then deletes `_metadata` first (from then on
//! it is no savepoint), then the state files `_metadata` listed, then the directory if nothing
//! else is left in it: files floe did not write are never deleted.

use crate::checkpoint::metadata::SnapshotKind;
use crate::checkpoint::storage::{self, path, PathKind};
use crate::checkpoint::{CheckpointError, JobId};
use std::path::{Path, PathBuf};

/// `savepoint-<first 6 of the job id>-<12 random lowercase hex>`, as Flink names them.
pub fn directory_name(job_id: &JobId) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let prefix: String = job_id.0.chars().take(6).collect();
    format!("savepoint-{prefix}-{}", &random[..12])
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
    let dir_removed = std::fs::remove_dir(&dir).is_ok();
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
