//! Checkpoint storage: paths, atomic writes, reading back with errors that name the file. On a
//! local file system (`file://` URIs and plain paths) or an S3-compatible object store
//! (`s3://bucket/prefix`, through opendal: [`object`]). A path given as text becomes a
//! [`Location`] once ([`Location::parse`]); every function here takes locations and works
//! through the [`Storage`] interface ([`backend`]), implemented by local disk ([`local`]) and
//! object stores ([`object`]); [`path`] builds the layout for both. Other schemes are refused
//! with the list of supported ones ([`SUPPORTED_SCHEMES`]).
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
//! linked into place as `_metadata`, and the directory is fsynced. A process killed at any
//! point leaves either no `_metadata` (the checkpoint does not exist; the previous one is
//! intact) or a complete one. Deleting goes the other way: `_metadata` first, then the files.
//! `_metadata` is created, never replaced: locally a hard link of the temp file (fails when
//! `_metadata` exists), on an object store a conditional PUT (`If-None-Match: *`). On an
//! object store an object is durable once its PUT returned, and there are no directories to
//! create or fsync.
//!
//! This module must not decide *what* to delete (that is `retention`) and is never called on
//! a task thread: every function here may block on disk.

pub mod backend;
pub mod fs_log;
pub mod local;
pub mod location;
pub mod nofollow;
pub mod object;
mod store;

pub use backend::Storage;
pub use location::{is_object_path, Location};
pub use object::{configure, configure_root, SUPPORTED_SCHEMES};
pub use store::{choose_encoding, ChainInfo, Encoding, FsCheckpointStore, MAX_DELTAS};

use crate::checkpoint::metadata::{
    self, BlobLocation, CheckpointMetadata, GroupIndexEntry, KeyedStateHandle, StateBlob,
};
use crate::checkpoint::{CheckpointError, JobId};
use crate::state::keygroup::KeyGroupRange;
use crate::state::snapshot::StateFormatError;
use location::DIR_KEY;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Name of the file that makes a directory a checkpoint or savepoint.
pub const METADATA_FILE: &str = "_metadata";
pub(crate) const METADATA_TEMP_FILE: &str = "_metadata.inprogress";
const CHECKPOINT_DIR_PREFIX: &str = "chk-";
const SHARED_DIR: &str = "shared";
const TASK_OWNED_DIR: &str = "taskowned";
const SAVEPOINT_DIR_PREFIX: &str = "savepoint-";

