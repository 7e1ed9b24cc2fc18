//! What checkpoint storage needs from a place it keeps files in, whatever the place is. Two
//! implementations: local disk (a `PathBuf`, [`super::local`]) and S3-compatible object stores
//! (an [`super::object::ObjectPath`]). [`super::Location::storage`] picks one; nothing else in
//! storage asks which it is.
//!
//! A "directory" is a directory on disk and a key prefix in a bucket (where it exists once
//! an object is under it, and creating or fsyncing it does nothing). Every method may block:
//! callers run on `spawn_blocking` threads or in CLI commands, never on a task thread.

use crate::checkpoint::CheckpointError;

/// A file [`Storage::create_fresh`] is writing: durable, with its directory entry, once
/// [`FreshFile::finish`] returns.
pub trait FreshFile: Send {
    fn write(&mut self, bytes: &[u8]) -> Result<(), CheckpointError>;
    /// Has the disk start on what was written so far (without waiting for it where the
    /// system allows), so that the final fsync of [`FreshFile::finish`] has little left to
    /// do. Nothing by default.
    fn write_back(&mut self) -> Result<(), CheckpointError> {
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<(), CheckpointError>;
}

/// One file or directory of checkpoint storage.
pub trait Storage {
    /// The whole file; `None` when there is none.
    fn read(&self) -> Result<Option<Vec<u8>>, CheckpointError>;
    /// Bytes `offset..offset + len` of the file (fewer when it ends before).
    fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, CheckpointError>;
    /// The file's size; `None` when there is none.
    fn size(&self) -> Result<Option<u64>, CheckpointError>;
    /// `Some(true)` for a directory, `Some(false)` for a file, `None` when nothing is there.
    fn is_dir(&self) -> Result<Option<bool>, CheckpointError>;
    /// Writes a file under a fresh name (no reader looks for it before this returns), made
    /// durable with its directory entry before this returns.
    fn write_fresh(&self, bytes: Vec<u8>) -> Result<(), CheckpointError>;
    /// [`Storage::write_fresh`] for bytes that come a piece at a time: a state file written
    /// while it is encoded, so the whole of it is never held in memory at once.
    fn create_fresh(&self) -> Result<Box<dyn FreshFile>, CheckpointError>;
    /// Creates the file with `bytes`, all or nothing, and only if there is none: `Ok(false)`
    /// when one is there with other contents. The same contents count as written (a retry
    /// whose first attempt succeeded). Durable when this returns `Ok(true)`.
    fn write_once(&self, bytes: &[u8]) -> Result<bool, CheckpointError>;
    /// The names directly in this directory, each with whether it is a directory.
    /// `CheckpointError::NotFound` when there is no such directory on disk; a prefix with
    /// nothing under it lists empty.
    fn list(&self) -> Result<Vec<(String, bool)>, CheckpointError>;
    /// Whether anything is in this directory.
    fn has_children(&self) -> Result<bool, CheckpointError>;
    /// Deletes the file; one already gone is fine.
    fn delete(&self) -> Result<(), CheckpointError>;
    /// Deletes the directory and everything in it; one already gone is fine.
    fn delete_all(&self) -> Result<(), CheckpointError>;
    /// Removes the directory if nothing is in it; whether it is gone.
    fn remove_dir_if_empty(&self) -> bool;
    /// Creates the directory and its parents, durably.
    fn create_dir(&self) -> Result<(), CheckpointError>;
    /// Makes the names created, renamed or deleted in this directory durable.
    fn sync_dir(&self) -> Result<(), CheckpointError>;
}
