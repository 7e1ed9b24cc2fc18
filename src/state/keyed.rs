//! The keyed value store that aggregates keep their per-key values in.
//!
//! One [`KeyedStore`] per operator subtask holds an 8-byte value (an `i64` or the bits of an
//! `f64`) per key, for the key groups that subtask owns. It is laid out for snapshots with a
//! short synchronous part:
//! - each key group cut into shards by hash bits (about 16k shards per store), each shard
//!   behind an [`Arc`]: a write goes through [`Arc::make_mut`], so a snapshot is a clone of
//!   the `Arc`s (copy-on-write: the first write to a shard after a snapshot copies that shard
//!   once, later writes go to the copy). Shards rather than whole key groups, so that the
//!   copies after a snapshot are small and spread over many batches instead of stalling the
//!   first one (measured with 1M keys: ~50 ms for the first batch with 128 whole groups,
//!   under 5 ms with shards). Key groups stay whole for restores at another parallelism;
//! - entries are plain fixed-size data (32 bytes: hash, value, the key itself if it is at most
//!   [`INLINE_KEY`] bytes or else its offset in the shard's append-only key arena, key length,
//!   epoch): copying a shard is a copy of two flat buffers, never an allocation per entry.
//!   Short keys (words, integers) live in the entry, so a lookup touches one cache line
//!   instead of two (the arena compare was a second miss per record with 1M keys).
//!
//! Change tracking, for incremental checkpoints: the store has an epoch, bumped by every
//! [`KeyedStore::snapshot`]; each entry remembers the epoch of its last write. The first write
//! of a key in an epoch (and every removal) appends the key to its group's change list; later
//! writes in the same epoch only compare two integers. `snapshot` moves the lists into the
//! [`KeyedSnapshot`] (the next delta starts empty) and [`KeyedSnapshot::changes`] resolves
//! them against the frozen tables: a key still present is an update, a key gone is a deletion.
//! Tracking starts at the first snapshot or at a restore: before that, a delta would be the
//! whole state anyway, and a store of a job without checkpoints pays nothing for it.
//!
//! It must not know about tasks, channels or files: writing a snapshot to disk is the
//! checkpoint module's job. A key is hashed once by the caller ([`KeyHash`]), never here.

use crate::state::keygroup::{KeyGroupRange, KeyHash};
use hashbrown::HashTable;
use std::sync::Arc;

/// Keys of at most this many bytes are stored inside their entry, not in the arena.
pub const INLINE_KEY: usize = 8;

/// Why the store refused a key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyedStateError {
    /// The key belongs to a key group another subtask owns: the exchange routed it wrongly.
    #[error(
        "bug: key group {key_group} reached the subtask owning key groups {range} \
         (max parallelism {max_parallelism}); the keyed exchange routed it wrongly"
    )]
    WrongKeyGroup {
        key_group: u32,
        range: KeyGroupRange,
        max_parallelism: u32,
    },
    /// A group's key arena passed 4 GiB: more distinct key bytes than one subtask can hold.
    #[error("key group {key_group} holds more than 4 GiB of key bytes")]
    ArenaFull { key_group: u32 },
}

/// One entry. `key` holds the key bytes zero-padded when `key_len <= INLINE_KEY`, else the
/// key's offset in the group's arena (u32 little endian) in its first 4 bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: u64,
    value: u64,
    key: [u8; INLINE_KEY],
    key_len: u32,
    /// The store's epoch at this entry's last write.
    epoch: u32,
}

/// A key as a change list records it: enough to find it again in a frozen group table (the
/// arena is append-only, so an offset stays valid in every later copy of the shard).
#[derive(Debug, Clone, Copy)]
struct KeyRef {
    hash: u64,
    key: [u8; INLINE_KEY],
    key_len: u32,
}

impl KeyRef {
    fn of(e: &Entry) -> KeyRef {
        KeyRef {
            hash: e.hash,
            key: e.key,
            key_len: e.key_len,
        }
    }
}

