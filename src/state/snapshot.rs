//! Encoding of keyed state snapshots: full and incremental (delta) blobs indexed by key group.
//!
//! Format (version 1):
//! - an 8-byte header: magic `b"FLKS"` then the format version (u32 BE);
//! - then one run of bytes per key group that has entries, in group order; a group without
//!   entries has no run and no index entry. `GroupIndexEntry { key_group, offset, len, crc32c,
//!   entries }` (kept in `_metadata`, not in the blob) gives each run's place (offset from the
//!   blob's start), the crc32c of its bytes and its entry count, so a restore reads only the
//!   groups it needs and checks each one;
//! - a run is its entries back to back. In the keyed store's format version 2 ([`KEYED_VALUES`]
//!   v2), each is `varint(key_len << 3 | fixed_value << 2 | wide_hash << 1 | deleted)`, the key
//!   bytes, the key's hash (the 32-bit Java `hashCode` it was spread from, u32 LE, or with
//!   `wide_hash` the table hash itself, u64 LE), then, unless deleted, the value (a varint, or
//!   with `fixed_value` u64 LE: values of 2^56 and up, such as negative numbers and floats'
//!   bits). A 7-byte word and a count under 2^14 take 13 or 14 bytes (24 in version 1).
//!   The hash is kept because the store cannot hash a key again without knowing its type
//!   (text, integer, boolean); the table hash is the hash code spread to 64 bits
//!   ([`crate::state::keygroup`]), fixed, so a change to it would need a new format version.
//!   Version 1 (checkpoints of floe before it, still read) was `varint(key_len << 1 |
//!   deleted)`, the key, the table hash (u64 LE) and, unless deleted, the value (u64 LE).
//!
//! A full blob has no deletions. A delta holds, per group, the keys changed since the store's
//! previous snapshot and the keys deleted (tombstones); [`restore_store`] applies a full blob's
//! groups and then each delta's in order, so later values and deletions win.
//!
//! Decoding never panics on bad bytes: a short blob, a run that does not match its index
//! entry, a bad varint, trailing bytes are [`StateFormatError`]s naming the key group. The
//! caller adds the file's name.

use crate::state::keyed::{DeltaBase, KeyedSnapshot, KeyedStateError, KeyedStore};
use crate::state::keygroup::{hash_code_of_table, table_of_hash_code, KeyGroupRange};
use crate::state::{BlobOut, KeyedRuns, KeyedStateSnapshot, StateFormat};
use serde::{Deserialize, Serialize};

pub use crate::state::EncodedBlob;

/// Where one key group's run is inside a blob; kept in `_metadata`, not in the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupIndexEntry {
    pub key_group: u32,
    pub offset: u64,
    pub len: u64,
    pub crc32c: u32,
    /// Entries (keys, and deletions in a delta) in the group.
    pub entries: u64,
}

/// The name of the keyed store's run format ([`KeyedStore`], what `key_by` keeps).
pub const KEYED_VALUES: &str = "keyed-values";
/// The version written: the run layout described at the top of this module. Runs of every
/// version up to it are read.
pub const KEYED_VALUES_VERSION: u32 = 2;

/// The keyed store's format, as written.
pub fn keyed_values_format() -> StateFormat {
    StateFormat::new(KEYED_VALUES, KEYED_VALUES_VERSION)
}

/// The keyed store's first format: what `_metadata` that names no format holds.
pub fn keyed_values_v1() -> StateFormat {
    StateFormat::new(KEYED_VALUES, 1)
}

/// Magic at the start of every keyed state blob.
pub const BLOB_MAGIC: [u8; 4] = *b"FLKS";
/// Version of the blob format this build writes.
pub const BLOB_VERSION: u32 = 1;
/// Bytes of the header (magic and version).
pub const HEADER_LEN: usize = 8;

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
    /// The blob is shorter than its header.
    #[error(
        "keyed state blob of {len} bytes is shorter than its {HEADER_LEN}-byte header (the file is truncated)"
    )]
    TooShort { len: usize },
    /// The index places a group past the end of the blob.
    #[error(
        "key group {key_group}: the index places it at bytes {offset}..{end}, but the blob has \
         only {blob_len} bytes (the file is truncated)"
    )]
    OutOfBounds {
        key_group: u32,
        offset: u64,
        end: u64,
        blob_len: usize,
    },
    /// A restore was handed a group the new subtask does not own.
    #[error(
        "bug: key group {key_group} handed to the restore of a subtask owning key groups {range}"
    )]
    GroupOutOfRange {
        key_group: u32,
        range: KeyGroupRange,
    },
    /// The restored state does not fit the store.
    #[error("cannot restore keyed state: {0}")]
    Store(#[from] KeyedStateError),
    /// State of another operator's format.
    #[error(transparent)]
    Format(#[from] crate::state::FormatMismatch),
}

/// One key-group run, checked (crc and structure) and kept as its bytes; iterate it with
/// [`GroupEntries::iter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntries {
    key_group: u32,
    bytes: Vec<u8>,
    count: u64,
    /// The format version the bytes are in.
    version: u32,
}

