//! Checkpoint storage: paths, atomic writes, reading back with errors that name the file. On a
//! local file system (`file://` URIs and plain paths, through `std::fs`) or an S3-compatible
//! object store (`s3://bucket/prefix`, through opendal: [`object`]). Every function takes a
//! path that is either; object paths travel as their URI in a `PathBuf` (`s3://b/p/chk-3`), so
//! [`path`] builds both and callers need not care which it is. Other schemes are refused with
//! the list of supported ones ([`SUPPORTED_SCHEMES`]).
//!
//! Layout (docs/architecture.md#checkpoint-layout), built by [`path`] and nowhere else:
//!
//! ```text
//! <execution.checkpointing.dir>/
//!   <job-id>/                 omitted when state.checkpoints.create-subdir is false
//!     shared/                 incremental blobs, shared across checkpoints (refcounted)
//!     taskowned/              created at job start, like Flink; floe puts nothing there yet
//!     chk-<n>/
//!       _metadata             written last, atomically: the checkpoint exists once it does
//!       <uuid>                exclusive state files, at or above the inline threshold
//! ```
//!
//! Durability order: every state file is written and fsynced (and its directory fsynced)
//! before `_metadata` is; `_metadata` goes to a temp file in the same directory, is fsynced,
//! renamed over `_metadata`, and the directory is fsynced. A process killed at any point
//! leaves either no `_metadata` (the checkpoint does not exist; the previous one is intact) or
//! a complete one. Deleting goes the other way: `_metadata` first, then the files. `_metadata`
//! is created, never replaced: locally a hard link of the temp file (fails when `_metadata`
//! exists), on an object store a conditional PUT (`If-None-Match: *`). On an object store an
//! object is durable once its PUT returned, and there are no directories to create or fsync.
//!
//! This module must not decide *what* to delete (that is `retention`) and is never called on
//! a task thread: every function here may block on disk.

pub mod fs_log;
pub mod nofollow;
pub mod object;
mod store;

use fs_log::FsOp;
use object::ObjectPath;
pub use object::{configure, configure_root, SUPPORTED_SCHEMES};
pub use store::{choose_encoding, ChainInfo, Encoding, FsCheckpointStore, MAX_DELTAS};

use crate::checkpoint::metadata::{
    self, BlobLocation, CheckpointMetadata, GroupIndexEntry, KeyedStateHandle, StateBlob,
};
use crate::checkpoint::{CheckpointError, JobId};
use crate::state::keygroup::KeyGroupRange;
use crate::state::snapshot::StateFormatError;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Name of the file that makes a directory a checkpoint or savepoint.
pub const METADATA_FILE: &str = "_metadata";
pub(crate) const METADATA_TEMP_FILE: &str = "_metadata.inprogress";
const CHECKPOINT_DIR_PREFIX: &str = "chk-";
const SHARED_DIR: &str = "shared";
const TASK_OWNED_DIR: &str = "taskowned";
const SAVEPOINT_DIR_PREFIX: &str = "savepoint-";

/// The config key named in errors about the checkpoint directory (Flink 2 name, then 1.x).
const DIR_KEY: &str = "execution.checkpointing.dir (state.checkpoints.dir)";