/// The keys of one group written or removed in the current epoch.
#[derive(Debug, Clone, Default)]
struct GroupChanges {
    keys: Vec<KeyRef>,
    /// A key was removed: it may be listed twice (removed, then inserted again).
    removals: bool,
}

/// `key` zero-padded to the inline width (`key.len() <= INLINE_KEY`).
#[inline(always)]
fn pack(key: &[u8]) -> [u8; INLINE_KEY] {
    let mut b = [0u8; INLINE_KEY];
    b[..key.len()].copy_from_slice(key);
    b
}

#[inline(always)]
fn arena_off(key: &[u8; INLINE_KEY]) -> usize {
    u32::from_le_bytes([key[0], key[1], key[2], key[3]]) as usize
}

/// The bytes of a key stored as `key`/`key_len` in a group with `arena`.
#[inline(always)]
fn key_bytes<'a>(key: &'a [u8; INLINE_KEY], key_len: u32, arena: &'a [u8]) -> &'a [u8] {
    let len = key_len as usize;
    if len <= INLINE_KEY {
        &key[..len]
    } else {
        let off = arena_off(key);
        // An offset past the arena would be a bug of this module; an empty key then simply
        // matches nothing instead of panicking.
        arena.get(off..off + len).unwrap_or(&[])
    }
}

/// Whether entry `e` is the key `key` with table hash `h` (`packed`: the key padded, when
/// it is short enough to be inline).
#[inline(always)]
fn matches(e: &Entry, h: u64, key: &[u8], packed: &[u8; INLINE_KEY], arena: &[u8]) -> bool {
    e.hash == h
        && e.key_len as usize == key.len()
        && if key.len() <= INLINE_KEY {
            e.key == *packed
        } else {
            let off = arena_off(&e.key);
            arena.get(off..off + key.len()) == Some(key)
        }
}

/// Copy-on-write units a store aims at in all (each key group is cut into a power of two of
/// shards by hash bits). The unit must be small: after a snapshot, the first write to a unit
/// copies it on the data path, and a batch of 1024 random keys touches up to 1024 units. With
/// whole key groups as units (128 per store) and 1M keys, the first batch after a snapshot
/// copied the whole state (~50 ms); with ~16k units it copies ~1024 units of ~60 keys.
const TARGET_SHARDS: u32 = 1 << 14;
/// At most this many shards (as a power of two) per key group.
const MAX_SHARD_BITS: u32 = 10;

/// `log2` of the shards per key group for a store of `groups` key groups.
fn shard_bits(groups: u32) -> u32 {
    (TARGET_SHARDS / groups.max(1))
        .max(1)
        .ilog2()
        .min(MAX_SHARD_BITS)
}

/// The shard of a key group a table hash falls in. Bits 32.. of the hash: hashbrown takes
/// the bucket from the low bits and its tag from the top 7, so these leave both intact.
#[inline(always)]
fn shard_of(h: u64, bits: u32) -> usize {
    ((h >> 32) as usize) & ((1usize << bits) - 1)
}

/// One copy-on-write unit: the keys of one key group whose hash falls in this shard.
#[derive(Debug, Clone, Default)]
struct Shard {
    /// Bytes of keys longer than [`INLINE_KEY`], appended as keys arrive; never rewritten
    /// (a removed key's bytes stay: change lists may still point at them).
    arena: Vec<u8>,
    table: HashTable<Entry>,
}

impl Shard {
    fn entries(&self) -> impl Iterator<Item = (&[u8], u64, u64)> + '_ {
        self.table
            .iter()
            .map(move |e| (key_bytes(&e.key, e.key_len, &self.arena), e.hash, e.value))
    }

    fn find(&self, h: u64, key: &[u8]) -> Option<&Entry> {
        let packed = if key.len() <= INLINE_KEY {
            pack(key)
        } else {
            [0; INLINE_KEY]
        };
        self.table
            .find(h, |e| matches(e, h, key, &packed, &self.arena))
    }
}

/// The keys and values of one key group (a view over its shards).
#[derive(Debug, Clone, Copy)]
pub struct GroupTable<'a> {
    /// A power of two of shards, picked by [`shard_of`].
    shards: &'a [Arc<Shard>],
}

