//! Checkpoint storage on local disk: the [`Storage`] of a `PathBuf`. Every name created,
//! renamed or deleted is made durable by an fsync of its directory, and every operation is
//! recorded for the power-loss test ([`fs_log`]).

use super::backend::{FreshFile, Storage};
use super::fs_log::{self, FsOp};
use crate::checkpoint::CheckpointError;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The suffix of the temp file [`Storage::write_once`] writes before linking it into place.
pub(crate) const TEMP_SUFFIX: &str = ".inprogress";

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> CheckpointError {
    move |source| CheckpointError::Io { context, source }
}

/// An I/O error, or `NotFound` when the file or directory is not there.
fn io_or_missing(context: String) -> impl FnOnce(std::io::Error) -> CheckpointError {
    move |source| match source.kind() {
        ErrorKind::NotFound => CheckpointError::NotFound(format!("{context}: {source}")),
        _ => CheckpointError::Io { context, source },
    }
}

impl Storage for PathBuf {
    fn read(&self) -> Result<Option<Vec<u8>>, CheckpointError> {
        match fs::read(self) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("cannot read '{}'", self.display()))(e)),
        }
    }

    fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, CheckpointError> {
        let ctx = || format!("cannot read '{}'", self.display());
        let mut f = File::open(self).map_err(io_or_missing(ctx()))?;
        f.seek(SeekFrom::Start(offset)).map_err(io_err(ctx()))?;
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        f.take(len).read_to_end(&mut out).map_err(io_err(ctx()))?;
        Ok(out)
    }

    fn size(&self) -> Result<Option<u64>, CheckpointError> {
        match fs::metadata(self) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("cannot read '{}'", self.display()))(e)),
        }
    }

    fn is_dir(&self) -> Result<Option<bool>, CheckpointError> {
        match fs::metadata(self) {
            Ok(m) => Ok(Some(m.is_dir())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("cannot read '{}'", self.display()))(e)),
        }
    }

    fn write_fresh(&self, bytes: Vec<u8>) -> Result<(), CheckpointError> {
        let mut f = self.create_fresh()?;
        f.write(&bytes)?;
        f.finish()
    }

    fn create_fresh(&self) -> Result<Box<dyn FreshFile>, CheckpointError> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(self)
            .map_err(io_err(fresh_context(self)))?;
        fs_log::record(|| FsOp::CreateFile(self.clone()));
        Ok(Box::new(LocalFresh {
            path: self.clone(),
            file,
            written: 0,
            started: 0,
        }))
    }

    /// Temp file, write, fsync, hard link to the name (which fails when it exists), fsync of
    /// the directory. Before the link a crash leaves only the temp file (readers ignore it).
    fn write_once(&self, bytes: &[u8]) -> Result<bool, CheckpointError> {
        let mut temp = self.clone().into_os_string();
        temp.push(TEMP_SUFFIX);
        let temp = PathBuf::from(temp);
        write_synced(&temp, bytes)?;
        let outcome = link_into_place(&temp, self, bytes);
        if fs::remove_file(&temp).is_ok() {
            fs_log::record(|| FsOp::RemoveFile(temp.clone()));
        }
        if outcome? {
            parent_of(self).sync_dir()?;
            return Ok(true);
        }
        Ok(false)
    }

    fn list(&self) -> Result<Vec<(String, bool)>, CheckpointError> {
        let ctx = || format!("cannot list the directory '{}'", self.display());
        let entries = fs::read_dir(self).map_err(io_or_missing(ctx()))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(ctx()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue; // floe writes only UTF-8 names; anything else is not floe's
            };
            out.push((name, entry.file_type().is_ok_and(|t| t.is_dir())));
        }
        Ok(out)
    }

    fn has_children(&self) -> Result<bool, CheckpointError> {
        let ctx = || format!("cannot list the directory '{}'", self.display());
        Ok(fs::read_dir(self).map_err(io_err(ctx()))?.next().is_some())
    }

    fn delete(&self) -> Result<(), CheckpointError> {
        let file = fs::symlink_metadata(self).is_ok_and(|m| m.is_file());
        let held = hold_open(file.then(|| self.clone()));
        let outcome = removal(self, fs::remove_file(self), FsOp::RemoveFile);
        close_aside(held);
        outcome
    }

    fn delete_all(&self) -> Result<(), CheckpointError> {
        let files = fs::read_dir(self).into_iter().flatten().flatten();
        let held = hold_open(files.filter_map(|e| {
            let file = e.file_type().is_ok_and(|t| t.is_file());
            file.then(|| e.path())
        }));
        let outcome = removal(self, fs::remove_dir_all(self), FsOp::RemoveDirAll);
        close_aside(held);
        outcome
    }

    fn remove_dir_if_empty(&self) -> bool {
        fs::remove_dir(self).is_ok()
    }

    /// The parent of each level created is fsynced, or a power loss could take a `chk-<n>`
    /// directory away with the `_metadata` fsynced inside it, after the sinks committed on
    /// its completion.
    fn create_dir(&self) -> Result<(), CheckpointError> {
        let created = missing_levels(self);
        fs::create_dir_all(self).map_err(io_err(format!(
            "cannot create checkpoint directory '{}' (check that {} is writable)",
            self.display(),
            super::location::DIR_KEY
        )))?;
        for level in &created {
            fs_log::record(|| FsOp::CreateDir(level.clone()));
        }
        for parent in created.iter().filter_map(|level| level.parent()) {
            parent.to_path_buf().sync_dir()?;
        }
        Ok(())
    }

    fn sync_dir(&self) -> Result<(), CheckpointError> {
        File::open(self)
            .and_then(|d| d.sync_all())
            .map_err(io_err(format!(
                "cannot fsync directory '{}'",
                self.display()
            )))?;
        fs_log::record(|| FsOp::SyncDir(self.clone()));
        Ok(())
    }
}