/// Every kind of path storage uses. [`path`] turns one into a `PathBuf`.
#[derive(Debug, Clone, Copy)]
pub enum PathKind<'a> {
    /// `<base>/<job-id>`, or `<base>` itself when `create_subdir` is false.
    JobDir {
        base: &'a Path,
        job_id: &'a JobId,
        create_subdir: bool,
    },
    /// `<job dir>/shared`.
    SharedDir { job_dir: &'a Path },
    /// `<job dir>/taskowned`.
    TaskOwnedDir { job_dir: &'a Path },
    /// `<job dir>/chk-<id>`.
    CheckpointDir { job_dir: &'a Path, id: u64 },
    /// `<checkpoint or savepoint dir>/_metadata`.
    Metadata { snapshot_dir: &'a Path },
    /// The temp file `_metadata` is written to before the rename. Same directory, because a
    /// rename is atomic only within one file system.
    MetadataTemp { snapshot_dir: &'a Path },
    /// An exclusive state file: `<checkpoint or savepoint dir>/<name>`.
    ExclusiveFile {
        snapshot_dir: &'a Path,
        name: &'a str,
    },
    /// An incremental state file: `<job dir>/shared/<name>`.
    SharedFile { job_dir: &'a Path, name: &'a str },
    /// `<base>/savepoint-<first 6 chars of the job id>-<random>` (docs/architecture.md#savepoints).
    SavepointDir {
        base: &'a Path,
        job_id: &'a JobId,
        random: &'a str,
    },
}

/// The one function that builds checkpoint and savepoint paths.
pub fn path(kind: PathKind<'_>) -> PathBuf {
    match kind {
        PathKind::JobDir {
            base,
            job_id,
            create_subdir,
        } => {
            if create_subdir {
                base.join(&job_id.0)
            } else {
                base.to_path_buf()
            }
        }
        PathKind::SharedDir { job_dir } => job_dir.join(SHARED_DIR),
        PathKind::TaskOwnedDir { job_dir } => job_dir.join(TASK_OWNED_DIR),
        PathKind::CheckpointDir { job_dir, id } => {
            job_dir.join(format!("{CHECKPOINT_DIR_PREFIX}{id}"))
        }
        PathKind::Metadata { snapshot_dir } => snapshot_dir.join(METADATA_FILE),
        PathKind::MetadataTemp { snapshot_dir } => snapshot_dir.join(METADATA_TEMP_FILE),
        PathKind::ExclusiveFile { snapshot_dir, name } => snapshot_dir.join(name),
        PathKind::SharedFile { job_dir, name } => job_dir.join(SHARED_DIR).join(name),
        PathKind::SavepointDir {
            base,
            job_id,
            random,
        } => {
            let short: String = job_id.0.chars().take(6).collect();
            base.join(format!("{SAVEPOINT_DIR_PREFIX}{short}-{random}"))
        }
    }
}

/// The checkpoint id of a directory named `chk-<n>`.
pub fn checkpoint_id_of(dir_name: &str) -> Option<u64> {
    let digits = dir_name.strip_prefix(CHECKPOINT_DIR_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A checkpoint directory setting as a storage path: `file:///x`, `file:/x`,
/// `file://localhost/x` or a plain path as a local path; `s3://bucket/prefix` as its URI with
/// `//` folded and no trailing `/`. Other schemes are refused with the list of supported ones.
pub fn parse_dir(value: &str) -> Result<PathBuf, CheckpointError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(CheckpointError::Format(format!(
            "{DIR_KEY} is empty; give a directory, e.g. file:///var/lib/floe/checkpoints"
        )));
    }
    match scheme_of(value) {
        None => Ok(PathBuf::from(value)),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("file") => {
            // file:///x and file:/x are both /x; file://host/x only for the local host.
            let local = match rest.strip_prefix("//") {
                None => rest,
                Some(after) => {
                    let (host, path) = after.split_at(after.find('/').unwrap_or(after.len()));
                    if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                        return Err(CheckpointError::Format(format!(
                            "{DIR_KEY} '{value}': file URI with host '{host}' is not supported; \
                             use file:///path (three slashes) for a local directory"
                        )));
                    }
                    path
                }
            };
            if local.is_empty() {
                return Err(CheckpointError::Format(format!(
                    "{DIR_KEY} '{value}' has no path; use file:///path"
                )));
            }
            Ok(PathBuf::from(local))
        }
        Some((scheme, _)) if object::is_object_scheme(scheme) => match object::split_uri(value) {
            Some(Ok((scheme, bucket, key))) if key.is_empty() => {
                Ok(PathBuf::from(format!("{scheme}://{bucket}")))
            }
            Some(Ok((scheme, bucket, key))) => {
                Ok(PathBuf::from(format!("{scheme}://{bucket}/{key}")))
            }
            Some(Err(e)) => Err(CheckpointError::Format(format!("{DIR_KEY} {e}"))),
            None => Err(CheckpointError::Format(format!(
                "{DIR_KEY} '{value}': write it as {}://bucket/prefix",
                scheme.to_ascii_lowercase()
            ))),
        },
        Some((scheme, _)) => {
            let hdfs = if scheme.eq_ignore_ascii_case("hdfs") {
                " (floe has no HDFS client; put checkpoints on S3-compatible storage or a \
                 mounted file system instead)"
            } else {
                ""
            };
            Err(CheckpointError::Format(format!(
                "{DIR_KEY} '{value}': scheme '{scheme}' is not supported{hdfs}; supported: \
                 {SUPPORTED_SCHEMES}"
            )))
        }
    }
}

/// Where a storage path is: a local path, or an object in a bucket.
pub(crate) enum Target {
    Local(PathBuf),
    Object(ObjectPath),
}

/// Resolves a storage path (a plain path, a `file:` URI or an `s3://` URI).
pub(crate) fn target(given: &Path) -> Result<Target, CheckpointError> {
    let Some(s) = given.to_str() else {
        return Ok(Target::Local(given.to_path_buf()));
    };
    match scheme_of(s) {
        None => Ok(Target::Local(given.to_path_buf())),
        Some(_) => match ObjectPath::parse(s) {
            Some(obj) => obj.map(Target::Object),
            None => parse_dir(s).map(Target::Local),
        },
    }
}

/// Whether `given` names an object store (`s3://`), not the local file system.
pub fn is_object_path(given: &Path) -> bool {
    given
        .to_str()
        .and_then(scheme_of)
        .is_some_and(|(scheme, _)| object::is_object_scheme(scheme))
}

/// `Some((scheme, rest))` when `s` starts with an RFC 3986 scheme and a colon. A single
/// letter is taken as a Windows drive, not a scheme.
fn scheme_of(s: &str) -> Option<(&str, &str)> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut bytes = scheme.bytes();
    let first = bytes.next()?;
    let valid = first.is_ascii_alphabetic()
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        && scheme.len() > 1;
    valid.then(|| (scheme, &s[colon + 1..]))
}

/// Where a blob of `size` bytes goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Inside `_metadata`.
    Inline,
    /// A uuid-named file in the checkpoint's directory.
    Exclusive,
    /// A uuid-named file in the job's `shared/` directory.
    Shared,
}

/// `state.backend.fs.memory-threshold`: a blob *smaller* than the threshold is inlined (so
/// `threshold - 1` bytes is inline, `threshold` bytes is a file). `always_inline` is the
/// `jobmanager` backend/storage, which keeps all state in `_metadata`. Incremental blobs go to
/// `shared/` because later checkpoints reference them.
pub fn placement(size: u64, threshold: u64, always_inline: bool, incremental: bool) -> Placement {
    if always_inline || size < threshold {
        Placement::Inline
    } else if incremental {
        Placement::Shared
    } else {
        Placement::Exclusive
    }
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> CheckpointError {
    move |source| CheckpointError::Io { context, source }
}

/// Creates `dir` and its parents (nothing to do on an object store), durably: the parent of
/// each level created is fsynced, or a power loss could take a `chk-<n>` directory away with
/// the `_metadata` fsynced inside it, after the sinks committed on its completion.
pub fn create_dir(dir: &Path) -> Result<(), CheckpointError> {
    if is_object_path(dir) {
        return Ok(());
    }
    let created = missing_levels(dir);
    fs::create_dir_all(dir).map_err(io_err(format!(
        "cannot create checkpoint directory '{}' (check that {DIR_KEY} is writable)",
        dir.display()
    )))?;
    for level in &created {
        fs_log::record(|| FsOp::CreateDir(level.clone()));
    }
    for parent in created.iter().filter_map(|level| level.parent()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// The levels of `dir` that do not exist yet, outermost first: what `create_dir_all` creates.
fn missing_levels(dir: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    missing
}

/// fsyncs a directory so the names created, renamed or deleted in it are durable (nothing to
/// do on an object store).
pub fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    if is_object_path(dir) {
        return Ok(());
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!(
            "cannot fsync directory '{}'",
            dir.display()
        )))?;
    fs_log::record(|| FsOp::SyncDir(dir.to_path_buf()));
    Ok(())
}

/// Writes `bytes` to a new uuid-named file in `dir`, fsyncs the file and the directory, and
/// returns the name. The name is fresh, so a reader can never see a half-written file under
/// a name some `_metadata` references: that `_metadata` is written only after this returns.
pub fn write_state_file(dir: &Path, bytes: Vec<u8>) -> Result<String, CheckpointError> {
    let name = uuid::Uuid::new_v4().to_string();
    if let Target::Object(obj) = target(dir)? {
        obj.child(&name).put(bytes)?;
        return Ok(name);
    }
    let file = dir.join(&name);
    let ctx = || format!("cannot write state file '{}'", file.display());
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .open(&file)
        .map_err(io_err(ctx()))?;
    fs_log::record(|| FsOp::CreateFile(file.clone()));
    f.write_all(&bytes).map_err(io_err(ctx()))?;
    fs_log::record(|| FsOp::Write {
        path: file.clone(),
        bytes: bytes.clone(),
    });
    f.sync_all().map_err(io_err(ctx()))?;
    fs_log::record(|| FsOp::SyncFile(file.clone()));
    sync_dir(dir)?;
    Ok(name)
}

/// Writes `_metadata` into `snapshot_dir` atomically and only if there is none: temp file,
/// write, fsync, hard link to `_metadata` (which fails when it exists), fsync of the
/// directory. Before the link a crash leaves only the temp file (ignored by readers); after
/// the directory fsync the checkpoint is durable. On an object store: one conditional PUT.
/// An existing `_metadata` with other contents is an error and stays as it was.
pub fn write_metadata(snapshot_dir: &Path, bytes: &[u8]) -> Result<PathBuf, CheckpointError> {
    let target_path = path(PathKind::Metadata { snapshot_dir });
    let exists = || {
        CheckpointError::Format(format!(
            "'{}' already exists: a checkpoint's or savepoint's _metadata is written once and \
             never replaced (is another job writing to the same directory? give each job its \
             own {DIR_KEY}, or keep execution.checkpointing.create-subdir on)",
            target_path.display()
        ))
    };
    if let Target::Object(obj) = target(&target_path)? {
        return match obj.put_if_absent(bytes.to_vec())? {
            true => Ok(target_path),
            false => Err(exists()),
        };
    }
    create_dir(snapshot_dir)?;
    let temp = path(PathKind::MetadataTemp { snapshot_dir });
    let ctx = || format!("cannot write '{}'", temp.display());
    let mut f = File::create(&temp).map_err(io_err(ctx()))?;
    fs_log::record(|| FsOp::CreateFile(temp.clone()));
    f.write_all(bytes).map_err(io_err(ctx()))?;
    fs_log::record(|| FsOp::Write {
        path: temp.clone(),
        bytes: bytes.to_vec(),
    });
    f.sync_all().map_err(io_err(ctx()))?;
    fs_log::record(|| FsOp::SyncFile(temp.clone()));
    drop(f);
    let linked = fs::hard_link(&temp, &target_path);
    let outcome = match linked {
        Ok(()) => {
            fs_log::record(|| FsOp::HardLink {
                from: temp.clone(),
                to: target_path.clone(),
            });
            Ok(())
        }
        // The same bytes: a retry of a write that succeeded.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => match fs::read(&target_path) {
            Ok(existing) if existing == bytes => Ok(()),
            _ => Err(exists()),
        },
        // A file system without hard links: check, then rename (not atomic against another
        // writer, which the job-id subdirectory rules out).
        Err(_) if target_path.exists() => Err(exists()),
        Err(_) => fs::rename(&temp, &target_path)
            .map(|()| {
                fs_log::record(|| FsOp::Rename {
                    from: temp.clone(),
                    to: target_path.clone(),
                })
            })
            .map_err(io_err(format!(
                "cannot rename '{}' to '{}'",
                temp.display(),
                target_path.display()
            ))),
    };
    if fs::remove_file(&temp).is_ok() {
        fs_log::record(|| FsOp::RemoveFile(temp.clone()));
    }
    outcome?;
    sync_dir(snapshot_dir)?;
    Ok(target_path)
}

/// Deletes a checkpoint directory: `_metadata` first (and that made durable), so a crash
/// half-way leaves a directory that is not a checkpoint rather than a checkpoint with files
/// missing. A directory already gone is fine.
pub fn delete_snapshot_dir(snapshot_dir: &Path) -> Result<(), CheckpointError> {
    let meta = path(PathKind::Metadata { snapshot_dir });
    if let Target::Object(dir) = target(snapshot_dir)? {
        dir.child(METADATA_FILE).delete()?;
        return dir.delete_all();
    }
    match fs::remove_file(&meta) {
        Ok(()) => {
            fs_log::record(|| FsOp::RemoveFile(meta.clone()));
            sync_dir(snapshot_dir)?
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("cannot delete '{}'", meta.display()))(e)),
    }
    match fs::remove_dir_all(snapshot_dir) {
        Ok(()) => {
            fs_log::record(|| FsOp::RemoveDirAll(snapshot_dir.to_path_buf()));
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!(
            "cannot delete '{}'",
            snapshot_dir.display()
        ))(e)),
    }
}