impl<'a> GroupTable<'a> {
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.table.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.table.is_empty())
    }

    /// Every `(key, value)` of the group, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], u64)> + 'a {
        self.entries().map(|(k, _, v)| (k, v))
    }

    /// Every `(key, table hash, value)` of the group, in no particular order: what a snapshot
    /// encodes (the hash is kept so a restore need not know the key's type to hash it again).
    pub fn entries(&self) -> impl Iterator<Item = (&'a [u8], u64, u64)> + 'a {
        self.shards.iter().flat_map(|s| s.entries())
    }

    fn shard(&self, h: u64) -> &'a Shard {
        &self.shards[shard_of(h, self.shards.len().trailing_zeros())]
    }

    fn find(&self, h: u64, key: &[u8]) -> Option<&'a Entry> {
        self.shard(h).find(h, key)
    }
}

/// What the changes a store tracks are relative to: the base a delta applies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaBase {
    /// Nothing: the store started empty and this is its first snapshot, so the delta is the
    /// whole state (and holds no deletions).
    Empty,
    /// The state the store was restored from.
    Restored,
    /// The store's snapshot with this sequence number (see [`KeyedSnapshot::sequence`]).
    Snapshot(u64),
}

/// Per-subtask keyed values, partitioned by key group.
#[derive(Debug, Clone)]
pub struct KeyedStore {
    range: KeyGroupRange,
    max_parallelism: u32,
    /// Key group `g` is the shards `(g - range.start) << shard_bits ..` (`1 << shard_bits` of
    /// them); each behind its own `Arc`, the unit of copy-on-write.
    shards: Vec<Arc<Shard>>,
    shard_bits: u32,
    len: usize,
    /// `changes[g - range.start]`: keys of group `g` written or removed in this epoch (only
    /// while `tracking`).
    changes: Vec<GroupChanges>,
    /// Bumped by every snapshot; entries written since carry it.
    epoch: u32,
    tracking: bool,
    /// What the tracked changes are relative to.
    base: DeltaBase,
    /// The sequence number the next snapshot gets.
    next_sequence: u64,
}

impl KeyedStore {
    /// An empty store for the key groups in `range` of `max_parallelism`.
    pub fn new(range: KeyGroupRange, max_parallelism: u32) -> Self {
        KeyedStore {
            range,
            max_parallelism,
            shards: (0..(range.len() as usize) << shard_bits(range.len()))
                .map(|_| Arc::new(Shard::default()))
                .collect(),
            shard_bits: shard_bits(range.len()),
            len: 0,
            changes: Self::no_changes(range),
            epoch: 0,
            tracking: false,
            base: DeltaBase::Empty,
            next_sequence: 0,
        }
    }

    fn no_changes(range: KeyGroupRange) -> Vec<GroupChanges> {
        (0..range.len()).map(|_| GroupChanges::default()).collect()
    }

    pub fn range(&self) -> KeyGroupRange {
        self.range
    }

