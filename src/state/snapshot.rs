//! Encoding of keyed state snapshots: full and incremental (delta) blobs indexed by key group.
//!
//! CONTRACT (signatures fixed; bodies to be written by the state engineer):
//! - A blob starts with an 8-byte header: magic `b"FLKS"` then the format version (u32 BE).
//! - After it, one run of bytes per key group; `GroupIndexEntry { key_group, offset, len,
//!   crc32c, entries }` gives each group's place (offset from the blob's start), its crc32c
//!   and its entry count. Storage reads only the groups a restore needs and checks the crc.
//! - A delta holds, per group, the keys changed since the store's previous snapshot and the
//!   keys deleted (tombstones).

use crate::checkpoint::metadata::GroupIndexEntry;
use crate::state::keyed::{KeyedSnapshot, KeyedStore};
use crate::state::keygroup::KeyGroupRange;

/// Magic at the start of every keyed state blob.
pub const BLOB_MAGIC: [u8; 4] = *b"FLKS";
/// Version of the blob format this build writes.
pub const BLOB_VERSION: u32 = 1;

/// An encoded blob and its key-group index.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedBlob {
    pub bytes: Vec<u8>,
    pub groups: Vec<GroupIndexEntry>,
}

/// Why state bytes could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StateFormatError {
    #[error("not a floe keyed state blob (bad magic)")]
    BadMagic,
    #[error(
        "keyed state format version {0} is not supported by this floe (newest: {BLOB_VERSION})"
    )]
    UnsupportedVersion(u32),
    #[error("key group {key_group}: checksum mismatch (the file is corrupt)")]
    Checksum { key_group: u32 },
    #[error("key group {key_group}: truncated or malformed data")]
    Malformed { key_group: u32 },
}

/// One decoded key-group run: `(key, Some(value))` for a live key, `(key, None)` for a
/// deletion (deltas only).
pub type GroupEntries = Vec<(Vec<u8>, Option<u64>)>;

/// Every key of the snapshot.
pub fn encode_full(_snapshot: &KeyedSnapshot) -> EncodedBlob {
    todo!("state engineer")
}

/// The keys changed (and deleted) since the previous snapshot of the same store.
pub fn encode_delta(_snapshot: &KeyedSnapshot) -> EncodedBlob {
    todo!("state engineer")
}

/// Checks the 8-byte header of a blob.
pub fn check_header(_bytes: &[u8]) -> Result<(), StateFormatError> {
    todo!("state engineer")
}

/// Decodes one group's bytes (already cut out of the blob by `entry`), checking its crc32c.
pub fn decode_group(
    _group_bytes: &[u8],
    _entry: &GroupIndexEntry,
) -> Result<GroupEntries, StateFormatError> {
    todo!("state engineer")
}

/// Builds the store of a subtask owning `range` from decoded groups, applied in order (a
/// full blob's groups first, then each delta's), so later entries and deletions win.
pub fn restore_store(
    _range: KeyGroupRange,
    _max_parallelism: u32,
    _groups: impl IntoIterator<Item = (u32, GroupEntries)>,
) -> KeyedStore {
    todo!("state engineer")
}