/// Deletes a snapshot directory floe did not create itself (a savepoint being disposed of, a
/// claimed snapshot): `_metadata` first (from then on it is no snapshot, whatever else
/// fails), then the state files it lists (`names`, checked plain names: see
/// `metadata::decode`), then the directory if nothing else is left in it. Files floe did not
/// write stay. Returns how many files were deleted and whether the directory went.
///
/// Locally everything is deleted through the directory opened without following symlinks
/// ([`nofollow::Dir`]): a directory replaced by a symlink makes the deletion fail, never
/// reach into another directory.
pub fn delete_listed(dir: &Path, names: &[String]) -> Result<(usize, bool), CheckpointError> {
    if is_object_path(dir) {
        delete_file(&path(PathKind::Metadata { snapshot_dir: dir }))?;
        for name in names {
            delete_file(&path(PathKind::ExclusiveFile {
                snapshot_dir: dir,
                name,
            }))?;
        }
        return Ok((names.len() + 1, remove_dir_if_empty(dir)));
    }
    let ctx = || format!("cannot delete the snapshot '{}'", dir.display());
    let (parent, name) = split_dir(dir)
        .ok_or_else(|| CheckpointError::Format(format!("{}: it names no directory", ctx())))?;
    let parent = nofollow::Dir::open(&parent).map_err(io_err(ctx()))?;
    let d = parent.open_dir(&name).map_err(io_err(ctx()))?;
    d.remove_file(METADATA_FILE).map_err(io_err(ctx()))?;
    d.sync().map_err(io_err(ctx()))?;
    for n in names {
        d.remove_file(n).map_err(io_err(ctx()))?;
    }
    // A temp file left by a crash while `_metadata` was written is floe's too.
    d.remove_file(METADATA_TEMP_FILE).map_err(io_err(ctx()))?;
    let removed = parent.remove_dir_if_empty(&name).map_err(io_err(ctx()))?;
    Ok((names.len() + 1, removed))
}