    pub fn max_parallelism(&self) -> u32 {
        self.max_parallelism
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The index of `key_group` in `groups`, or the error of a key routed here wrongly.
    #[inline(always)]
    fn slot(&self, key_group: u32) -> Result<usize, KeyedStateError> {
        if self.range.contains(key_group) {
            Ok((key_group - self.range.start) as usize)
        } else {
            Err(self.wrong_group(key_group))
        }
    }

    /// The value of `key`, inserting `init` first if the key is new. Counts as a write of the
    /// key for change tracking (the caller gets `&mut` to change it).
    ///
    /// `hash` must be the key's [`KeyHash`]; it picks the key group and the table slot.
    #[inline]
    pub fn get_or_insert(
        &mut self,
        hash: KeyHash,
        key: &[u8],
        init: u64,
    ) -> Result<&mut u64, KeyedStateError> {
        let key_group = hash.key_group(self.max_parallelism);
        let idx = self.slot(key_group)?;
        self.upsert(idx, key_group, hash.table, key, init)
    }

    /// `get_or_insert` on a group index and table hash already known.
    #[inline(always)]
    fn upsert(
        &mut self,
        idx: usize,
        key_group: u32,
        h: u64,
        key: &[u8],
        init: u64,
    ) -> Result<&mut u64, KeyedStateError> {
        // Copy-on-write: copies the shard only if a snapshot still holds it.
        let unit = (idx << self.shard_bits) | shard_of(h, self.shard_bits);
        let shard = Arc::make_mut(&mut self.shards[unit]);
        let Shard { arena, table } = shard;
        let packed = if key.len() <= INLINE_KEY {
            pack(key)
        } else {
            [0; INLINE_KEY]
        };
        let epoch = self.epoch;
        let entry = table.entry(h, |e| matches(e, h, key, &packed, arena), |e| e.hash);
        match entry {
            hashbrown::hash_table::Entry::Occupied(o) => {
                let e = o.into_mut();
                // The first write of this key in this epoch: the next delta must carry it.
                if e.epoch != epoch {
                    e.epoch = epoch;
                    if self.tracking {
                        self.changes[idx].keys.push(KeyRef::of(e));
                    }
                }
                Ok(&mut e.value)
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                let stored = if key.len() <= INLINE_KEY {
                    packed
                } else {
                    let off = u32::try_from(arena.len())
                        .ok()
                        .filter(|off| {
                            u32::try_from(key.len())
                                .ok()
                                .and_then(|l| off.checked_add(l))
                                .is_some()
                        })
                        .ok_or(KeyedStateError::ArenaFull { key_group })?;
                    arena.extend_from_slice(key);
                    let mut b = [0u8; INLINE_KEY];
                    b[..4].copy_from_slice(&off.to_le_bytes());
                    b
                };
                self.len += 1;
                let e = v
                    .insert(Entry {
                        hash: h,
                        value: init,
                        key: stored,
                        key_len: key.len() as u32,
                        epoch,
                    })
                    .into_mut();
                if self.tracking {
                    self.changes[idx].keys.push(KeyRef::of(e));
                }
                Ok(&mut e.value)
            }
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, hash: KeyHash, key: &[u8]) -> Result<Option<u64>, KeyedStateError> {
        let key_group = hash.key_group(self.max_parallelism);
        let idx = self.slot(key_group)?;
        Ok(self.group_at(idx).find(hash.table, key).map(|e| e.value))
    }

    /// Removes `key`, returning its value if it was present. The next delta records the
    /// removal as a deletion.
    pub fn remove(&mut self, hash: KeyHash, key: &[u8]) -> Result<Option<u64>, KeyedStateError> {
        let key_group = hash.key_group(self.max_parallelism);
        let idx = self.slot(key_group)?;
        Ok(self.remove_at(idx, hash.table, key))
    }

    fn remove_at(&mut self, idx: usize, h: u64, key: &[u8]) -> Option<u64> {
        let unit = (idx << self.shard_bits) | shard_of(h, self.shard_bits);
        // Look before copying: removing an absent key must not copy a shard a snapshot holds.
        self.shards[unit].find(h, key)?;
        let shard = Arc::make_mut(&mut self.shards[unit]);
        let Shard { arena, table } = shard;
        let packed = if key.len() <= INLINE_KEY {
            pack(key)
        } else {
            [0; INLINE_KEY]
        };
        let found = table
            .find_entry(h, |e| matches(e, h, key, &packed, arena))
            .ok()?;
        let (e, _) = found.remove();
        self.len -= 1;
        if self.tracking {
            let changes = &mut self.changes[idx];
            changes.removals = true;
            // Written in this epoch: already listed.
            if e.epoch != self.epoch {
                changes.keys.push(KeyRef::of(&e));
            }
        }
        Some(e.value)
    }

    /// The table of `key_group`, if this subtask owns it.
    pub fn group(&self, key_group: u32) -> Option<GroupTable<'_>> {
        self.range
            .contains(key_group)
            .then(|| self.group_at((key_group - self.range.start) as usize))
    }

    fn group_at(&self, idx: usize) -> GroupTable<'_> {
        let n = 1usize << self.shard_bits;
        GroupTable {
            shards: &self.shards[idx * n..(idx + 1) * n],
        }
    }

