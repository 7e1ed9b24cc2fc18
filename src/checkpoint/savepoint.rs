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
use crate::checkpoint::storage::{self, nofollow, placement, Location, Placement};
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
///
/// Locally `target` is walked without following symlinks ([`nofollow::Dir`]): a target that
/// was checked against the allowed roots and replaced by a symlink afterwards fails here. So
/// does every later write into the savepoint. Callers pass resolved paths (the REST API
/// resolves and checks them; `floe serve` resolves its configured directory).
pub fn create_savepoint_dir(target: &Path, job_id: &JobId) -> Result<Location, CheckpointError> {
    let at = Location::parse(target)?;
    let Some(target) = at.as_local() else {
        // No directories to create: one listing checks that the bucket is there and the
        // credentials are good before the job does any work for the savepoint.
        at.storage().has_children().map_err(|e| {
            CheckpointError::Other(format!("cannot reach the savepoint target '{at}': {e}"))
        })?;
        return Ok(at.join(&directory_name(job_id)));
    };
    test_hook::pause("target", target);
    let parent = nofollow::Dir::open_or_create(target).map_err(|source| CheckpointError::Io {
        context: format!(
            "cannot create the savepoint target directory '{}' (give a writable directory, or \
             set state.savepoints.dir)",
            target.display()
        ),
        source,
    })?;
    let name = directory_name(job_id);
    let dir = target.join(&name);
    // A new directory, never an existing one: the random name must be fresh.
    parent
        .create_dir(&name)
        .and_then(|_| parent.sync())
        .map_err(|source| CheckpointError::Io {
            context: format!(
                "cannot create the savepoint directory '{}' (check that '{}' is writable)",
                dir.display(),
                target.display()
            ),
            source,
        })?;
    test_hook::pause("created", &dir);
    Ok(Location::Local(dir))
}

/// Opens a local savepoint directory without following symlinks.
fn open_local(dir: &Path) -> Result<nofollow::Dir, CheckpointError> {
    nofollow::Dir::open(dir).map_err(|source| CheckpointError::Io {
        context: format!("cannot open the savepoint directory '{}'", dir.display()),
        source,
    })
}

/// Writes a state file into savepoint directory `dir` under a fresh uuid name (durable when
/// this returns); locally through the directory opened without following symlinks.
fn write_state_file(at: &Location, bytes: Vec<u8>) -> Result<String, CheckpointError> {
    let Some(dir) = at.as_local() else {
        return storage::write_state_file(at, bytes);
    };
    let d = open_local(dir)?;
    let name = storage::state_file_name();
    d.write_new(&name, &bytes)
        .and_then(|()| d.sync())
        .map_err(|source| CheckpointError::Io {
            context: format!("cannot write state file '{}'", dir.join(&name).display()),
            source,
        })?;
    Ok(name)
}

/// Writes `_metadata` into savepoint directory `dir`, once: locally a temp file, fsynced,
/// hard-linked into place (which fails when `_metadata` exists), the directory fsynced; all
/// through the directory opened without following symlinks.
fn write_metadata(at: &Location, bytes: &[u8]) -> Result<(), CheckpointError> {
    let Some(dir) = at.as_local() else {
        return storage::write_metadata(at, bytes).map(|_| ());
    };
    let d = open_local(dir)?;
    let meta = dir.join(storage::METADATA_FILE);
    let ctx = || format!("cannot write '{}'", meta.display());
    let temp = storage::METADATA_TEMP_FILE;
    d.remove_file(temp)
        .and_then(|()| d.write_new(temp, bytes))
        .map_err(|source| CheckpointError::Io {
            context: ctx(),
            source,
        })?;
    let linked = d.hard_link(temp, storage::METADATA_FILE);
    let _ = d.remove_file(temp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if d.read(storage::METADATA_FILE).ok().flatten().as_deref() != Some(bytes) {
                return Err(CheckpointError::AlreadyExists(format!(
                    "'{}' already exists: a savepoint's _metadata is written once and never \
                     replaced",
                    meta.display()
                )));
            }
        }
        Err(source) => {
            return Err(CheckpointError::Io {
                context: ctx(),
                source,
            })
        }
    }
    d.sync().map_err(|source| CheckpointError::Io {
        context: ctx(),
        source,
    })
}