/// One decoded entry: `value` is `None` for a deletion (deltas only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedEntry<'a> {
    pub key: &'a [u8],
    /// The key's table hash ([`crate::state::keygroup::KeyHash::table`]).
    pub hash: u64,
    pub value: Option<u64>,
}

impl GroupEntries {
    pub fn key_group(&self) -> u32 {
        self.key_group
    }

    /// Number of entries (keys and deletions).
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries in the order they were written.
    pub fn iter(&self) -> impl Iterator<Item = DecodedEntry<'_>> + '_ {
        let mut pos = 0usize;
        let mut left = self.count;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            // Checked by `decode_group`: a failure here cannot happen; it ends the iteration
            // rather than panicking.
            parse_entry(&self.bytes, &mut pos, self.version)
        })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Values below this are written as varints (at most 8 bytes), others as their 8 bytes.
const VARINT_BELOW: u64 = 1 << 56;

/// One entry of a run (version 2, laid out as the module says).
fn put_entry(out: &mut Vec<u8>, key: &[u8], hash: u64, value: Option<u64>) {
    let code = hash_code_of_table(hash);
    let fixed = value.is_some_and(|v| v >= VARINT_BELOW);
    let head = ((key.len() as u64) << 3)
        | (fixed as u64) << 2
        | (code.is_none() as u64) << 1
        | value.is_none() as u64;
    put_varint(out, head);
    out.extend_from_slice(key);
    match code {
        Some(code) => out.extend_from_slice(&code.to_le_bytes()),
        None => out.extend_from_slice(&hash.to_le_bytes()),
    }
    match value {
        Some(v) if fixed => out.extend_from_slice(&v.to_le_bytes()),
        Some(v) => put_varint(out, v),
        None => {}
    }
}

/// [`put_entry`] of a present key whose first bytes `packed` holds zero-padded: a short key's
/// record is built with copies of fixed sizes, then appended whole and cut back to its length
/// (copies of the key's own length were calls, and took a third of the time).
#[inline(always)]
fn put_packed(out: &mut Vec<u8>, packed: &[u8; 8], key: &[u8], hash: u64, value: u64) {
    let n = key.len();
    let code = hash_code_of_table(hash);
    let (Some(code), true, true) = (code, n <= 8, value < VARINT_BELOW) else {
        return put_entry(out, key, hash, Some(value));
    };
    let mut rec = [0u8; 24];
    rec[0] = (n as u8) << 3;
    rec[1..9].copy_from_slice(packed);
    rec[1 + n..5 + n].copy_from_slice(&code.to_le_bytes());
    let (mut at, mut v) = (5 + n, value);
    while v >= 0x80 {
        rec[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    rec[at] = v as u8;
    let end = out.len() + at + 1;
    out.extend_from_slice(&rec);
    out.truncate(end);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        let bits = (b & 0x7f) as u64;
        if shift == 63 && bits > 1 {
            return None;
        }
        v |= bits << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn get_u64(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(*pos..*pos + 8)?.try_into().ok()?;
    *pos += 8;
    Some(u64::from_le_bytes(b))
}

fn get_u32(bytes: &[u8], pos: &mut usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(*pos..*pos + 4)?.try_into().ok()?;
    *pos += 4;
    Some(u32::from_le_bytes(b))
}

/// The key of `len` bytes at `*pos`, moving `pos` past it.
fn get_key<'a>(bytes: &'a [u8], pos: &mut usize, len: u64) -> Option<&'a [u8]> {
    let end = pos.checked_add(usize::try_from(len).ok()?)?;
    let key = bytes.get(*pos..end)?;
    *pos = end;
    Some(key)
}

/// The entry at `*pos` of a run in format `version`, moving `pos` past it; `None` if the bytes
/// end early or are malformed.
fn parse_entry<'a>(bytes: &'a [u8], pos: &mut usize, version: u32) -> Option<DecodedEntry<'a>> {
    let head = get_varint(bytes, pos)?;
    let deleted = head & 1 == 1;
    match version {
        1 => {
            let key = get_key(bytes, pos, head >> 1)?;
            let hash = get_u64(bytes, pos)?;
            let value = match deleted {
                true => None,
                false => Some(get_u64(bytes, pos)?),
            };
            return Some(DecodedEntry { key, hash, value });
        }
        2 => {}
        _ => return None,
    }
    let (wide, fixed) = (head & 2 != 0, head & 4 != 0);
    if deleted && fixed {
        return None;
    }
    let key = get_key(bytes, pos, head >> 3)?;
    let hash = match wide {
        true => get_u64(bytes, pos)?,
        false => table_of_hash_code(get_u32(bytes, pos)?),
    };
    let value = match (deleted, fixed) {
        (true, _) => None,
        (false, true) => Some(get_u64(bytes, pos)?),
        (false, false) => Some(get_varint(bytes, pos)?),
    };
    Some(DecodedEntry { key, hash, value })
}