/// A local directory as its parent (`.` for a bare name) and its own name.
pub(crate) fn split_dir(dir: &Path) -> Option<(PathBuf, String)> {
    let name = dir.file_name()?.to_str()?.to_owned();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some((parent, name))
}

/// Makes a sink's pre-committed files durable before its ack (so before `_metadata`): each
/// file's contents, then the directories holding their renames. A path that is gone was
/// committed meanwhile by the sink's `finish`, which fsyncs what it commits itself.
pub fn fsync_paths(paths: &[PathBuf]) -> Result<(), CheckpointError> {
    for p in paths {
        match std::fs::File::open(p).and_then(|f| f.sync_all()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(CheckpointError::Io {
                    context: format!(
                        "cannot make the sink's pre-committed file {} durable (fsync)",
                        p.display()
                    ),
                    source: e,
                })
            }
        }
    }
    Ok(())
}

/// Deletes one file; a file already gone is fine.
pub fn delete_file(file: &Path) -> Result<(), CheckpointError> {
    if let Target::Object(obj) = target(file)? {
        return obj.delete();
    }
    match fs::remove_file(file) {
        Ok(()) => {
            fs_log::record(|| FsOp::RemoveFile(file.to_path_buf()));
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("cannot delete '{}'", file.display()))(e)),
    }
}