/// `paths` opened for reading, those that can be, to be closed only after their names are
/// removed: the kernel frees a file's cached pages at its last close, not at the unlink, and
/// for a 24 MB state file that took 8 ms, which the completion of the checkpoint that
/// subsumed it waited for. Nothing is read. Callers pass plain files only; should one be
/// swapped for a link or a FIFO meanwhile, it is neither followed nor waited on. At most
/// [`HOLD_MAX`] are held (a floe checkpoint has one file per keyed subtask): a directory of
/// thousands of files must not take the descriptors other work needs meanwhile.
fn hold_open(paths: impl IntoIterator<Item = PathBuf>) -> Vec<File> {
    use std::os::unix::fs::OpenOptionsExt;
    paths
        .into_iter()
        .take(HOLD_MAX)
        .filter_map(|p| {
            File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(p)
                .ok()
        })
        .collect()
}

/// The most files one deletion holds open ([`hold_open`]); the rest are deleted as usual.
const HOLD_MAX: usize = 64;

/// Closes `held` on a thread of its own (none is started for nothing).
fn close_aside(held: Vec<File>) {
    #[cfg(test)]
    let Some(held) = HELD.with(|h| match &mut *h.borrow_mut() {
        Some(kept) => {
            kept.extend(held);
            None
        }
        None => Some(held),
    }) else {
        return;
    };
    if !held.is_empty() {
        super::drop_aside(held);
    }
}

#[cfg(test)]
thread_local! {
    /// When set, deleted files still open are kept here, not closed (tests: were they held?).
    pub(super) static HELD: std::cell::RefCell<Option<Vec<File>>> =
        const { std::cell::RefCell::new(None) };
}

/// The outcome of removing `path`: recorded as `op` when it was removed, fine when there was
/// nothing to remove.
fn removal(
    path: &Path,
    outcome: std::io::Result<()>,
    op: fn(PathBuf) -> FsOp,
) -> Result<(), CheckpointError> {
    match outcome {
        Ok(()) => {
            fs_log::record(|| op(path.to_path_buf()));
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(format!("cannot delete '{}'", path.display()))(e)),
    }
}

fn fresh_context(path: &Path) -> String {
    format!("cannot write state file '{}'", path.display())
}

/// A new local file being written ([`Storage::create_fresh`]).
struct LocalFresh {
    path: PathBuf,
    file: File,
    /// Bytes written, and how many of them the disk was told to write ([`FreshFile::write_back`]).
    written: u64,
    started: u64,
}

impl FreshFile for LocalFresh {
    fn write(&mut self, bytes: &[u8]) -> Result<(), CheckpointError> {
        self.file
            .write_all(bytes)
            .map_err(io_err(fresh_context(&self.path)))?;
        self.written += bytes.len() as u64;
        fs_log::record(|| FsOp::Write {
            path: self.path.clone(),
            bytes: bytes.to_vec(),
        });
        Ok(())
    }