/// A streamed blob is handed over in pieces of at least this many bytes (whole groups).
const PIECE: usize = 1 << 20;

/// The buffer a piece of at least `piece` bytes is made in: room for the group that ends it.
fn piece_buffer(piece: usize) -> usize {
    HEADER_LEN + piece.min(PIECE) * 5 / 4
}

/// Builds a blob group by group, in memory or handed to a [`BlobOut`] a piece at a time.
struct Writer<'o> {
    bytes: Vec<u8>,
    groups: Vec<GroupIndexEntry>,
    /// Where pieces go, and the smallest piece; `None`: the blob is kept whole.
    out: Option<(&'o mut dyn BlobOut, usize)>,
    /// Bytes handed over already (offsets count them).
    handed: u64,
}

impl<'o> Writer<'o> {
    fn new(capacity: usize) -> Writer<'o> {
        Writer::in_buffer(Vec::with_capacity(HEADER_LEN + capacity))
    }

    /// A writer starting the blob in `bytes` (empty).
    fn in_buffer(mut bytes: Vec<u8>) -> Writer<'o> {
        bytes.extend_from_slice(&BLOB_MAGIC);
        bytes.extend_from_slice(&BLOB_VERSION.to_be_bytes());
        Writer {
            bytes,
            groups: Vec::new(),
            out: None,
            handed: 0,
        }
    }

    /// A writer handing `out` pieces of at least `piece` bytes.
    fn streaming(out: &'o mut dyn BlobOut, piece: usize) -> Writer<'o> {
        let mut w = Writer::in_buffer(out.buffer(piece_buffer(piece)));
        w.out = Some((out, piece));
        w
    }

    /// Appends one group's entries as a run (nothing if there are none).
    fn group<'a>(
        &mut self,
        key_group: u32,
        entries: impl IntoIterator<Item = (&'a [u8], u64, Option<u64>)>,
    ) {
        let start = self.bytes.len();
        let mut count = 0u64;
        for (key, hash, value) in entries {
            put_entry(&mut self.bytes, key, hash, value);
            count += 1;
        }
        self.end_group(key_group, start, count);
    }

    /// Ends the run that began at `start` (nothing if it has no entries).
    fn end_group(&mut self, key_group: u32, start: usize, count: u64) {
        if count > 0 {
            self.index(key_group, start, count);
        }
    }

    /// Appends a run already encoded by its operator (`entries` counted by it).
    fn run(&mut self, key_group: u32, run: &[u8], entries: u64) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(run);
        self.index(key_group, start, entries);
    }

    /// Indexes the run from `start` to the end, then hands the bytes over if a piece is due.
    fn index(&mut self, key_group: u32, start: usize, entries: u64) {
        let run = &self.bytes[start..];
        self.groups.push(GroupIndexEntry {
            key_group,
            offset: self.handed + start as u64,
            len: run.len() as u64,
            crc32c: crc32c::crc32c(run),
            entries,
        });
        if let Some((out, piece)) = &mut self.out {
            if self.bytes.len() >= *piece {
                // The usual size, not this buffer's: a group bigger than a piece grew it.
                let next = out.buffer(piece_buffer(*piece));
                let full = std::mem::replace(&mut self.bytes, next);
                self.handed += full.len() as u64;
                out.write_piece(full);
            }
        }
    }

    /// The blob; streamed, its bytes were handed over and `bytes` is empty.
    fn finish(mut self) -> EncodedBlob {
        if let Some((out, _)) = &mut self.out {
            out.write_piece(std::mem::take(&mut self.bytes));
        }
        EncodedBlob {
            bytes: self.bytes,
            groups: self.groups,
        }
    }
}