/// A checkpoint or savepoint read from disk: its `_metadata`, decoded and verified.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedSnapshot {
    /// The checkpoint or savepoint directory (exclusive files are relative to it).
    pub dir: PathBuf,
    pub metadata_path: PathBuf,
    /// Bytes of the `_metadata` file.
    pub metadata_len: u64,
    pub metadata: CheckpointMetadata,
}

impl LoadedSnapshot {
    /// The job directory, where `shared/` is: the parent of a `chk-<n>` directory.
    pub fn job_dir(&self) -> &Path {
        self.dir.parent().unwrap_or(Path::new("."))
    }

    /// The file a blob is in; `None` for an inline blob.
    pub fn blob_path(&self, blob: &StateBlob) -> Option<PathBuf> {
        match &blob.location {
            BlobLocation::Inline(_) => None,
            BlobLocation::Exclusive(name) => Some(path(PathKind::ExclusiveFile {
                snapshot_dir: &self.dir,
                name,
            })),
            BlobLocation::Shared(name) => Some(path(PathKind::SharedFile {
                job_dir: self.job_dir(),
                name,
            })),
        }
    }
}

/// A path as given on the command line or in config, as a storage path: a `file:` URI or a
/// plain path as a local path, an `s3://` URI normalised ([`parse_dir`]).
pub(crate) fn normalize(given: &Path) -> Result<PathBuf, CheckpointError> {
    match given.to_str() {
        Some(s) if scheme_of(s).is_some() => parse_dir(s),
        _ => Ok(given.to_path_buf()),
    }
}

fn not_found(given: &Path) -> CheckpointError {
    CheckpointError::Format(format!(
        "Cannot find checkpoint or savepoint file/directory '{}'",
        given.display()
    ))
}

fn no_metadata_in(given: &Path) -> CheckpointError {
    CheckpointError::Format(format!(
        "Cannot find meta data file '{METADATA_FILE}' in directory '{}'. Please try to load the \
         checkpoint/savepoint directly from the metadata file instead of the directory.",
        given.display()
    ))
}

/// [`load`] from an object store: `given` is the snapshot's prefix or its `_metadata`.
fn load_object(
    given: &Path,
    norm: PathBuf,
    obj: ObjectPath,
) -> Result<LoadedSnapshot, CheckpointError> {
    let is_metadata = obj.name() == METADATA_FILE;
    let (dir, metadata_path, meta_obj) = if is_metadata {
        let dir = norm.parent().map(Path::to_path_buf).unwrap_or_default();
        (dir, norm, obj.clone())
    } else {
        let m = path(PathKind::Metadata {
            snapshot_dir: &norm,
        });
        (norm, m, obj.child(METADATA_FILE))
    };
    let Some(bytes) = meta_obj.get()? else {
        return Err(if !is_metadata && obj.has_children()? {
            no_metadata_in(given)
        } else {
            not_found(given)
        });
    };
    let metadata = metadata::decode(&bytes, &metadata_path)?;
    Ok(LoadedSnapshot {
        dir,
        metadata_path,
        metadata_len: bytes.len() as u64,
        metadata,
    })
}

/// Loads a checkpoint or savepoint from its directory or its `_metadata` file (reference
/// §5.1), with Flink's messages for a missing path and a directory without `_metadata`.
pub fn load(given: impl AsRef<Path>) -> Result<LoadedSnapshot, CheckpointError> {
    let given = given.as_ref();
    let local = normalize(given)?;
    if let Target::Object(obj) = target(&local)? {
        return load_object(given, local, obj);
    }
    let meta = fs::metadata(&local).map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            not_found(given)
        } else {
            io_err(format!("cannot read '{}'", given.display()))(e)
        }
    })?;
    let (dir, metadata_path) = if meta.is_dir() {
        let m = path(PathKind::Metadata {
            snapshot_dir: &local,
        });
        if !m.is_file() {
            return Err(no_metadata_in(given));
        }
        (local, m)
    } else {
        let dir = local
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        (dir, local)
    };
    let bytes = fs::read(&metadata_path)
        .map_err(io_err(format!("cannot read '{}'", metadata_path.display())))?;
    let metadata = metadata::decode(&bytes, &metadata_path)?;
    Ok(LoadedSnapshot {
        dir,
        metadata_path,
        metadata_len: bytes.len() as u64,
        metadata,
    })
}