    /// Every owned key group with its table, in group order.
    pub fn groups(&self) -> impl Iterator<Item = (u32, GroupTable<'_>)> + '_ {
        let n = 1usize << self.shard_bits;
        self.range
            .iter()
            .zip(self.shards.chunks(n).map(|shards| GroupTable { shards }))
    }

    /// A consistent view of the store as it is now, with the changes since the previous
    /// snapshot (or the restore).
    ///
    /// The synchronous part of a checkpoint, so it is cheap: one `Arc` clone per shard (about
    /// 16k) and a move of the change lists, nothing proportional to the number of keys. Later
    /// writes copy a shard on its first write instead of changing the snapshot, and go into
    /// fresh change lists: the next snapshot's delta is relative to this one.
    pub fn snapshot(&mut self) -> KeyedSnapshot {
        let changes = if self.tracking {
            let fresh = Self::no_changes(self.range);
            Some(Arc::new(std::mem::replace(&mut self.changes, fresh)))
        } else {
            None
        };
        let sequence = self.next_sequence;
        let snap = KeyedSnapshot {
            range: self.range,
            max_parallelism: self.max_parallelism,
            shards: self.shards.clone(),
            shard_bits: self.shard_bits,
            changes,
            sequence,
            delta_base: self.base,
        };
        self.next_sequence += 1;
        self.base = DeltaBase::Snapshot(sequence);
        self.epoch = self.epoch.wrapping_add(1);
        self.tracking = true;
        snap
    }

    /// Restore: sets `key` of `key_group` (table hash `hash`) to `value`, or removes it for
    /// `None`. For [`crate::state::snapshot::restore_store`]; call
    /// [`KeyedStore::finish_restore`] after the last one.
    pub fn apply_restored(
        &mut self,
        key_group: u32,
        key: &[u8],
        hash: u64,
        value: Option<u64>,
    ) -> Result<(), KeyedStateError> {
        let idx = self.slot(key_group)?;
        match value {
            Some(v) => *self.upsert(idx, key_group, hash, key, v)? = v,
            None => {
                self.remove_at(idx, hash, key);
            }
        }
        Ok(())
    }

    /// Ends a restore: what was applied is the base of the next delta.
    pub fn finish_restore(&mut self) {
        self.changes = Self::no_changes(self.range);
        self.epoch = self.epoch.wrapping_add(1);
        self.tracking = true;
        self.base = DeltaBase::Restored;
        self.next_sequence = 0;
    }

    fn wrong_group(&self, key_group: u32) -> KeyedStateError {
        KeyedStateError::WrongKeyGroup {
            key_group,
            range: self.range,
            max_parallelism: self.max_parallelism,
        }
    }
}

/// One key of a delta: its bytes, its table hash and its value (`None`: deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change<'a> {
    pub key: &'a [u8],
    pub hash: u64,
    pub value: Option<u64>,
}

/// A frozen copy of a [`KeyedStore`], for the asynchronous part of a checkpoint: the whole
/// state ([`KeyedSnapshot::groups`]) and the changes since [`KeyedSnapshot::delta_base`]
/// ([`KeyedSnapshot::changes`]).
///
/// A delta is only usable on top of its base: snapshot `n` of a store (its
/// [`KeyedSnapshot::sequence`]) is relative to snapshot `n - 1` of the same store, snapshot 0
/// to the restored state (or to nothing). If the checkpoint that held the base was not
/// completed, write this snapshot in full.
#[derive(Debug, Clone)]
pub struct KeyedSnapshot {
    pub range: KeyGroupRange,
    pub max_parallelism: u32,
    shards: Vec<Arc<Shard>>,
    shard_bits: u32,
    /// `None` with [`DeltaBase::Empty`]: every key is a change.
    changes: Option<Arc<Vec<GroupChanges>>>,
    sequence: u64,
    delta_base: DeltaBase,
}