/// Every key of the snapshot.
pub fn encode_full(snapshot: &KeyedSnapshot) -> EncodedBlob {
    // Short keys and small values dominate: about 1 + 8 + 4 + 2 bytes an entry.
    full_into(snapshot, Writer::new(snapshot.len() * 16))
}

/// The keys changed (and deleted) since the previous snapshot of the same store (see
/// [`KeyedSnapshot::delta_base`] for what it applies on).
pub fn encode_delta(snapshot: &KeyedSnapshot) -> EncodedBlob {
    delta_into(snapshot, Writer::new(snapshot.delta_len() * 16))
}

/// [`encode_full`] (`full`) or [`encode_delta`], handed to `out` in pieces of at least
/// `piece` bytes; returns where each group is.
pub fn encode_streaming(
    snapshot: &KeyedSnapshot,
    full: bool,
    out: &mut dyn BlobOut,
    piece: usize,
) -> Vec<GroupIndexEntry> {
    let w = Writer::streaming(out, piece);
    let blob = if full {
        full_into(snapshot, w)
    } else {
        delta_into(snapshot, w)
    };
    blob.groups
}

fn full_into(snapshot: &KeyedSnapshot, mut w: Writer<'_>) -> EncodedBlob {
    snapshot.for_each_group(|key_group, table| {
        let start = w.bytes.len();
        let mut count = 0u64;
        table.for_each_entry(|packed, key, hash, value| {
            put_packed(&mut w.bytes, packed, key, hash, value);
            count += 1;
        });
        w.end_group(key_group, start, count);
    });
    w.finish()
}

fn delta_into(snapshot: &KeyedSnapshot, mut w: Writer<'_>) -> EncodedBlob {
    snapshot.for_each_change_group(|key_group, changes| {
        w.group(key_group, changes.iter().map(|c| (c.key, c.hash, c.value)));
    });
    w.finish()
}

/// A blob of runs other operators encoded: `(key group, bytes, entries)` in group order. An
/// empty run is kept (in a delta it says the group became empty).
pub fn encode_runs(runs: impl IntoIterator<Item = (u32, Vec<u8>, u64)>) -> EncodedBlob {
    let mut w = Writer::new(0);
    for (key_group, bytes, entries) in runs {
        w.run(key_group, &bytes, entries);
    }
    w.finish()
}

impl KeyedStateSnapshot for KeyedSnapshot {
    fn format(&self) -> StateFormat {
        keyed_values_format()
    }

    fn range(&self) -> KeyGroupRange {
        self.range
    }

    fn sequence(&self) -> u64 {
        KeyedSnapshot::sequence(self)
    }

    fn delta_base(&self) -> DeltaBase {
        KeyedSnapshot::delta_base(self)
    }

    fn encode_full(&self) -> EncodedBlob {
        encode_full(self)
    }

    fn encode_delta(&self) -> EncodedBlob {
        encode_delta(self)
    }