/// The complete checkpoints (`chk-<n>` with a `_metadata`) in a job directory, newest first.
/// A `chk-<n>` without `_metadata` was never completed and is not listed.
pub fn list_checkpoints(job_dir: &Path) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let job_dir = &normalize(job_dir)?;
    if let Target::Object(obj) = target(job_dir)? {
        let mut out = Vec::new();
        for (name, is_dir) in obj.list()? {
            let Some(id) = checkpoint_id_of(&name).filter(|_| is_dir) else {
                continue;
            };
            if obj.child(&name).child(METADATA_FILE).size()?.is_some() {
                out.push((id, job_dir.join(&name)));
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.0));
        return Ok(out);
    }
    let entries = fs::read_dir(job_dir).map_err(io_err(format!(
        "cannot list job directory '{}'",
        job_dir.display()
    )))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(format!(
            "cannot list job directory '{}'",
            job_dir.display()
        )))?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(checkpoint_id_of) else {
            continue;
        };
        let dir = entry.path();
        if path(PathKind::Metadata { snapshot_dir: &dir }).is_file() {
            out.push((id, dir));
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.0));
    Ok(out)
}

/// The complete savepoints (`savepoint-*` holding a `_metadata`) directly under `root`, on
/// local disk or object storage. A root that does not exist holds none.
pub fn list_savepoints(root: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let root = &normalize(root)?;
    let is_savepoint = |name: &str| name.starts_with("savepoint-");
    if let Target::Object(obj) = target(root)? {
        let mut out = Vec::new();
        for (name, is_dir) in obj.list()? {
            if is_dir
                && is_savepoint(&name)
                && obj.child(&name).child(METADATA_FILE).size()?.is_some()
            {
                out.push(root.join(&name));
            }
        }
        out.sort();
        return Ok(out);
    }
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(io_err(format!(
                "cannot list the savepoint directory '{}'",
                root.display()
            ))(e))
        }
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_savepoint))
        .map(|e| e.path())
        .filter(|dir| path(PathKind::Metadata { snapshot_dir: dir }).is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// Checks that every state file `loaded` references exists and has the size `_metadata`
/// records, without reading it: what makes a checkpoint restorable short of reading every
/// group's checksum ([`verify_checksums`]). The error names the checkpoint and the file.
pub fn verify_files(loaded: &LoadedSnapshot) -> Result<(), CheckpointError> {
    for (op, st, blob) in loaded.metadata.blobs() {
        let Some(file) = loaded.blob_path(blob) else {
            continue;
        };
        let what = || {
            format!(
                "state file '{}' of checkpoint '{}' (operator \"{}\", subtask {})",
                file.display(),
                loaded.dir.display(),
                op.operator_id,
                st.subtask + 1
            )
        };
        match file_size(&file) {
            Ok(Some(len)) if len == blob.size => {}
            Ok(Some(len)) => {
                return Err(CheckpointError::Format(format!(
                    "{} is corrupt ({len} bytes, _metadata says {}: truncated or replaced)",
                    what(),
                    blob.size
                )))
            }
            Ok(None) => return Err(CheckpointError::Format(format!("{} is missing", what()))),
            Err(e) => {
                return Err(CheckpointError::Format(format!(
                    "cannot read {}: {e}",
                    what()
                )))
            }
        }
    }
    Ok(())
}

/// Reads every key group of every blob `loaded` references and checks its checksum: all of
/// the checkpoint's state, so only for an error path (finding an intact checkpoint).
pub fn verify_checksums(loaded: &LoadedSnapshot) -> Result<(), CheckpointError> {
    let all = KeyGroupRange {
        start: 0,
        end: u32::MAX,
    };
    for (_, _, blob) in loaded.metadata.blobs() {
        read_groups(loaded, blob, all)?;
    }
    Ok(())
}

/// The newest checkpoint older than the one in `snapshot_dir` (a `chk-<n>` directory) in the
/// same job directory that is intact: its `_metadata` decodes, belongs to `job_id` when that
/// is known, every file it references is there with the right size ([`verify_files`]) and
/// every key group's checksum holds ([`verify_checksums`]).
/// `None` for a savepoint or when there is none.
pub fn find_intact_older(snapshot_dir: &Path, job_id: Option<&JobId>) -> Option<PathBuf> {
    let id = checkpoint_id_of(snapshot_dir.file_name()?.to_str()?)?;
    let job_dir = snapshot_dir.parent()?;
    let job_dir = if job_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        job_dir
    };
    list_checkpoints(job_dir)
        .ok()?
        .into_iter()
        .filter(|(older, _)| *older < id)
        .find_map(|(_, dir)| {
            let loaded = load(&dir).ok()?;
            let same_job = job_id.is_none_or(|j| *j == loaded.metadata.job_id);
            let intact =
                same_job && verify_files(&loaded).is_ok() && verify_checksums(&loaded).is_ok();
            intact.then_some(dir)
        })
}

/// A checkpoint directory found by [`scan_checkpoints`], with its `_metadata` read.
pub type ScannedCheckpoint = (PathBuf, Result<LoadedSnapshot, CheckpointError>);