    /// Starts the disk writing what is written so far and returns without waiting for it:
    /// the writer goes on copying the next pieces while the disk works, and the final fsync
    /// waits for whatever is left (and reports any error). A `sync_data` here stopped the
    /// writer for each few MiB, the encoder waited on the writer, and a 24 MB state file took
    /// 32-47 ms to encode where 15-22 ms of CPU do it.
    #[cfg(target_os = "linux")]
    fn write_back(&mut self) -> Result<(), CheckpointError> {
        use std::os::fd::AsRawFd;
        let (from, len) = (self.started, self.written - self.started);
        if len == 0 {
            return Ok(()); // (a length of 0 would mean "to the file's end")
        }
        self.started = self.written;
        // Only advice to the kernel: where it fails (a file system without it), the final
        // fsync does the whole work, so its result is not looked at.
        // SAFETY: `sync_file_range` only reads its arguments, and the descriptor is this
        // open file's for the length of the call.
        #[allow(unsafe_code)]
        let _ = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                from as _,
                len as _,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn write_back(&mut self) -> Result<(), CheckpointError> {
        self.file
            .sync_data()
            .map_err(io_err(fresh_context(&self.path)))
    }

    /// fsync of the file, then of the directory entry that names it.
    fn finish(self: Box<Self>) -> Result<(), CheckpointError> {
        self.file
            .sync_all()
            .map_err(io_err(fresh_context(&self.path)))?;
        fs_log::record(|| FsOp::SyncFile(self.path.clone()));
        parent_of(&self.path).sync_dir()
    }
}

/// The directory holding `file` (`.` for a bare name).
fn parent_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates (or truncates) `file` with `bytes`, fsynced.
fn write_synced(file: &PathBuf, bytes: &[u8]) -> Result<(), CheckpointError> {
    let ctx = || format!("cannot write '{}'", file.display());
    let mut f = File::create(file).map_err(io_err(ctx()))?;
    fs_log::record(|| FsOp::CreateFile(file.clone()));
    f.write_all(bytes).map_err(io_err(ctx()))?;
    fs_log::record(|| FsOp::Write {
        path: file.clone(),
        bytes: bytes.to_vec(),
    });
    f.sync_all().map_err(io_err(ctx()))?;
    fs_log::record(|| FsOp::SyncFile(file.clone()));
    Ok(())
}

/// Gives `temp` the name `target` unless `target` exists: `Ok(false)` when it does with other
/// contents than `bytes`.
fn link_into_place(
    temp: &PathBuf,
    target: &PathBuf,
    bytes: &[u8],
) -> Result<bool, CheckpointError> {
    match fs::hard_link(temp, target) {
        Ok(()) => {
            fs_log::record(|| FsOp::HardLink {
                from: temp.clone(),
                to: target.clone(),
            });
            Ok(true)
        }
        // The same bytes: a retry of a write that succeeded.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            Ok(fs::read(target).is_ok_and(|existing| existing == bytes))
        }
        // A file system without hard links: check, then rename (not atomic against another
        // writer, which the job-id subdirectory rules out).
        Err(_) if target.exists() => Ok(false),
        Err(_) => fs::rename(temp, target)
            .map(|()| {
                fs_log::record(|| FsOp::Rename {
                    from: temp.clone(),
                    to: target.clone(),
                });
                true
            })
            .map_err(io_err(format!(
                "cannot rename '{}' to '{}'",
                temp.display(),
                target.display()
            ))),
    }
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

#[cfg(test)]
mod write_back_tests {
    use super::*;

    /// Each write-back covers what was written since the one before, and the finished file
    /// holds every piece.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_written_back_between_pieces_holds_every_piece() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let mut f = LocalFresh {
            path: path.clone(),
            file: File::create(&path).unwrap(),
            written: 0,
            started: 0,
        };
        let pieces: Vec<Vec<u8>> = (0..4u8)
            .map(|i| vec![i; (1 << 20) + usize::from(i)])
            .collect();
        for p in &pieces {
            f.write(p).unwrap();
            f.write_back().unwrap();
            assert_eq!(f.started, f.written, "written back up to the end");
        }
        f.write_back().unwrap();
        assert_eq!(
            f.written,
            pieces.iter().map(|p| p.len() as u64).sum::<u64>()
        );
        Box::new(f).finish().unwrap();
        assert_eq!(fs::read(&path).unwrap(), pieces.concat());
    }
}
