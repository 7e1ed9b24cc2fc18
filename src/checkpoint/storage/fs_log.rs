//! A recording hook: the file-system operations local checkpoint storage performs, in the
//! order it performs them, for the power-loss test (`tests/checkpoint_power_loss.rs`), which
//! replays every state a power cut could leave. Off unless a test turns it on; then each
//! operation costs one relaxed atomic load. Object storage is not recorded (no directories,
//! and an object is durable once its PUT returned).
//!
//! Recording is process-wide (checkpoints are written on blocking threads): a test keeps the
//! operations under its own directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// One operation, with the paths it touched. Each is recorded after it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsOp {
    /// A new, empty directory (one per level `create_dir_all` created).
    CreateDir(PathBuf),
    /// A new, empty file (or an existing one truncated: the temp file of `_metadata`).
    CreateFile(PathBuf),
    /// `bytes` written to the file at `path` (from offset 0, after its creation).
    Write {
        path: PathBuf,
        bytes: Vec<u8>,
    },
    /// fsync of a file's contents.
    SyncFile(PathBuf),
    /// fsync of a directory: the names created, renamed or removed in it are durable.
    SyncDir(PathBuf),
    /// A second name `to` for the file `from`.
    HardLink {
        from: PathBuf,
        to: PathBuf,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
    },
    /// A file's name removed.
    RemoveFile(PathBuf),
    /// A directory and everything under it removed.
    RemoveDirAll(PathBuf),
    /// Not a file operation: a point the test marks in the sequence ("checkpoint 2 complete").
    Mark(String),
}

static ON: AtomicBool = AtomicBool::new(false);
static LOG: Mutex<Vec<FsOp>> = Mutex::new(Vec::new());

/// Starts recording (clearing what was recorded before).
pub fn start() {
    lock().clear();
    ON.store(true, Ordering::SeqCst);
}

/// Stops recording and returns every operation recorded since [`start`].
pub fn stop() -> Vec<FsOp> {
    ON.store(false, Ordering::SeqCst);
    std::mem::take(&mut *lock())
}

/// Whether operations are being recorded (callers skip the work of describing one if not).
pub fn recording() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Adds a [`FsOp::Mark`] to the record.
pub fn mark(what: impl Into<String>) {
    record(|| FsOp::Mark(what.into()));
}

/// Records the operation `op` describes, if recording.
pub(crate) fn record(op: impl FnOnce() -> FsOp) {
    if recording() {
        let op = op();
        lock().push(op);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<FsOp>> {
    LOG.lock().unwrap_or_else(|p| p.into_inner())
}