/// Every complete checkpoint under a checkpoint root: `<base>/<job-id>/chk-<n>` and, for
/// `state.checkpoints.create-subdir: false`, `<base>/chk-<n>`. Each with its `_metadata`
/// decoded, or the error that stopped it.
pub fn scan_checkpoints(base: &Path) -> Result<Vec<ScannedCheckpoint>, CheckpointError> {
    let base = &normalize(base)?;
    let mut job_dirs = vec![base.to_path_buf()];
    if let Target::Object(obj) = target(base)? {
        for (name, is_dir) in obj.list()? {
            if is_dir && JobId::is_valid(&name) {
                job_dirs.push(base.join(name));
            }
        }
    } else {
        let entries = fs::read_dir(base).map_err(io_err(format!(
            "cannot list the checkpoint directory '{}'",
            base.display()
        )))?;
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && entry.file_name().to_str().is_some_and(JobId::is_valid)
            {
                job_dirs.push(entry.path());
            }
        }
    }
    let mut out = Vec::new();
    for job_dir in job_dirs {
        for (_, dir) in list_checkpoints(&job_dir).unwrap_or_default() {
            let loaded = load(&dir);
            out.push((dir, loaded));
        }
    }
    Ok(out)
}

/// Checks a blob's 8-byte header (the format belongs to `state::snapshot`).
fn check_blob_header(bytes: &[u8]) -> Result<(), StateFormatError> {
    crate::state::snapshot::check_header(bytes)
}

/// Bytes of the blob header ([`crate::state::snapshot::BLOB_MAGIC`] and version).
const BLOB_HEADER_LEN: usize = crate::state::snapshot::HEADER_LEN;

/// Reads the key groups of `blob` that fall in `range`, and only those: one seek and read per
/// group, so a restore at another parallelism reads what it owns. Checks the blob header and
/// each group's crc32c. Errors name the checkpoint and the file.
pub fn read_groups(
    loaded: &LoadedSnapshot,
    blob: &StateBlob,
    range: KeyGroupRange,
) -> Result<Vec<(GroupIndexEntry, Vec<u8>)>, CheckpointError> {
    let wanted = blob.groups.iter().filter(|g| range.contains(g.key_group));
    let what = match loaded.blob_path(blob) {
        Some(p) => format!(
            "state file '{}' of checkpoint '{}'",
            p.display(),
            loaded.dir.display()
        ),
        None => format!("inline state in '{}'", loaded.metadata_path.display()),
    };
    let corrupt = |detail: String| CheckpointError::Format(format!("{what} is corrupt ({detail})"));
    let mut out = Vec::new();
    match (&blob.location, loaded.blob_path(blob)) {
        (BlobLocation::Inline(bytes), _) => {
            check_blob_header(bytes).map_err(|e| corrupt(e.to_string()))?;
            for g in wanted {
                let start = usize::try_from(g.offset).ok();
                let end = start.and_then(|s| s.checked_add(usize::try_from(g.len).ok()?));
                let data = match (start, end) {
                    (Some(s), Some(e)) if e <= bytes.len() => bytes[s..e].to_vec(),
                    _ => {
                        return Err(corrupt(format!(
                            "key group {} lies outside the blob",
                            g.key_group
                        )))
                    }
                };
                verify_group(g, &data).map_err(&corrupt)?;
                out.push((*g, data));
            }
        }
        (_, Some(file)) => {
            let mut f = StateFile::open(&file, &what)?;
            if f.len != blob.size {
                return Err(corrupt(format!(
                    "{} bytes, _metadata says {}: truncated or replaced",
                    f.len, blob.size
                )));
            }
            let header = f.read(0, BLOB_HEADER_LEN as u64, &what)?;
            check_blob_header(&header).map_err(|e| corrupt(e.to_string()))?;
            let wanted: Vec<&GroupIndexEntry> = wanted.collect();
            for g in &wanted {
                if g.offset.checked_add(g.len).is_none_or(|end| end > f.len) {
                    return Err(corrupt(format!(
                        "key group {} lies outside the file",
                        g.key_group
                    )));
                }
            }
            let span = wanted
                .iter()
                .map(|g| g.offset)
                .min()
                .zip(wanted.iter().map(|g| g.offset + g.len).max());
            if let Some((start, end)) = span {
                f.prefetch(start, end, &what)?;
            }
            for g in wanted {
                let data = f.read(g.offset, g.len, &what)?;
                verify_group(g, &data).map_err(&corrupt)?;
                out.push((*g, data));
            }
        }
        (_, None) => unreachable!("only inline blobs have no file"),
    }
    Ok(out)
}

/// The groups in `range` of every blob of a subtask's keyed state, in the order a restore
/// applies them: a full blob's, then each delta's of a chain.
pub fn read_handle(
    loaded: &LoadedSnapshot,
    handle: &KeyedStateHandle,
    range: KeyGroupRange,
) -> Result<Vec<(GroupIndexEntry, Vec<u8>)>, CheckpointError> {
    let blobs: &[StateBlob] = match handle {
        KeyedStateHandle::Full(b) => std::slice::from_ref(b),
        KeyedStateHandle::Incremental { chain } => chain,
    };
    let mut out = Vec::new();
    for b in blobs {
        out.extend(read_groups(loaded, b, range)?);
    }
    Ok(out)
}