/// Every kind of path storage uses. [`path`] turns one into a [`Location`].
#[derive(Debug, Clone, Copy)]
pub enum PathKind<'a> {
    /// `<base>/<job-id>`, or `<base>` itself when `create_subdir` is false.
    JobDir {
        base: &'a Location,
        job_id: &'a JobId,
        create_subdir: bool,
    },
    /// `<job dir>/shared`.
    SharedDir { job_dir: &'a Location },
    /// `<job dir>/taskowned`.
    TaskOwnedDir { job_dir: &'a Location },
    /// `<job dir>/chk-<id>`.
    CheckpointDir { job_dir: &'a Location, id: u64 },
    /// `<checkpoint or savepoint dir>/_metadata`.
    Metadata { snapshot_dir: &'a Location },
    /// An exclusive state file: `<checkpoint or savepoint dir>/<name>`.
    ExclusiveFile {
        snapshot_dir: &'a Location,
        name: &'a str,
    },
    /// An incremental state file: `<job dir>/shared/<name>`.
    SharedFile {
        job_dir: &'a Location,
        name: &'a str,
    },
    /// `<base>/savepoint-<first 6 chars of the job id>-<random>` (docs/architecture.md#savepoints).
    SavepointDir {
        base: &'a Location,
        job_id: &'a JobId,
        random: &'a str,
    },
}

/// The one function that builds checkpoint and savepoint paths.
pub fn path(kind: PathKind<'_>) -> Location {
    match kind {
        PathKind::JobDir {
            base,
            job_id,
            create_subdir,
        } => {
            if create_subdir {
                base.join(&job_id.0)
            } else {
                base.clone()
            }
        }
        PathKind::SharedDir { job_dir } => job_dir.join(SHARED_DIR),
        PathKind::TaskOwnedDir { job_dir } => job_dir.join(TASK_OWNED_DIR),
        PathKind::CheckpointDir { job_dir, id } => {
            job_dir.join(&format!("{CHECKPOINT_DIR_PREFIX}{id}"))
        }
        PathKind::Metadata { snapshot_dir } => snapshot_dir.join(METADATA_FILE),
        PathKind::ExclusiveFile { snapshot_dir, name } => snapshot_dir.join(name),
        PathKind::SharedFile { job_dir, name } => job_dir.join(SHARED_DIR).join(name),
        PathKind::SavepointDir {
            base,
            job_id,
            random,
        } => {
            let short: String = job_id.0.chars().take(6).collect();
            base.join(&format!("{SAVEPOINT_DIR_PREFIX}{short}-{random}"))
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

/// A checkpoint directory setting as a location: `file:///x`, `file:/x`,
/// `file://localhost/x` or a plain path as a local path; `s3://bucket/prefix` as an object
/// prefix (`//` folded, no trailing `/`). Other schemes are refused with the supported ones.
pub fn parse_dir(value: &str) -> Result<Location, CheckpointError> {
    Location::parse_str(value)
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

/// Writes `bytes` to a new uuid-named file in `dir`, durably, and returns the name. The name
/// is fresh, so a reader can never see a half-written file under a name some `_metadata`
/// references: that `_metadata` is written only after this returns.
pub fn write_state_file(dir: &Location, bytes: Vec<u8>) -> Result<String, CheckpointError> {
    let name = state_file_name();
    dir.join(&name).storage().write_fresh(bytes)?;
    Ok(name)
}

/// A fresh state file's name (a random UUID, as Flink names them).
pub fn state_file_name() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Writes `_metadata` into `snapshot_dir` atomically and only if there is none
/// ([`Storage::write_once`]). An existing `_metadata` with other contents is
/// `AlreadyExists` and stays as it was.
pub fn write_metadata(snapshot_dir: &Location, bytes: &[u8]) -> Result<Location, CheckpointError> {
    let target = path(PathKind::Metadata { snapshot_dir });
    snapshot_dir.storage().create_dir()?;
    if target.storage().write_once(bytes)? {
        return Ok(target);
    }
    Err(CheckpointError::AlreadyExists(format!(
        "'{target}' already exists: a checkpoint's or savepoint's _metadata is written once and \
         never replaced (is another job writing to the same directory? give each job its own \
         {DIR_KEY}, or keep execution.checkpointing.create-subdir on)"
    )))
}

/// Lets `value` go on a thread of its own, for what takes long to free and need not be waited
/// for: a keyed snapshot (at 1M keys the compact copies it holds took 10 ms to free, a fifth
/// of a checkpoint) and deleted files still open (see `local`). If no thread can be started,
/// it goes here.
fn drop_aside<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("floe-drop".into())
        .spawn(move || drop(value));
}

/// Deletes a checkpoint directory: `_metadata` first (and that made durable), so a crash
/// half-way leaves a directory that is not a checkpoint rather than a checkpoint with files
/// missing. A directory already gone is fine.
pub fn delete_snapshot_dir(snapshot_dir: &Location) -> Result<(), CheckpointError> {
    let meta = path(PathKind::Metadata { snapshot_dir });
    if meta.storage().size()?.is_some() {
        meta.storage().delete()?;
        snapshot_dir.storage().sync_dir()?;
    }
    snapshot_dir.storage().delete_all()
}

/// Deletes a snapshot directory floe did not create itself (a savepoint being disposed of, a
/// claimed snapshot): `_metadata` first (from then on it is no snapshot, whatever else
/// fails), then the state files it lists (`names`, checked plain names: see
/// `metadata::decode`), then the directory if nothing else is left in it. Files floe did not
/// write stay. Returns how many files were deleted and whether the directory went.
///
/// On local disk everything is deleted through the directory opened without following
/// symlinks ([`nofollow::Dir`]): a directory replaced by a symlink makes the deletion fail,
/// never reach into another directory. An object store has no links to follow.
pub fn delete_listed(dir: &Location, names: &[String]) -> Result<(usize, bool), CheckpointError> {
    if let Some(local) = dir.as_local() {
        return delete_listed_local(local, names);
    }
    path(PathKind::Metadata { snapshot_dir: dir })
        .storage()
        .delete()?;
    for name in names {
        path(PathKind::ExclusiveFile {
            snapshot_dir: dir,
            name,
        })
        .storage()
        .delete()?;
    }
    Ok((names.len() + 1, dir.storage().remove_dir_if_empty()))
}

fn delete_listed_local(dir: &Path, names: &[String]) -> Result<(usize, bool), CheckpointError> {
    let ctx = || format!("cannot delete the snapshot '{}'", dir.display());
    let (parent, name) = split_dir(dir)
        .ok_or_else(|| CheckpointError::Refused(format!("{}: it names no directory", ctx())))?;
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

/// A checkpoint or savepoint read from storage: its `_metadata`, decoded and verified.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedSnapshot {
    /// The checkpoint or savepoint directory (exclusive files are relative to it).
    pub dir: Location,
    pub metadata_path: Location,
    /// Bytes of the `_metadata` file.
    pub metadata_len: u64,
    pub metadata: CheckpointMetadata,
}

impl LoadedSnapshot {
    /// The job directory, where `shared/` is: the parent of a `chk-<n>` directory.
    pub fn job_dir(&self) -> Location {
        self.dir
            .parent()
            .unwrap_or_else(|| Location::Local(PathBuf::from(".")))
    }

    /// The file a blob is in; `None` for an inline blob.
    pub fn blob_path(&self, blob: &StateBlob) -> Option<Location> {
        match &blob.location {
            BlobLocation::Inline(_) => None,
            BlobLocation::Exclusive(name) => Some(path(PathKind::ExclusiveFile {
                snapshot_dir: &self.dir,
                name,
            })),
            BlobLocation::Shared(name) => Some(path(PathKind::SharedFile {
                job_dir: &self.job_dir(),
                name,
            })),
        }
    }
}

fn not_found(given: &Path) -> CheckpointError {
    CheckpointError::NotFound(format!(
        "Cannot find checkpoint or savepoint file/directory '{}'",
        given.display()
    ))
}

fn no_metadata_in(given: &Path) -> CheckpointError {
    CheckpointError::NotFound(format!(
        "Cannot find meta data file '{METADATA_FILE}' in directory '{}'. Please try to load the \
         checkpoint/savepoint directly from the metadata file instead of the directory.",
        given.display()
    ))
}

/// Loads a checkpoint or savepoint from its directory or its `_metadata` file (Flink's
/// `-s` accepts both), with Flink's messages for a missing path and a directory without
/// `_metadata`.
pub fn load(given: impl AsRef<Path>) -> Result<LoadedSnapshot, CheckpointError> {
    let given = given.as_ref();
    load_from(Location::parse(given)?, given)
}

/// [`load`] of a location storage found itself (a listed checkpoint).
pub fn load_at(at: &Location) -> Result<LoadedSnapshot, CheckpointError> {
    load_from(at.clone(), &at.to_path_buf())
}

fn load_from(at: Location, given: &Path) -> Result<LoadedSnapshot, CheckpointError> {
    let (dir, metadata_path) = match at.storage().is_dir()? {
        None => return Err(not_found(given)),
        Some(true) => {
            let m = path(PathKind::Metadata { snapshot_dir: &at });
            (at, m)
        }
        Some(false) => {
            let dir = at
                .parent()
                .unwrap_or_else(|| Location::Local(PathBuf::from(".")));
            (dir, at)
        }
    };
    let Some(bytes) = metadata_path.storage().read()? else {
        return Err(no_metadata_in(given));
    };
    let metadata = metadata::decode(&bytes, &metadata_path.to_path_buf())?;
    Ok(LoadedSnapshot {
        dir,
        metadata_path,
        metadata_len: bytes.len() as u64,
        metadata,
    })
}

/// The complete checkpoints (`chk-<n>` with a `_metadata`) in a job directory, newest first.
/// A `chk-<n>` without `_metadata` was never completed and is not listed.
pub fn list_checkpoints(job_dir: &Location) -> Result<Vec<(u64, Location)>, CheckpointError> {
    let mut out = Vec::new();
    for (name, is_dir) in job_dir.storage().list()? {
        let Some(id) = checkpoint_id_of(&name).filter(|_| is_dir) else {
            continue;
        };
        let dir = job_dir.join(&name);
        if has_metadata(&dir)? {
            out.push((id, dir));
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.0));
    Ok(out)
}

/// Whether `dir` holds a `_metadata` file.
fn has_metadata(dir: &Location) -> Result<bool, CheckpointError> {
    let meta = path(PathKind::Metadata { snapshot_dir: dir });
    Ok(meta.storage().is_dir()? == Some(false))
}

/// The complete savepoints (`savepoint-*` holding a `_metadata`) directly under `root`, on
/// local disk or object storage. A root that does not exist holds none.
pub fn list_savepoints(root: &Location) -> Result<Vec<Location>, CheckpointError> {
    let entries = match root.storage().list() {
        Ok(entries) => entries,
        Err(CheckpointError::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (name, is_dir) in entries {
        let dir = root.join(&name);
        if is_dir && name.starts_with(SAVEPOINT_DIR_PREFIX) && has_metadata(&dir)? {
            out.push(dir);
        }
    }
    out.sort_by_key(Location::to_path_buf);
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
                "state file '{file}' of checkpoint '{}' (operator \"{}\", subtask {})",
                loaded.dir,
                op.operator_id,
                st.subtask + 1
            )
        };
        match file.storage().size() {
            Ok(Some(len)) if len == blob.size => {}
            Ok(Some(len)) => {
                return Err(CheckpointError::Corrupt(format!(
                    "{} is corrupt ({len} bytes, _metadata says {}: truncated or replaced)",
                    what(),
                    blob.size
                )))
            }
            Ok(None) => return Err(CheckpointError::NotFound(format!("{} is missing", what()))),
            Err(e) => {
                return Err(CheckpointError::Other(format!(
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
pub fn find_intact_older(snapshot_dir: &Location, job_id: Option<&JobId>) -> Option<Location> {
    let id = checkpoint_id_of(snapshot_dir.name()?)?;
    let job_dir = snapshot_dir.parent()?;
    list_checkpoints(&job_dir)
        .ok()?
        .into_iter()
        .filter(|(older, _)| *older < id)
        .find_map(|(_, dir)| {
            let loaded = load_at(&dir).ok()?;
            let same_job = job_id.is_none_or(|j| *j == loaded.metadata.job_id);
            let intact =
                same_job && verify_files(&loaded).is_ok() && verify_checksums(&loaded).is_ok();
            intact.then_some(dir)
        })
}

/// A checkpoint directory found by [`scan_checkpoints`], with its `_metadata` read.
pub type ScannedCheckpoint = (Location, Result<LoadedSnapshot, CheckpointError>);

/// Every complete checkpoint under a checkpoint root: `<base>/<job-id>/chk-<n>` and, for
/// `state.checkpoints.create-subdir: false`, `<base>/chk-<n>`. Each with its `_metadata`
/// decoded, or the error that stopped it.
pub fn scan_checkpoints(base: &Location) -> Result<Vec<ScannedCheckpoint>, CheckpointError> {
    let mut job_dirs = vec![base.clone()];
    for (name, is_dir) in base.storage().list()? {
        if is_dir && JobId::is_valid(&name) {
            job_dirs.push(base.join(&name));
        }
    }
    let mut out = Vec::new();
    for job_dir in job_dirs {
        for (_, dir) in list_checkpoints(&job_dir).unwrap_or_default() {
            let loaded = load_at(&dir);
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
const BLOB_HEADER_LEN: u64 = crate::state::snapshot::HEADER_LEN as u64;

/// Reads the key groups of `blob` that fall in `range`, and only those: the span they lie in
/// is read in one request, so a restore at another parallelism reads what it owns. Checks
/// the blob header and each group's crc32c. Errors name the checkpoint and the file.
pub fn read_groups(
    loaded: &LoadedSnapshot,
    blob: &StateBlob,
    range: KeyGroupRange,
) -> Result<Vec<(GroupIndexEntry, Vec<u8>)>, CheckpointError> {
    let wanted: Vec<&GroupIndexEntry> = blob
        .groups
        .iter()
        .filter(|g| range.contains(g.key_group))
        .collect();
    let file = loaded.blob_path(blob);
    let what = match &file {
        Some(p) => format!("state file '{p}' of checkpoint '{}'", loaded.dir),
        None => format!("inline state in '{}'", loaded.metadata_path),
    };
    let corrupt =
        |detail: String| CheckpointError::Corrupt(format!("{what} is corrupt ({detail})"));
    // Inline bytes are read where they are; a file's span is read once.
    let (span_start, span): (u64, Cow<'_, [u8]>) = match (&blob.location, &file) {
        (BlobLocation::Inline(bytes), _) => {
            check_blob_header(bytes).map_err(|e| corrupt(e.to_string()))?;
            (0, Cow::Borrowed(bytes))
        }
        (_, Some(file)) => {
            let (start, bytes) = read_file_span(file, blob.size, &wanted, &what)?;
            (start, Cow::Owned(bytes))
        }
        (_, None) => unreachable!("only inline blobs have no file"),
    };
    let mut out = Vec::with_capacity(wanted.len());
    for g in wanted {
        let at = g
            .offset
            .checked_sub(span_start)
            .and_then(|s| usize::try_from(s).ok());
        let end = at.and_then(|s| s.checked_add(usize::try_from(g.len).ok()?));
        let data = match (at, end) {
            (Some(s), Some(e)) if e <= span.len() => span[s..e].to_vec(),
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
    Ok(out)
}

/// Checks a state file's size and header, and reads the span `wanted` lies in (one request on
/// an object store): its start offset and its bytes.
fn read_file_span(
    file: &Location,
    size: u64,
    wanted: &[&GroupIndexEntry],
    what: &str,
) -> Result<(u64, Vec<u8>), CheckpointError> {
    let corrupt =
        |detail: String| CheckpointError::Corrupt(format!("{what} is corrupt ({detail})"));
    let store = file.storage();
    let len = store.size()?.ok_or_else(|| {
        CheckpointError::NotFound(format!(
            "{what} is missing; the checkpoint cannot be restored: restore from another \
             checkpoint or savepoint"
        ))
    })?;
    if len != size {
        return Err(corrupt(format!(
            "{len} bytes, _metadata says {size}: truncated or replaced"
        )));
    }
    let header = read_exact(store, 0, BLOB_HEADER_LEN, what)?;
    check_blob_header(&header).map_err(|e| corrupt(e.to_string()))?;
    for g in wanted {
        if g.offset.checked_add(g.len).is_none_or(|end| end > len) {
            return Err(corrupt(format!(
                "key group {} lies outside the file",
                g.key_group
            )));
        }
    }
    let start = wanted.iter().map(|g| g.offset).min().unwrap_or(0);
    let end = wanted.iter().map(|g| g.offset + g.len).max().unwrap_or(0);
    Ok((start, read_exact(store, start, end - start, what)?))
}

/// Bytes `offset..offset + len`; fewer is a truncated file.
fn read_exact(
    store: &dyn Storage,
    offset: u64,
    len: u64,
    what: &str,
) -> Result<Vec<u8>, CheckpointError> {
    let bytes = store.read_range(offset, len)?;
    if (bytes.len() as u64) < len {
        return Err(CheckpointError::Corrupt(format!("{what} is truncated")));
    }
    Ok(bytes)
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

/// Whether `dir` is a job's checkpoint directory rather than a checkpoint: no `_metadata` in
/// it, and a `shared/` or some `chk-<n>` below it.
pub fn looks_like_job_dir(dir: &Location) -> Result<bool, CheckpointError> {
    if dir.storage().is_dir()? != Some(true) {
        return Ok(false);
    }
    let children = dir.storage().list()?;
    let has_metadata = children.iter().any(|(n, d)| !d && n == METADATA_FILE);
    let has_checkpoints = children
        .iter()
        .any(|(n, d)| *d && (n == SHARED_DIR || checkpoint_id_of(n).is_some()));
    Ok(!has_metadata && has_checkpoints)
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