    fn encode_into(&self, full: bool, out: &mut dyn BlobOut) -> Vec<GroupIndexEntry> {
        encode_streaming(self, full, out, PIECE)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The entries of one run of the keyed store's format `version`, checked.
pub fn decode_run(
    key_group: u32,
    run: &[u8],
    version: u32,
) -> Result<GroupEntries, StateFormatError> {
    let mut pos = 0usize;
    let mut count = 0u64;
    while pos < run.len() {
        if parse_entry(run, &mut pos, version).is_none() {
            return Err(StateFormatError::Malformed { key_group });
        }
        count += 1;
    }
    Ok(GroupEntries {
        key_group,
        bytes: run.to_vec(),
        count,
        version,
    })
}

/// A store's state as a restore hands it over: its runs, in its format (tests and tools).
pub fn runs_of(store: &mut KeyedStore) -> KeyedRuns {
    let blob = encode_full(&store.snapshot());
    let runs = blob
        .groups
        .iter()
        .map(|g| {
            let (s, e) = (g.offset as usize, (g.offset + g.len) as usize);
            (g.key_group, blob.bytes[s..e].to_vec())
        })
        .collect();
    KeyedRuns {
        format: keyed_values_format(),
        range: store.range(),
        max_parallelism: store.max_parallelism(),
        runs,
    }
}

/// The keyed store of a subtask from restored runs of the keyed store's format.
pub fn restore_keyed_values(runs: &KeyedRuns) -> Result<KeyedStore, StateFormatError> {
    runs.format.check(KEYED_VALUES, KEYED_VALUES_VERSION)?;
    let groups = runs
        .runs
        .iter()
        .map(|(g, bytes)| Ok((*g, decode_run(*g, bytes, runs.format.version)?)))
        .collect::<Result<Vec<_>, StateFormatError>>()?;
    restore_store(runs.range, runs.max_parallelism, groups)
}

/// Checks the 8-byte header of a blob.
pub fn check_header(bytes: &[u8]) -> Result<(), StateFormatError> {
    if bytes.len() < 4 || bytes[..4] != BLOB_MAGIC {
        return if bytes.len() < 4 && BLOB_MAGIC.starts_with(bytes) {
            Err(StateFormatError::TooShort { len: bytes.len() })
        } else {
            Err(StateFormatError::BadMagic)
        };
    }
    let Some(version) = bytes.get(4..HEADER_LEN) else {
        return Err(StateFormatError::TooShort { len: bytes.len() });
    };
    let version = u32::from_be_bytes([version[0], version[1], version[2], version[3]]);
    if version != BLOB_VERSION {
        return Err(StateFormatError::UnsupportedVersion(version));
    }
    Ok(())
}

/// The bytes of `entry`'s group inside a whole `blob`, bounds-checked against the index.
pub fn group_slice<'a>(
    blob: &'a [u8],
    entry: &GroupIndexEntry,
) -> Result<&'a [u8], StateFormatError> {
    let end = entry.offset.checked_add(entry.len);
    let out_of_bounds = || StateFormatError::OutOfBounds {
        key_group: entry.key_group,
        offset: entry.offset,
        end: end.unwrap_or(u64::MAX),
        blob_len: blob.len(),
    };
    if entry.offset < HEADER_LEN as u64 {
        return Err(StateFormatError::Malformed {
            key_group: entry.key_group,
        });
    }
    let start = usize::try_from(entry.offset).map_err(|_| out_of_bounds())?;
    let end = end
        .and_then(|e| usize::try_from(e).ok())
        .ok_or_else(out_of_bounds)?;
    blob.get(start..end).ok_or_else(out_of_bounds)
}

/// Decodes one group's bytes (already cut out of the blob by `entry`, in the format this floe
/// writes: tests and tools; a restore decodes by the version `_metadata` names, with
/// [`decode_run`]), checking its crc32c.
pub fn decode_group(
    group_bytes: &[u8],
    entry: &GroupIndexEntry,
) -> Result<GroupEntries, StateFormatError> {
    let version = KEYED_VALUES_VERSION;
    let key_group = entry.key_group;
    let malformed = StateFormatError::Malformed { key_group };
    if group_bytes.len() as u64 != entry.len {
        return Err(malformed);
    }
    if crc32c::crc32c(group_bytes) != entry.crc32c {
        return Err(StateFormatError::Checksum { key_group });
    }
    let mut pos = 0usize;
    for _ in 0..entry.entries {
        if parse_entry(group_bytes, &mut pos, version).is_none() {
            return Err(malformed);
        }
    }
    if pos != group_bytes.len() {
        return Err(malformed);
    }
    Ok(GroupEntries {
        key_group,
        bytes: group_bytes.to_vec(),
        count: entry.entries,
        version,
    })
}

/// Decodes the groups of a whole blob that lie in `wanted` (a restore at another parallelism
/// reads only its own groups), checking the header and each group's bounds and crc.
pub fn decode_blob(
    blob: &[u8],
    index: &[GroupIndexEntry],
    wanted: KeyGroupRange,
) -> Result<Vec<(u32, GroupEntries)>, StateFormatError> {
    check_header(blob)?;
    index
        .iter()
        .filter(|e| wanted.contains(e.key_group))
        .map(|e| Ok((e.key_group, decode_group(group_slice(blob, e)?, e)?)))
        .collect()
}