/// A test hook, off unless `FLOE_TEST_SAVEPOINT_PAUSE` is set (tests/security_symlink.rs):
/// at `stage` (`target`: before the target directory is opened; `created`: after the
/// savepoint directory was created, before anything is written into it) floe writes `path` to
/// `<value>.<stage>` and waits until `<value>.<stage>.go` exists, so that a test can replace a
/// directory by a symlink at exactly that moment. Runs on a blocking thread.
mod test_hook {
    use std::path::Path;
    use std::time::{Duration, Instant};

    pub const VAR: &str = "FLOE_TEST_SAVEPOINT_PAUSE";

    pub fn pause(stage: &str, path: &Path) {
        let Some(base) = std::env::var_os(VAR) else {
            return;
        };
        let mut announce = base.clone();
        announce.push(format!(".{stage}"));
        let mut go = announce.clone();
        go.push(".go");
        // Written aside and renamed: a test that sees the file must see the whole path.
        let mut aside = announce.clone();
        aside.push(".tmp");
        if std::fs::write(&aside, path.as_os_str().as_encoded_bytes()).is_err()
            || std::fs::rename(&aside, &announce).is_err()
        {
            return;
        }
        // Bounded, so a test that died does not leave floe waiting for ever.
        let until = Instant::now() + Duration::from_secs(300);
        while !Path::new(&go).exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
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
        dir: &Location,
        snapshot: SubtaskSnapshot,
    ) -> Result<SubtaskStateMeta, CheckpointError> {
        let subtask = snapshot.subtask;
        let mut meta = SubtaskStateMeta {
            subtask,
            key_groups: None,
            keyed: None,
            keyed_format: None,
            operator: None,
        };
        match snapshot.state {
            OperatorSnapshot::Blob { blob, durable } => {
                storage::fsync_paths(&durable)?;
                meta.operator = Some(blob);
            }
            OperatorSnapshot::Keyed(ks) => {
                let blob = ks.encode_full();
                let range = ks.range();
                meta.keyed_format = Some(ks.format());
                let size = blob.bytes.len() as u64;
                let location =
                    match placement(size, self.inline_threshold, self.always_inline, false) {
                        Placement::Inline => BlobLocation::Inline(blob.bytes),
                        Placement::Exclusive | Placement::Shared => {
                            BlobLocation::Exclusive(write_state_file(dir, blob.bytes)?)
                        }
                    };
                meta.key_groups = Some((range.start, range.end));
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
    dir: &Location,
    mut metadata: CheckpointMetadata,
) -> Result<CompletedCheckpoint, CheckpointError> {
    metadata.kind = SnapshotKind::Savepoint;
    let bytes = metadata::encode(&metadata);
    write_metadata(dir, &bytes)?;
    // Each state file's size is in `_metadata` (its writer recorded it): no request per file.
    let files: u64 = metadata
        .blobs()
        .filter(|(_, _, b)| matches!(b.location, BlobLocation::Exclusive(_)))
        .map(|(_, _, b)| b.size)
        .sum();
    Ok(CompletedCheckpoint {
        checkpoint_id: CheckpointId(metadata.checkpoint_id),
        path: dir.clone(),
        size: bytes.len() as u64 + files,
    })
}

/// Removes what a failed savepoint wrote into `dir` (the directory is floe's own: it was
/// created fresh for this savepoint): locally its files through the directory opened without
/// following symlinks, then the directory.
pub fn abort(at: &Location) {
    let removed = match at.as_local() {
        None => storage::delete_snapshot_dir(at),
        Some(dir) => remove_local(dir).map_err(|source| CheckpointError::Io {
            context: format!("cannot remove '{}'", dir.display()),
            source,
        }),
    };
    if let Err(e) = removed {
        tracing::warn!(error = %e, "cleanup of a failed savepoint failed; the files stay behind");
    }
}

fn remove_local(dir: &Path) -> std::io::Result<()> {
    let Some((parent, name)) = storage::split_dir(dir) else {
        return Ok(());
    };
    let parent = nofollow::Dir::open(&parent)?;
    let d = match parent.open_dir(&name) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // `_metadata` first: a crash half-way leaves no savepoint with files missing.
    d.remove_file(storage::METADATA_FILE)?;
    for n in d.non_dir_entries()? {
        d.remove_file(&n)?;
    }
    parent.remove_dir_if_empty(&name).map(|_| ())
}

/// What a disposal removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disposed {
    pub dir: PathBuf,
    pub files: usize,
    /// Whether the directory itself went (it stays when it holds files floe did not write).
    pub dir_removed: bool,
}

/// [`dispose`] of a path the user gave on the command line: symlinks in it are the user's own
/// and are resolved first (what the API gets is resolved when it is checked; see `dispose`).
pub fn dispose_given(given: &Path) -> Result<Disposed, CheckpointError> {
    let Location::Local(local) = Location::parse(given)? else {
        return dispose(given);
    };
    match std::fs::canonicalize(&local) {
        Ok(resolved) => dispose(&resolved),
        Err(_) => dispose(given),
    }
}

/// Disposes of the savepoint at `given` (its directory or its `_metadata`). A local path is
/// walked without following symlinks (a symlink in it fails the disposal): the API passes
/// paths resolved when they were checked against the allowed roots, so a directory replaced
/// by a symlink afterwards cannot redirect the deletion.
///
/// Refuses, leaving everything in place: a path that is no floe checkpoint or savepoint (its
/// `_metadata` does not parse), and a retained checkpoint (`chk-<n>`: those belong to their
/// job's retention, not to `savepoint -d`).
pub fn dispose(given: &Path) -> Result<Disposed, CheckpointError> {
    let loaded = storage::load(given).map_err(|e| {
        let message = format!(
            "refusing to dispose of '{}': it is not a floe savepoint ({e})",
            given.display()
        );
        match e {
            CheckpointError::NotFound(_) => CheckpointError::NotFound(message),
            _ => CheckpointError::Refused(message),
        }
    })?;
    // Locally, what is deleted is what `_metadata` says when read through the directory opened
    // without following symlinks, the same way the files are then deleted.
    let metadata = match loaded.dir.as_local() {
        None => loaded.metadata,
        Some(local) => {
            let bytes = open_local(local)?
                .read(storage::METADATA_FILE)
                .map_err(|source| CheckpointError::Io {
                    context: format!("cannot read '{}'", loaded.metadata_path),
                    source,
                })?
                .ok_or_else(|| {
                    CheckpointError::NotFound(format!(
                        "refusing to dispose of '{}': its _metadata is gone",
                        given.display()
                    ))
                })?;
            metadata::decode(&bytes, &loaded.metadata_path.to_path_buf())?
        }
    };
    if metadata.kind != SnapshotKind::Savepoint {
        return Err(CheckpointError::Refused(format!(
            "refusing to dispose of '{}': it is checkpoint {} of job {}, not a savepoint; \
             checkpoints are deleted by their job's retention (state.checkpoints.num-retained)",
            loaded.dir, metadata.checkpoint_id, metadata.job_id
        )));
    }
    let dir = loaded.dir.clone();
    let names: Vec<String> = metadata.exclusive_files().map(String::from).collect();
    let (files, dir_removed) = storage::delete_listed(&dir, &names)?;
    Ok(Disposed {
        dir: dir.to_path_buf(),
        files,
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