/// A state file opened for reading its key groups: a local file (seek and read) or an object
/// (ranged GETs; the span of the groups a restore wants is fetched in one request).
struct StateFile {
    len: u64,
    source: StateSource,
}

enum StateSource {
    Local(File),
    Object {
        obj: ObjectPath,
        /// Bytes `start..` fetched by [`StateFile::prefetch`].
        fetched: Option<(u64, Vec<u8>)>,
    },
}

impl StateFile {
    fn open(file: &Path, what: &str) -> Result<StateFile, CheckpointError> {
        let missing = || {
            CheckpointError::Format(format!(
                "{what} is missing; the checkpoint cannot be restored: restore from another \
                 checkpoint or savepoint"
            ))
        };
        if let Target::Object(obj) = target(file)? {
            let len = obj.size()?.ok_or_else(missing)?;
            return Ok(StateFile {
                len,
                source: StateSource::Object { obj, fetched: None },
            });
        }
        let f = File::open(file).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                missing()
            } else {
                io_err(format!("cannot open {what}"))(e)
            }
        })?;
        let len = f
            .metadata()
            .map_err(io_err(format!("cannot read {what}")))?
            .len();
        Ok(StateFile {
            len,
            source: StateSource::Local(f),
        })
    }

    /// Fetches bytes `start..end` of an object in one request (a local file reads as it goes).
    fn prefetch(&mut self, start: u64, end: u64, what: &str) -> Result<(), CheckpointError> {
        if let StateSource::Object { obj, fetched } = &mut self.source {
            let bytes = obj.get_range(start, end - start)?;
            if (bytes.len() as u64) < end - start {
                return Err(CheckpointError::Format(format!("{what} is truncated")));
            }
            *fetched = Some((start, bytes));
        }
        Ok(())
    }

    fn read(&mut self, offset: u64, len: u64, what: &str) -> Result<Vec<u8>, CheckpointError> {
        match &mut self.source {
            StateSource::Local(f) => {
                let mut data = vec![0u8; len as usize];
                read_at(f, offset, &mut data).map_err(|e| read_error(what, e))?;
                Ok(data)
            }
            StateSource::Object { obj, fetched } => {
                if let Some((start, bytes)) = fetched {
                    let from = offset.checked_sub(*start).map(|o| o as usize);
                    if let Some(from) = from.filter(|f| f + len as usize <= bytes.len()) {
                        return Ok(bytes[from..from + len as usize].to_vec());
                    }
                }
                let data = obj.get_range(offset, len)?;
                if (data.len() as u64) < len {
                    return Err(CheckpointError::Format(format!("{what} is truncated")));
                }
                Ok(data)
            }
        }
    }
}

/// The size of a state file; `None` when it does not exist.
pub fn file_size(file: &Path) -> Result<Option<u64>, CheckpointError> {
    if let Target::Object(obj) = target(file)? {
        return obj.size();
    }
    match fs::metadata(file) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(format!("cannot read '{}'", file.display()))(e)),
    }
}

/// Whether `dir` is a job's checkpoint directory rather than a checkpoint: no `_metadata` in
/// it, and a `shared/` or some `chk-<n>` below it.
pub fn looks_like_job_dir(dir: &Path) -> Result<bool, CheckpointError> {
    let dir = &normalize(dir)?;
    if let Target::Object(obj) = target(dir)? {
        let children = obj.list()?;
        let has_metadata = children.iter().any(|(n, d)| !d && n == METADATA_FILE);
        let has_checkpoints = children
            .iter()
            .any(|(n, d)| *d && (n == SHARED_DIR || checkpoint_id_of(n).is_some()));
        return Ok(!has_metadata && has_checkpoints);
    }
    if !dir.is_dir() || path(PathKind::Metadata { snapshot_dir: dir }).exists() {
        return Ok(false);
    }
    if path(PathKind::SharedDir { job_dir: dir }).is_dir() {
        return Ok(true);
    }
    Ok(fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_str().and_then(checkpoint_id_of).is_some())
    }))
}

/// Removes `dir` if nothing is left in it; whether it is gone. On an object store a prefix
/// with no objects does not exist.
pub fn remove_dir_if_empty(dir: &Path) -> bool {
    match target(dir) {
        Ok(Target::Object(obj)) => obj.has_children().is_ok_and(|any| !any),
        Ok(Target::Local(dir)) => fs::remove_dir(dir).is_ok(),
        Err(_) => false,
    }
}

fn read_at(f: &mut File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

fn read_error(what: &str, e: std::io::Error) -> CheckpointError {
    if e.kind() == ErrorKind::UnexpectedEof {
        CheckpointError::Format(format!("{what} is truncated"))
    } else {
        CheckpointError::Io {
            context: format!("cannot read {what}"),
            source: e,
        }
    }
}

fn verify_group(g: &GroupIndexEntry, data: &[u8]) -> Result<(), String> {
    let actual = crc32c::crc32c(data);
    if actual == g.crc32c {
        Ok(())
    } else {
        Err(format!("checksum mismatch in key group {}", g.key_group))
    }
}

#[cfg(test)]
mod tests;