/// Builds the store of a subtask owning `range` from decoded groups, applied in order (a
/// full blob's groups first, then each delta's), so later entries and deletions win.
///
/// The restored state is the base of the store's next delta. A group outside `range` is an
/// error (the caller picks the groups a subtask owns).
pub fn restore_store(
    range: KeyGroupRange,
    max_parallelism: u32,
    groups: impl IntoIterator<Item = (u32, GroupEntries)>,
) -> Result<KeyedStore, StateFormatError> {
    let mut store = KeyedStore::new(range, max_parallelism);
    for (key_group, entries) in groups {
        if !range.contains(key_group) || key_group >= max_parallelism {
            return Err(StateFormatError::GroupOutOfRange { key_group, range });
        }
        for e in entries.iter() {
            store.apply_restored(key_group, e.key, e.hash, e.value)?;
        }
    }
    store.finish_restore();
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::keygroup::{hash_str, java_string_hash_code};

    fn store_with(keys: &[(&str, u64)]) -> KeyedStore {
        let mut s = KeyedStore::new(KeyGroupRange::for_subtask(0, 1, 128), 128);
        for (k, v) in keys {
            *s.get_or_insert(hash_str(k.as_bytes()), k.as_bytes(), 0)
                .unwrap() = *v;
        }
        s
    }

    /// Pieces handed to a [`BlobOut`], kept to compare, and the buffers it lent for them.
    #[derive(Default)]
    struct Pieces(Vec<Vec<u8>>, Vec<*const u8>);

    impl BlobOut for Pieces {
        fn write(&mut self, bytes: &[u8]) {
            panic!("a piece of {} bytes copied, not handed over", bytes.len());
        }

        fn buffer(&mut self, capacity: usize) -> Vec<u8> {
            let b = Vec::with_capacity(capacity);
            self.1.push(b.as_ptr());
            b
        }

        fn write_piece(&mut self, piece: Vec<u8>) {
            assert!(self.1.contains(&piece.as_ptr()), "a piece in a lent buffer");
            self.0.push(piece);
        }
    }

    /// A streamed encoding is the whole encoding cut into pieces of whole groups: the same
    /// bytes and the same index, full and delta. Each piece is made in a buffer the output
    /// lent and handed over whole (the checkpoint store lends buffers it wrote already).
    #[test]
    fn a_streamed_blob_is_the_whole_blob_in_pieces() {
        let keys: Vec<String> = (0..5000).map(|i| format!("key-{i}")).collect();
        let mut store = store_with(&keys.iter().map(|k| (k.as_str(), 1)).collect::<Vec<_>>());
        store.snapshot();
        for k in keys.iter().step_by(3) {
            *store
                .get_or_insert(hash_str(k.as_bytes()), k.as_bytes(), 0)
                .unwrap() += 1;
        }
        let snap = store.snapshot();
        for (full, whole) in [(true, encode_full(&snap)), (false, encode_delta(&snap))] {
            let mut out = Pieces::default();
            let groups = encode_streaming(&snap, full, &mut out, 4096);
            assert!(out.0.len() > 5, "several pieces: {}", out.0.len());
            assert!(out.0[..out.0.len() - 1].iter().all(|p| p.len() >= 4096));
            assert_eq!(out.0.concat(), whole.bytes, "full: {full}");
            assert_eq!(groups, whole.groups, "full: {full}");
        }
    }

    #[test]
    fn varints_round_trip_and_overlong_ones_are_refused() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut pos = 0;
            assert_eq!(get_varint(&b, &mut pos), Some(v));
            assert_eq!(pos, b.len());
        }
        let mut pos = 0;
        assert_eq!(get_varint(&[0xff; 11], &mut pos), None);
        let mut pos = 0;
        assert_eq!(get_varint(&[0x80], &mut pos), None);
    }

    #[test]
    fn a_group_run_is_laid_out_as_documented() {
        let mut s = store_with(&[("ab", 300)]);
        let blob = encode_full(&s.snapshot());
        let code = java_string_hash_code(b"ab") as u32;
        let mut want = b"FLKS\0\0\0\x01".to_vec();
        want.push(2 << 3);
        want.extend_from_slice(b"ab");
        want.extend_from_slice(&code.to_le_bytes());
        want.extend_from_slice(&[0xac, 0x02]);
        assert_eq!(blob.bytes, want);
        let g = hash_str(b"ab").key_group(128);
        assert_eq!(
            blob.groups,
            [GroupIndexEntry {
                key_group: g,
                offset: 8,
                len: 9,
                crc32c: crc32c::crc32c(&want[8..]),
                entries: 1
            }]
        );
    }

    /// Every kind of entry of version 2 (a wide hash, a fixed value, a deletion, a long key)
    /// is read back as written, and a deletion claiming a fixed value is refused.
    #[test]
    fn every_kind_of_entry_round_trips() {
        let entries: [(&[u8], u64, Option<u64>); 6] = [
            (b"ab", hash_str(b"ab").table, Some(5)),
            (b"ab", hash_str(b"ab").table, Some(u64::MAX)),
            (b"wide", 1 << 40 | 7, Some((1 << 56) - 1)),
            (b"gone", hash_str(b"gone").table, None),
            (b"gone-wide", u64::MAX, None),
            (&[b'k'; 300], hash_str(&[b'k'; 300]).table, Some(1 << 56)),
        ];
        assert_eq!(hash_code_of_table(1 << 40 | 7), None);
        let mut run = Vec::new();
        for (k, h, v) in entries {
            put_entry(&mut run, k, h, v);
        }
        let decoded = decode_run(3, &run, 2).unwrap();
        let got: Vec<_> = decoded.iter().map(|e| (e.key, e.hash, e.value)).collect();
        assert_eq!(got, entries);
        assert_eq!(run[0], 2 << 3, "a hash code and a varint value: no flag");
        // A value never takes more than its 8 bytes: varints up to 2^56, fixed from there.
        for (v, len) in [(0, 1), (127, 1), (128, 2), ((1 << 56) - 1, 8), (1 << 56, 8)] {
            let mut one = Vec::new();
            put_entry(&mut one, b"ab", hash_str(b"ab").table, Some(v));
            assert_eq!(one.len(), 1 + 2 + 4 + len, "value {v}");
        }
        assert!(matches!(
            decode_run(
                3,
                &[(4 << 3) | 0b101, b'g', b'o', b'n', b'e', 0, 0, 0, 0],
                2
            ),
            Err(StateFormatError::Malformed { key_group: 3 })
        ));
    }

    /// Runs of version 1 (older checkpoints) are still read, and restore the same store.
    #[test]
    fn a_run_of_version_1_is_read() {
        let h = hash_str(b"ab").table;
        let mut run = vec![2 << 1];
        run.extend_from_slice(b"ab");
        run.extend_from_slice(&h.to_le_bytes());
        run.extend_from_slice(&5u64.to_le_bytes());
        run.push((1 << 1) | 1);
        run.push(b'x');
        run.extend_from_slice(&hash_str(b"x").table.to_le_bytes());
        let g = decode_run(7, &run, 1).unwrap();
        let got: Vec<_> = g.iter().map(|e| (e.key, e.hash, e.value)).collect();
        assert_eq!(
            got,
            [
                (&b"ab"[..], h, Some(5)),
                (&b"x"[..], hash_str(b"x").table, None)
            ]
        );
        assert!(decode_run(7, &run, 2).is_err(), "not a version 2 run");
        assert!(decode_run(7, &run, 3).is_err(), "no version 3");
        let runs = KeyedRuns {
            format: keyed_values_v1(),
            range: KeyGroupRange::for_subtask(0, 1, 128),
            max_parallelism: 128,
            runs: vec![(hash_str(b"ab").key_group(128), run[..19].to_vec())],
        };
        let store = restore_keyed_values(&runs).unwrap();
        let kept: Vec<(Vec<u8>, u64)> = store
            .groups()
            .flat_map(|(_, t)| t.iter().map(|(k, v)| (k.to_vec(), v)).collect::<Vec<_>>())
            .collect();
        assert_eq!(kept, [(b"ab".to_vec(), 5)]);
    }

    /// A version newer than this floe's is refused by its name, not misread.
    #[test]
    fn a_newer_version_is_refused_by_name() {
        let runs = KeyedRuns {
            format: StateFormat::new(KEYED_VALUES, KEYED_VALUES_VERSION + 1),
            range: KeyGroupRange::for_subtask(0, 1, 128),
            max_parallelism: 128,
            runs: Vec::new(),
        };
        let e = restore_keyed_values(&runs).unwrap_err().to_string();
        assert!(e.contains("\"keyed-values v3\""), "{e}");
        assert!(e.contains("\"keyed-values\" v1..=2"), "{e}");
        assert!(e.contains("a newer floe"), "{e}");
    }

    /// The fast path for short keys writes what the general one does, for keys of every
    /// length across the inline limit (the empty key, 1..=8 bytes inline, longer in the arena).
    #[test]
    fn a_full_blob_encodes_keys_of_every_length_alike() {
        let keys: Vec<String> = (0..=20)
            .flat_map(|n| (0..40).map(move |i| format!("{i:0n$}").chars().take(n).collect()))
            .collect();
        let pairs: Vec<(&str, u64)> = keys
            .iter()
            .map(|k| (k.as_str(), k.len() as u64 * 1000 + 7))
            .collect();
        let mut s = store_with(&pairs);
        let snap = s.snapshot();
        let blob = encode_full(&snap);
        let mut w = Writer::new(0);
        snap.for_each_group(|key_group, table| {
            w.group(key_group, table.entries().map(|(k, h, v)| (k, h, Some(v))));
        });
        let general = w.finish();
        assert_eq!(blob.bytes, general.bytes);
        assert_eq!(blob.groups, general.groups);
        let mut found: Vec<(Vec<u8>, u64)> = decode_blob(&blob.bytes, &blob.groups, snap.range())
            .unwrap()
            .iter()
            .flat_map(|(_, g)| {
                g.iter()
                    .map(|e| (e.key.to_vec(), e.value.unwrap()))
                    .collect::<Vec<_>>()
            })
            .collect();
        found.sort();
        let mut want: Vec<(Vec<u8>, u64)> = pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), *v))
            .collect();
        want.sort();
        want.dedup();
        assert_eq!(found, want);
    }

    #[test]
    fn header_errors() {
        assert!(matches!(
            check_header(b""),
            Err(StateFormatError::TooShort { len: 0 })
        ));
        assert!(matches!(
            check_header(b"FLK"),
            Err(StateFormatError::TooShort { len: 3 })
        ));
        assert!(matches!(
            check_header(b"FLKS\0\0"),
            Err(StateFormatError::TooShort { len: 6 })
        ));
        assert!(matches!(
            check_header(b"PK\x03\x04\0\0\0\x01"),
            Err(StateFormatError::BadMagic)
        ));
        assert!(matches!(
            check_header(b"FLKS\0\0\0\x09"),
            Err(StateFormatError::UnsupportedVersion(9))
        ));
        assert!(check_header(b"FLKS\0\0\0\x01").is_ok());
    }

    #[test]
    fn a_group_outside_the_range_is_an_error() {
        let mut s = store_with(&[("a", 1)]);
        let blob = encode_full(&s.snapshot());
        let groups = decode_blob(
            &blob.bytes,
            &blob.groups,
            KeyGroupRange { start: 0, end: 127 },
        )
        .unwrap();
        // "a" is in group 81; subtask 0 of 2 owns 0..=63.
        let err = restore_store(KeyGroupRange::for_subtask(0, 2, 128), 128, groups).unwrap_err();
        assert!(matches!(
            err,
            StateFormatError::GroupOutOfRange { key_group: 81, .. }
        ));
        assert!(err.to_string().contains("[0, 63]"), "{err}");
    }
}