impl KeyedSnapshot {
    /// Number of keys in the snapshot.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.table.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key group with its table, in group order.
    pub fn groups(&self) -> impl Iterator<Item = (u32, GroupTable<'_>)> + '_ {
        let n = 1usize << self.shard_bits;
        self.range
            .iter()
            .zip(self.shards.chunks(n).map(|shards| GroupTable { shards }))
    }

    /// This snapshot's number among the snapshots of its store (0 for the first one after
    /// the store was created or restored).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// What [`KeyedSnapshot::changes`] applies on.
    pub fn delta_base(&self) -> DeltaBase {
        self.delta_base
    }

    /// How many keys the delta lists at most (updates and deletions; a key written, removed
    /// and written again may count twice). For choosing between a delta and a full write.
    pub fn delta_len(&self) -> usize {
        match &self.changes {
            Some(c) => c.iter().map(|g| g.keys.len()).sum(),
            None => self.len(),
        }
    }

    /// The changes since [`KeyedSnapshot::delta_base`], group by group in group order,
    /// groups without changes left out, each key once: a key present in the snapshot with
    /// its value, a key no longer present as a deletion.
    pub fn changes(&self) -> impl Iterator<Item = (u32, Vec<Change<'_>>)> + '_ {
        self.groups()
            .enumerate()
            .filter_map(move |(idx, (key_group, group))| {
                let changes = match &self.changes {
                    None => group
                        .entries()
                        .map(|(key, hash, v)| Change {
                            key,
                            hash,
                            value: Some(v),
                        })
                        .collect::<Vec<_>>(),
                    Some(all) => resolve(group, &all[idx]),
                };
                (!changes.is_empty()).then_some((key_group, changes))
            })
    }
}

/// The changes of one group, looked up in the frozen table.
fn resolve<'a>(group: GroupTable<'a>, changes: &'a GroupChanges) -> Vec<Change<'a>> {
    let mut out: Vec<Change<'a>> = changes
        .keys
        .iter()
        .map(|r| {
            let key = key_bytes(&r.key, r.key_len, &group.shard(r.hash).arena);
            Change {
                key,
                hash: r.hash,
                value: group.find(r.hash, key).map(|e| e.value),
            }
        })
        .collect();
    if changes.removals {
        // A key removed and inserted again in one epoch is listed twice, with the same
        // (final) resolution each time: keep one.
        out.sort_unstable_by(|a, b| (a.hash, a.key).cmp(&(b.hash, b.key)));
        out.dedup_by(|a, b| a.hash == b.hash && a.key == b.key);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::keygroup::{hash_int, hash_str};
    use std::collections::HashMap;

    fn full_store() -> KeyedStore {
        KeyedStore::new(KeyGroupRange::for_subtask(0, 1, 128), 128)
    }

    #[test]
    fn counts_many_keys_across_groups() {
        let mut store = full_store();
        let mut expected: HashMap<String, u64> = HashMap::new();
        for i in 0..50_000u64 {
            let key = format!("w{}", (i * 7919) % 10_007);
            *store
                .get_or_insert(hash_str(key.as_bytes()), key.as_bytes(), 0)
                .unwrap() += 1;
            *expected.entry(key).or_default() += 1;
        }
        assert_eq!(store.len(), expected.len());
        let mut seen = 0;
        let mut groups_used = 0;
        for (g, table) in store.groups() {
            if !table.is_empty() {
                groups_used += 1;
            }
            for (k, v) in table.iter() {
                let k = std::str::from_utf8(k).unwrap();
                assert_eq!(hash_str(k.as_bytes()).key_group(128), g);
                assert_eq!(expected[k], v, "key {k}");
                seen += 1;
            }
        }
        assert_eq!(seen, expected.len());
        assert_eq!(groups_used, 128);
        assert_eq!(
            store.get(hash_str(b"w0"), b"w0").unwrap(),
            Some(expected["w0"])
        );
        assert_eq!(store.get(hash_str(b"nope"), b"nope").unwrap(), None);
    }

    #[test]
    fn snapshot_is_unchanged_by_later_writes() {
        let mut store = full_store();
        for i in 0..1000i64 {
            let k = i.to_le_bytes();
            *store.get_or_insert(hash_int(i), &k, 0).unwrap() += i as u64;
        }
        let snap = store.snapshot();
        for i in 0..2000i64 {
            let k = i.to_le_bytes();
            *store.get_or_insert(hash_int(i), &k, 0).unwrap() += 1;
        }
        assert_eq!(snap.len(), 1000);
        assert_eq!(store.len(), 2000);
        for (_, table) in snap.groups() {
            for (k, v) in table.iter() {
                let i = i64::from_le_bytes(k.try_into().unwrap());
                assert_eq!(v, i as u64);
            }
        }
        let k = 5i64.to_le_bytes();
        assert_eq!(store.get(hash_int(5), &k).unwrap(), Some(6));
    }

    #[test]
    fn key_of_another_subtask_is_an_error() {
        // Subtask 0 of 2 owns groups 0..=63 of 128; "a" is in group 81 (Flink's vector).
        let mut store = KeyedStore::new(KeyGroupRange::for_subtask(0, 2, 128), 128);
        let err = store.get_or_insert(hash_str(b"a"), b"a", 0).unwrap_err();
        assert!(matches!(
            err,
            KeyedStateError::WrongKeyGroup { key_group: 81, .. }
        ));
        assert!(err.to_string().contains("bug"));
        // "b" is in group 22: accepted.
        assert!(store.get_or_insert(hash_str(b"b"), b"b", 0).is_ok());
        assert!(store.group(81).is_none());
        assert_eq!(store.group(22).map(|g| g.len()), Some(1));
    }

    #[test]
    fn keys_with_equal_hash_stay_apart() {
        // "Aa" and "BB" share Java's hashCode, so their KeyHash is equal.
        assert_eq!(hash_str(b"Aa"), hash_str(b"BB"));
        let mut store = full_store();
        *store.get_or_insert(hash_str(b"Aa"), b"Aa", 0).unwrap() += 1;
        *store.get_or_insert(hash_str(b"BB"), b"BB", 0).unwrap() += 5;
        assert_eq!(store.len(), 2);
        assert_eq!(store.get(hash_str(b"Aa"), b"Aa").unwrap(), Some(1));
        assert_eq!(store.get(hash_str(b"BB"), b"BB").unwrap(), Some(5));
    }

    fn bump(store: &mut KeyedStore, key: &[u8], by: u64) {
        *store.get_or_insert(hash_str(key), key, 0).unwrap() += by;
    }

    fn changes_of(snap: &KeyedSnapshot) -> Vec<(Vec<u8>, Option<u64>)> {
        let mut out: Vec<(Vec<u8>, Option<u64>)> = snap
            .changes()
            .flat_map(|(g, cs)| {
                cs.into_iter().map(move |c| {
                    assert_eq!(hash_str(c.key).key_group(128), g);
                    assert_eq!(hash_str(c.key).table, c.hash);
                    (c.key.to_vec(), c.value)
                })
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn deltas_hold_the_keys_written_since_the_previous_snapshot() {
        let mut store = full_store();
        let long = b"a key longer than inline".to_vec();
        for k in [&b"a"[..], b"b", b"c", &long] {
            bump(&mut store, k, 1);
        }
        let first = store.snapshot();
        assert_eq!(first.delta_base(), DeltaBase::Empty);
        assert_eq!(first.sequence(), 0);
        assert_eq!(changes_of(&first).len(), 4, "the first delta is everything");

        bump(&mut store, b"a", 1);
        bump(&mut store, b"a", 1);
        bump(&mut store, &long, 5);
        bump(&mut store, b"new", 7);
        assert_eq!(store.remove(hash_str(b"c"), b"c").unwrap(), Some(1));
        assert_eq!(store.remove(hash_str(b"zz"), b"zz").unwrap(), None);
        let second = store.snapshot();
        assert_eq!(second.delta_base(), DeltaBase::Snapshot(0));
        assert_eq!(second.sequence(), 1);
        assert_eq!(
            changes_of(&second),
            vec![
                (b"a".to_vec(), Some(3)),
                (long.clone(), Some(6)),
                (b"c".to_vec(), None),
                (b"new".to_vec(), Some(7)),
            ]
        );
        // The first snapshot still sees its own state (copy-on-write).
        assert_eq!(first.len(), 4);
        let third = store.snapshot();
        assert!(changes_of(&third).is_empty());
        assert_eq!(third.delta_len(), 0);
        assert_eq!(third.len(), 4);
    }

    #[test]
    fn a_key_removed_and_written_again_is_one_change() {
        let mut store = full_store();
        bump(&mut store, b"k", 1);
        bump(&mut store, b"gone", 1);
        store.snapshot();
        bump(&mut store, b"k", 1);
        store.remove(hash_str(b"k"), b"k").unwrap();
        bump(&mut store, b"k", 10);
        store.remove(hash_str(b"gone"), b"gone").unwrap();
        bump(&mut store, b"brief", 1);
        store.remove(hash_str(b"brief"), b"brief").unwrap();
        let snap = store.snapshot();
        assert_eq!(
            changes_of(&snap),
            vec![
                (b"brief".to_vec(), None),
                (b"gone".to_vec(), None),
                (b"k".to_vec(), Some(10)),
            ]
        );
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn inline_and_arena_keys_of_every_length_stay_apart() {
        let mut store = full_store();
        let keys: Vec<Vec<u8>> = (0..=20u8).map(|n| vec![b'x'; n as usize]).collect();
        for (i, k) in keys.iter().enumerate() {
            bump(&mut store, k, i as u64 + 1);
        }
        // A key equal to another padded with zeros must not match it.
        bump(&mut store, b"x\0", 100);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(store.get(hash_str(k), k).unwrap(), Some(i as u64 + 1));
        }
        assert_eq!(store.get(hash_str(b"x\0"), b"x\0").unwrap(), Some(100));
        assert_eq!(store.len(), keys.len() + 1);
    }

    #[test]
    fn restore_is_the_base_of_the_next_delta() {
        let mut store = full_store();
        store
            .apply_restored(
                hash_str(b"a").key_group(128),
                b"a",
                hash_str(b"a").table,
                Some(4),
            )
            .unwrap();
        store.finish_restore();
        assert_eq!(store.get(hash_str(b"a"), b"a").unwrap(), Some(4));
        bump(&mut store, b"b", 1);
        let snap = store.snapshot();
        assert_eq!(snap.delta_base(), DeltaBase::Restored);
        assert_eq!(changes_of(&snap), vec![(b"b".to_vec(), Some(1))]);
    }

    /// `cargo test --release --lib state::keyed -- --ignored --nocapture`
    #[test]
    #[ignore = "timing; run by hand in release"]
    fn snapshot_time_with_a_million_keys() {
        let mut store = full_store();
        for i in 0..1_000_000i64 {
            *store
                .get_or_insert(hash_int(i), &i.to_le_bytes(), 0)
                .unwrap() += 1;
        }
        store.snapshot();
        for i in 0..1_000_000i64 {
            *store
                .get_or_insert(hash_int(i), &i.to_le_bytes(), 0)
                .unwrap() += 1;
        }
        let t = std::time::Instant::now();
        let snap = store.snapshot();
        let took = t.elapsed();
        println!(
            "snapshot() of {} keys ({} changed): {:?}",
            snap.len(),
            snap.delta_len(),
            took
        );
        let t = std::time::Instant::now();
        for i in 0..1_000_000i64 {
            *store
                .get_or_insert(hash_int(i), &i.to_le_bytes(), 0)
                .unwrap() += 1;
        }
        println!(
            "1M writes after it (copying every group once): {:?}",
            t.elapsed()
        );
        assert!(took < std::time::Duration::from_millis(50));
    }
}