/// Where a full checkpoint of 1M keys spends its time, phase by phase.
/// `cargo test --release --lib state::snapshot::timing -- --ignored --nocapture`
#[cfg(test)]
mod timing {
    use super::*;
    use crate::state::keygroup::hash_str;
    use std::io::Write;
    use std::time::Instant;

    fn rss_mb() -> String {
        let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        s.lines()
            .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    #[ignore = "timing; run by hand in release"]
    fn full_checkpoint_phases_with_a_million_keys() {
        let mut store = KeyedStore::new(KeyGroupRange::for_subtask(0, 1, 128), 128);
        for i in 0..1_000_000u64 {
            let k = format!("w{i}");
            *store
                .get_or_insert(hash_str(k.as_bytes()), k.as_bytes(), 0)
                .unwrap() += 1;
        }
        println!("filled: {}", rss_mb());
        for round in 0..3 {
            let t = Instant::now();
            let snap = store.snapshot();
            let t_snap = t.elapsed();
            let t = Instant::now();
            let blob = encode_full(&snap);
            let t_enc = t.elapsed();
            let n = blob.bytes.len();
            let dir = tempfile::tempdir().unwrap();
            let t = Instant::now();
            let mut f = std::fs::File::create(dir.path().join("x")).unwrap();
            f.write_all(&blob.bytes).unwrap();
            let t_write = t.elapsed();
            f.sync_all().unwrap();
            let t_sync = t.elapsed();
            let t = Instant::now();
            for i in 0..1_000_000u64 {
                let k = format!("w{}", (i * 7919) % 1_000_000);
                *store
                    .get_or_insert(hash_str(k.as_bytes()), k.as_bytes(), 0)
                    .unwrap() += 1;
            }
            let t_upd = t.elapsed();
            println!("after updates, snapshot held: {}", rss_mb());
            drop(snap);
            drop(blob);
            println!("dropped: {}", rss_mb());
            println!(
                "round {round}: snapshot {t_snap:?} encode {t_enc:?} ({} MB) write {t_write:?} \
                 write+fsync {t_sync:?}; 1M updates after {t_upd:?}",
                n / 1_000_000
            );
        }
    }
}
