//! The keyed value store that aggregates keep their per-key values in.
//!
//! One [`KeyedStore`] per operator subtask holds an 8-byte value (an `i64` or the bits of an
//! `f64`) per key, for the key groups that subtask owns. It is laid out for snapshots with a
//! short synchronous part:
//! - each key group cut into shards by hash bits (about 8k shards per store). The store owns
//!   a shard outright until a snapshot: [`KeyedStore::snapshot`] moves each written shard
//!   into an [`Arc`] that the snapshot and the store share (copy-on-write: the first write to
//!   a shard after a snapshot takes it back, moved out of the `Arc`: if the snapshot is still
//!   being written, it first gets a compact copy of the shard's entries, without the table's
//!   free slots; later writes are plain writes to an owned shard, no atomic operation per
//!   record). Shards rather than whole key groups, so that the
//!   copies after a snapshot are small and spread over many batches instead of stalling the
//!   first one (measured with 1M keys: ~50 ms for the first batch with 128 whole groups,
//!   under 5 ms with shards). Key groups stay whole for restores at another parallelism;
//! - each shard's table is flat open addressing with linear probing, so the slot a key is
//!   looked up from is known from its hash alone: [`KeyedStore::prefetch`] lets a caller
//!   start loading the slots of a run of keys before looking them up, and their cache misses
//!   overlap (with 1M keys nearly every lookup misses);
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

use crate::state::keygroup::{KeyGroupRange, KeyGroups, KeyHash, KeyPlace};
use std::sync::{Arc, Mutex, OnceLock, Weak};

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
///
/// Aligned to its size, so that an entry never straddles two cache lines: a table from the
/// allocator is only 16-aligned, and half its entries then took two misses to read.
#[derive(Debug, Clone, Copy)]
#[repr(align(32))]
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

/// Asks the CPU to start loading the cache line `r` starts in; returns at once.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch_line<T>(r: &T) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: a prefetch is a hint that never faults and reads nothing into the program
    // (any address is allowed; this one is a live reference). SSE, which `_mm_prefetch`
    // needs, is part of the x86_64 baseline. The one `unsafe` of the crate: a safe load
    // instead blocks the CPU's reorder window, and overlapping the misses of a batch of
    // lookups is what makes 1M keys several times faster (see [`KeyedStore::prefetch`]).
    unsafe { _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast::<i8>()) }
}

/// Elsewhere: nothing (a plain read of a shard would wait for it; see [`prefetch_entry`]).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn prefetch_line<T>(_r: &T) {}

/// Starts loading a table slot.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_entry(e: &Entry) {
    prefetch_line(e)
}

/// Elsewhere: a plain read of the slot, which the CPU may overlap with what follows.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn prefetch_entry(e: &Entry) {
    std::hint::black_box(e.hash);
}

/// Copy-on-write units a store aims at in all (each key group is cut into a power of two of
/// shards by hash bits). The unit must be small: after a snapshot, the first write to a unit
/// copies it on the data path, and a batch of 1024 random keys touches up to 1024 units. With
/// whole key groups as units (128 per store) and 1M keys, the first batch after a snapshot
/// copied the whole state (~50 ms); with ~8k units it copies ~1024 units of ~120 keys. The
/// unit must not be too small either: every lookup reads its shard (32 bytes, [`Shard`])
/// before its slot, and the array of shards competes with the tables for the core's cache
/// (docs/benchmarks.md, "Fewer, larger shards" and "Small shards").
const TARGET_SHARDS: u32 = 1 << 13;
/// At most this many shards (as a power of two) per key group.
const MAX_SHARD_BITS: u32 = 10;

/// `log2` of the shards per key group for a store of `groups` key groups.
fn shard_bits(groups: u32) -> u32 {
    (TARGET_SHARDS / groups.max(1))
        .max(1)
        .ilog2()
        .min(MAX_SHARD_BITS)
}

/// The shard of a key group a table hash falls in. Bits 32.. of the hash: a shard's table
/// takes the slot from the low bits, so these leave them intact.
#[inline(always)]
fn shard_of(h: u64, bits: u32) -> usize {
    ((h >> 32) as usize) & ((1usize << bits) - 1)
}

/// `key_len` of a free slot (no key is 4 GiB long: the arena's offsets are 32-bit).
const FREE: u32 = u32::MAX;

const FREE_ENTRY: Entry = Entry {
    hash: 0,
    value: 0,
    key: [0; INLINE_KEY],
    key_len: FREE,
    epoch: 0,
};

/// A shard's table grows before it is more than 3/4 full (linear probing stays short).
#[inline(always)]
fn needs_growth(len: usize, slots: usize) -> bool {
    (len + 1) * 4 > slots * 3
}

/// One copy-on-write unit: the keys of one key group whose hash falls in this shard.
///
/// Its table is flat open addressing with linear probing (slots: none or a power of two,
/// the slot of a key from the low bits of its table hash), so that the slot a key will be
/// looked up in is known before the lookup: [`KeyedStore::prefetch`] starts loading it.
///
/// 32 bytes, aligned to them: every lookup reads its shard before its slot, and ~8k shards
/// of 32 bytes (256 KB) stay in the core's cache beside the tables. What only some shards
/// need is behind `rest`: with it inline (88 bytes, often across two cache lines) a 1M-key
/// lookup waited on its shard more than on its slot, and the store was 10–14% slower
/// (docs/benchmarks.md, "Small shards").
#[derive(Debug, Clone, Default)]
#[repr(align(32))]
struct Shard {
    slots: Box<[Entry]>,
    len: usize,
    rest: Option<Box<ShardRest>>,
}

/// The parts of a shard that lookups of short keys in a live store never read.
#[derive(Debug, Clone, Default)]
struct ShardRest {
    /// Bytes of keys longer than [`INLINE_KEY`], appended as keys arrive; never rewritten
    /// (a removed key's bytes stay: change lists may still point at them).
    arena: Vec<u8>,
    /// Set in a snapshot's compact copy ([`Shard::compacted`]).
    compact: Option<CompactIndex>,
}

/// A compact copy's `slots` hold the entries only, in the order of the table they came
/// from; `occupied` tells which of that table's slots held them, so a lookup probes as it
/// did in the table (`hash & home_mask` on).
#[derive(Debug, Clone)]
struct CompactIndex {
    home_mask: usize,
    occupied: Box<[Occupied]>,
}

/// 64 slots of the table a compact copy came from: which held an entry, and how many
/// entries the slots before them held (where the first of these 64 is in the copy).
#[derive(Debug, Clone, Copy)]
struct Occupied {
    bits: u64,
    before: u32,
}

impl Shard {
    /// The entries alone (and the arena, if a key needs it), for a snapshot that keeps the
    /// shard while the store writes on: about half the bytes of the table (which is at
    /// most 3/4 full), so the copy a write after a snapshot makes costs less memory.
    fn compacted(&self) -> Shard {
        // One spare entry: every slot is copied to the next free place of the copy and
        // counted only if it held an entry, so the loop has no branch on whether it did (the
        // job makes these copies on its own thread, one per shard it writes first after a
        // snapshot; about half the slots are free, and a branch on them mispredicted half
        // the time). Keeping the table's order is what makes a lookup possible without a sort.
        let mut slots = vec![FREE_ENTRY; self.len + 1];
        let mut occupied = Vec::with_capacity(self.slots.len().div_ceil(64));
        let (mut n, mut long_keys) = (0usize, false);
        for chunk in self.slots.chunks(64) {
            let before = n as u32;
            let mut bits = 0u64;
            for (j, e) in chunk.iter().enumerate() {
                let held = e.key_len != FREE;
                // Always in bounds while `len` counts the held slots; a store that broke
                // that would lose entries from the copy, not write out of it.
                if let Some(to) = slots.get_mut(n) {
                    *to = *e;
                }
                bits |= u64::from(held) << j;
                long_keys |= held & (e.key_len as usize > INLINE_KEY);
                n += usize::from(held);
            }
            occupied.push(Occupied { bits, before });
        }
        slots.truncate(n.min(self.len));
        let slots = slots.into_boxed_slice();
        let index = CompactIndex {
            home_mask: self.slots.len().saturating_sub(1),
            occupied: occupied.into_boxed_slice(),
        };
        Shard {
            len: slots.len(),
            slots,
            rest: Some(Box::new(ShardRest {
                arena: match long_keys {
                    true => self.arena().to_vec(),
                    false => Vec::new(),
                },
                compact: Some(index),
            })),
        }
    }

    /// The bytes of this shard's keys longer than [`INLINE_KEY`].
    #[inline(always)]
    fn arena(&self) -> &[u8] {
        match &self.rest {
            Some(rest) => &rest.arena,
            None => &[],
        }
    }

    fn arena_mut(&mut self) -> &mut Vec<u8> {
        &mut self.rest.get_or_insert_with(Box::default).arena
    }

    /// Whether this is a snapshot's compact copy.
    fn is_compact(&self) -> bool {
        self.compact_index().is_some()
    }

    fn compact_index(&self) -> Option<&CompactIndex> {
        self.rest.as_ref().and_then(|r| r.compact.as_ref())
    }

    fn entries(&self) -> impl Iterator<Item = (&[u8], u64, u64)> + '_ {
        self.slots
            .iter()
            .filter(|e| e.key_len != FREE)
            .map(move |e| (key_bytes(&e.key, e.key_len, self.arena()), e.hash, e.value))
    }

    /// The slot holding `key` (`Ok`) or the free slot where it would go (`Err`). The table
    /// must have slots; it always has a free one (it grows before it is full).
    #[inline(always)]
    fn probe(&self, h: u64, key: &[u8], packed: &[u8; INLINE_KEY]) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let e = &self.slots[i];
            if e.key_len == FREE {
                return Err(i);
            }
            if matches(e, h, key, packed, self.arena()) {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    fn find(&self, h: u64, key: &[u8]) -> Option<&Entry> {
        if self.slots.is_empty() {
            return None;
        }
        let packed = if key.len() <= INLINE_KEY {
            pack(key)
        } else {
            [0; INLINE_KEY]
        };
        if let Some(index) = self.compact_index() {
            return self.find_compact(index, h, key, &packed);
        }
        self.probe(h, key, &packed).ok().map(|i| &self.slots[i])
    }

    /// [`Shard::probe`] in the table a compact copy came from: slot by slot from the home
    /// slot to the first free one (the table always had one), each held entry found by its
    /// rank among the held slots.
    fn find_compact(
        &self,
        index: &CompactIndex,
        h: u64,
        key: &[u8],
        packed: &[u8; INLINE_KEY],
    ) -> Option<&Entry> {
        let mut i = h as usize & index.home_mask;
        loop {
            let word = index.occupied[i / 64];
            let bit = 1u64 << (i % 64);
            if word.bits & bit == 0 {
                return None;
            }
            let rank = word.before as usize + (word.bits & (bit - 1)).count_ones() as usize;
            let e = &self.slots[rank];
            if matches(e, h, key, packed, self.arena()) {
                return Some(e);
            }
            i = (i + 1) & index.home_mask;
        }
    }

    /// The home slot of hash `h`, and the slot after it when that one starts a new cache
    /// line (two entries to a line).
    #[inline(always)]
    fn home_and_next(&self, h: u64) -> (Option<&Entry>, Option<&Entry>) {
        let i = h as usize & self.slots.len().wrapping_sub(1);
        let next = if i % 2 == 1 {
            self.slots.get(i + 1)
        } else {
            None
        };
        (self.slots.get(i), next)
    }

    /// Twice the slots (at least 8), every entry moved to its place in the new table.
    #[cold]
    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(8);
        let old = std::mem::replace(&mut self.slots, vec![FREE_ENTRY; n].into_boxed_slice());
        let mask = n - 1;
        for e in old.iter().filter(|e| e.key_len != FREE) {
            let mut i = e.hash as usize & mask;
            while self.slots[i].key_len != FREE {
                i = (i + 1) & mask;
            }
            self.slots[i] = *e;
        }
    }

    /// Empties slot `i`, moving later entries of its probe run back so that every key stays
    /// reachable from its home slot (backward-shift deletion: no tombstones).
    fn remove_slot(&mut self, mut i: usize) -> Entry {
        let mask = self.slots.len() - 1;
        let removed = self.slots[i];
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let e = self.slots[j];
            if e.key_len == FREE {
                break;
            }
            let home = e.hash as usize & mask;
            // `e` may fill the hole at `i` if its home is not after `i` on the way to `j`.
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(i) & mask {
                self.slots[i] = e;
                i = j;
            }
        }
        self.slots[i] = FREE_ENTRY;
        self.len -= 1;
        removed
    }
}

/// A store's shard: its own (written since the last snapshot, changed in place) or shared
/// with snapshots (frozen until its next write, which takes it back: moved out of the `Arc`
/// if no snapshot holds it any more, copied otherwise).
#[derive(Debug, Clone)]
enum Live {
    Own(Shard),
    Shared(Arc<Shard>),
}

/// What the store keeps for a shard beside it, off the lookups' path (see [`Shard`]).
#[derive(Debug, Clone, Default)]
struct Kept {
    /// The `Arc` an owned shard was moved out of (empty, held by nobody else), for its next
    /// snapshot: a snapshot of 1M keys shares thousands of shards, and allocating an `Arc`
    /// for each at the barrier (16k then) took 1.6–13.5 ms of the job's time when the
    /// blocks had gone cold.
    spare: Option<Arc<Shard>>,
    /// A let-go snapshot's compact copy of this shard, freed just before the shard's next
    /// copy ([`KeyedStore::take_spent`]).
    unfreed: Option<Arc<Shard>>,
}

impl Live {
    #[inline(always)]
    fn get(&self) -> &Shard {
        match self {
            Live::Own(s) => s,
            Live::Shared(a) => a,
        }
    }

    /// The shard to write to: a plain reference once owned, no atomic operation per write.
    /// `frozen`/`unit`: the latest snapshot and this shard's place in it, `kept` what the
    /// store keeps beside it (see [`Live::unshare`]).
    #[inline(always)]
    fn own(&mut self, frozen: &Weak<Frozen>, unit: usize, kept: &mut Kept) -> &mut Shard {
        if let Live::Shared(_) = self {
            self.unshare(frozen, unit, kept);
        }
        match self {
            Live::Own(s) => s,
            // Not reached (`unshare` made it owned); copy-on-write all the same.
            Live::Shared(a) => Arc::make_mut(a),
        }
    }

    /// Takes the shard back from the snapshots. If the latest one still holds it, it gets a
    /// compact copy first ([`Frozen::compact`]), so the table itself is moved back, not
    /// copied; only an older snapshot still being written makes this a full copy. An older
    /// snapshot's spent copy of this shard is freed first, so the new copy takes its memory.
    #[cold]
    fn unshare(&mut self, frozen: &Weak<Frozen>, unit: usize, kept: &mut Kept) {
        drop(kept.unfreed.take());
        if let Live::Shared(a) = self {
            if Arc::strong_count(a) > 1 {
                if let Some(f) = frozen.upgrade() {
                    f.compact(unit, a);
                }
            }
        }
        if let Live::Shared(mut a) = std::mem::replace(self, Live::Own(Shard::default())) {
            *self = match Arc::get_mut(&mut a) {
                Some(shard) => {
                    let shard = std::mem::take(shard);
                    kept.spare = Some(a);
                    Live::Own(shard)
                }
                None => Live::Own((*a).clone()),
            };
        }
    }

    /// The shard as a snapshot holds it; the store keeps a share.
    fn share(&mut self, kept: &mut Kept) -> Arc<Shard> {
        match self {
            Live::Shared(a) => a.clone(),
            Live::Own(s) => {
                let shard = std::mem::take(s);
                let mut a = kept.spare.take().unwrap_or_default();
                match Arc::get_mut(&mut a) {
                    Some(slot) => *slot = shard,
                    // Only in a cloned store, whose clone shares its spares.
                    None => a = Arc::new(shard),
                }
                *self = Live::Shared(a.clone());
                a
            }
        }
    }
}

/// A snapshot's shards, each behind its own lock so that the store can swap in a compact copy
/// before its first write to a shard: the snapshot then no longer shares the table, and the
/// store takes it back without copying it (a table is at most 3/4 full and its entries are
/// 32 bytes, so a full copy of every shard written during a checkpoint nearly doubled the
/// memory of a store of 1M keys; the compact copies are about half of that).
#[derive(Debug)]
struct Frozen {
    shards: Vec<Mutex<Arc<Shard>>>,
    /// Where the compact copies go when the snapshot is let go: the store that made them.
    spent: Weak<Spent>,
}

/// A store's compact copies whose snapshot was let go, each with its shard's place, until
/// the store takes them at its next snapshot and frees each just before that shard's next
/// copy ([`Kept::unfreed`]). The copies are made on the job's thread; freed there,
/// their memory goes straight to the next copies. Freed on the thread that let the snapshot
/// go, the allocator (mimalloc) handed their pages back to the system about a second later,
/// and the next checkpoint's copies faulted fresh, zeroed pages in: up to 3% of the job's
/// time at 1M keys with 1 s checkpoints (measured with `perf`, `clear_page_erms` under
/// `Live::unshare`).
type Spent = Mutex<Vec<(usize, Arc<Shard>)>>;

impl Drop for Frozen {
    fn drop(&mut self) {
        let Some(spent) = self.spent.upgrade() else {
            return;
        };
        // Only the copies: a shard still shared with the store must be let go now, or the
        // store's next write to it would copy the whole table.
        let copies: Vec<(usize, Arc<Shard>)> = std::mem::take(&mut self.shards)
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .enumerate()
            .filter(|(_, s)| s.is_compact())
            .collect();
        spent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(copies);
    }
}

impl Frozen {
    fn get(&self, unit: usize) -> Arc<Shard> {
        self.shards[unit]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces this snapshot's share of `live` (shard `unit`) by a compact copy of it; does
    /// nothing if the snapshot holds another version of the shard.
    fn compact(&self, unit: usize, live: &Arc<Shard>) {
        let Some(slot) = self.shards.get(unit) else {
            return;
        };
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::ptr_eq(&slot, live) && !slot.is_compact() {
            *slot = Arc::new(live.compacted());
        }
    }
}

/// The shards of one key group, of a live store or of a snapshot.
#[derive(Debug, Clone, Copy)]
enum Shards<'a> {
    Live(&'a [Live]),
    Frozen(&'a [Arc<Shard>]),
}

impl<'a> Shards<'a> {
    fn len(self) -> usize {
        match self {
            Shards::Live(s) => s.len(),
            Shards::Frozen(s) => s.len(),
        }
    }

    fn get(self, i: usize) -> &'a Shard {
        match self {
            Shards::Live(s) => s[i].get(),
            Shards::Frozen(s) => &s[i],
        }
    }

    fn iter(self) -> impl Iterator<Item = &'a Shard> + 'a {
        (0..self.len()).map(move |i| self.get(i))
    }
}

/// The keys and values of one key group (a view over its shards).
#[derive(Debug, Clone, Copy)]
pub struct GroupTable<'a> {
    /// A power of two of shards, picked by [`shard_of`].
    shards: Shards<'a>,
}

impl<'a> GroupTable<'a> {
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.len == 0)
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

    /// Calls `f` with every entry of the group as [`GroupTable::entries`] yields them, and the
    /// entry's inline key field: a key of at most [`INLINE_KEY`] bytes zero-padded (a longer
    /// key's field holds its arena offset, no key bytes). A plain
    /// loop over each shard's slots, which a full checkpoint runs for every key: the iterator
    /// chain took a third longer. The next shard's first kilobyte is fetched meanwhile (about
    /// a tenth less time): each table is an allocation of its own, where the hardware's
    /// prefetcher starts cold.
    pub fn for_each_entry(&self, mut f: impl FnMut(&'a [u8; INLINE_KEY], &'a [u8], u64, u64)) {
        let n = self.shards.len();
        for i in 0..n {
            if i + 1 < n {
                for e in self.shards.get(i + 1).slots.iter().step_by(2).take(16) {
                    prefetch_line(e);
                }
            }
            let s = self.shards.get(i);
            for e in s.slots.iter() {
                if e.key_len != FREE {
                    f(
                        &e.key,
                        key_bytes(&e.key, e.key_len, s.arena()),
                        e.hash,
                        e.value,
                    );
                }
            }
        }
    }

    fn shard(&self, h: u64) -> &'a Shard {
        self.shards
            .get(shard_of(h, self.shards.len().trailing_zeros()))
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
    /// The key groups of the job's max parallelism: a key's group from its hash.
    groups: KeyGroups,
    /// Key group `g` is the shards `(g - range.start) << shard_bits ..` (`1 << shard_bits` of
    /// them); each behind its own `Arc`, the unit of copy-on-write.
    live: Vec<Live>,
    /// The shards of the latest snapshot, while it lives: the store hands it a compact copy
    /// of a shard before taking the shard back ([`Live::unshare`]).
    frozen: Weak<Frozen>,
    /// The compact copies of snapshots let go since the last snapshot (see [`Spent`]).
    spent: Arc<Spent>,
    /// What the store keeps beside each shard (`kept[i]` for `live[i]`). A spent copy the
    /// last snapshot took is freed when its shard is next copied, the rest at the next
    /// snapshot: all at once at the snapshot, freeing the copies of a 1M-key store (16k
    /// then) held the job's thread 2-30 ms, inside the checkpoint's duration.
    kept: Vec<Kept>,
    shard_bits: u32,
    len: usize,
    /// `changes[g - range.start]`: keys of group `g` written or removed in this epoch (only
    /// while `tracking`).
    changes: Vec<GroupChanges>,
    /// Bumped by every snapshot; entries written since carry it.
    epoch: u32,
    tracking: bool,
    /// Whether changes are tracked at all once snapshots start ([`KeyedStore::without_change_tracking`]).
    track_changes: bool,
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
            groups: KeyGroups::new(max_parallelism),
            live: (0..(range.len() as usize) << shard_bits(range.len()))
                .map(|_| Live::Own(Shard::default()))
                .collect(),
            frozen: Weak::new(),
            spent: Arc::default(),
            kept: vec![Kept::default(); (range.len() as usize) << shard_bits(range.len())],
            shard_bits: shard_bits(range.len()),
            len: 0,
            changes: Self::no_changes(range),
            epoch: 0,
            tracking: false,
            track_changes: true,
            base: DeltaBase::Empty,
            next_sequence: 0,
        }
    }

    /// A store whose snapshots are only ever written full: it keeps no change lists (24 bytes
    /// per key written between snapshots). Its snapshots' delta is the whole state relative to
    /// [`DeltaBase::Empty`], so a store that wrote a delta of it anyway would stay correct.
    pub fn without_change_tracking(mut self) -> Self {
        self.track_changes = false;
        self
    }

    fn no_changes(range: KeyGroupRange) -> Vec<GroupChanges> {
        (0..range.len()).map(|_| GroupChanges::default()).collect()
    }

    pub fn range(&self) -> KeyGroupRange {
        self.range
    }

    pub fn max_parallelism(&self) -> u32 {
        self.groups.max_parallelism()
    }

    /// The key groups of this store's max parallelism.
    pub fn key_groups(&self) -> KeyGroups {
        self.groups
    }

    /// Where a key of hash `hash` lives: its key group and table hash.
    #[inline(always)]
    pub fn place(&self, hash: KeyHash) -> KeyPlace {
        self.groups.place(hash)
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
        self.get_or_insert_at(self.place(hash), key, init)
    }

    /// [`KeyedStore::get_or_insert`] of a key whose place is known ([`KeyedStore::place`],
    /// or [`KeyPlace::of_routed`] of the key the hash exchange routed).
    #[inline]
    pub fn get_or_insert_at(
        &mut self,
        place: KeyPlace,
        key: &[u8],
        init: u64,
    ) -> Result<&mut u64, KeyedStateError> {
        let idx = self.slot(place.key_group)?;
        self.upsert(idx, place.key_group, place.table, key, init)
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
        let unit = (idx << self.shard_bits) | shard_of(h, self.shard_bits);
        // Copy-on-write: a snapshot still holding the shard gets a compact copy of it.
        let shard = self.live[unit].own(&self.frozen, unit, &mut self.kept[unit]);
        if shard.slots.is_empty() {
            shard.grow();
        }
        let packed = if key.len() <= INLINE_KEY {
            pack(key)
        } else {
            [0; INLINE_KEY]
        };
        let epoch = self.epoch;
        match shard.probe(h, key, &packed) {
            Ok(i) => {
                let e = &mut shard.slots[i];
                // The first write of this key in this epoch: the next delta must carry it.
                if e.epoch != epoch {
                    e.epoch = epoch;
                    if self.tracking {
                        self.changes[idx].keys.push(KeyRef::of(e));
                    }
                }
                Ok(&mut e.value)
            }
            Err(free) => {
                // Grown only for a new key: a write of a key already there never moves the
                // table (a shard taken back after a snapshot keeps its table as it was).
                let i = if needs_growth(shard.len, shard.slots.len()) {
                    shard.grow();
                    // The key is still absent: the probe gives its free slot.
                    shard.probe(h, key, &packed).unwrap_or_else(|slot| slot)
                } else {
                    free
                };
                let stored = if key.len() <= INLINE_KEY {
                    packed
                } else {
                    let arena = shard.arena_mut();
                    let off = u32::try_from(arena.len())
                        .ok()
                        .filter(|off| {
                            u32::try_from(key.len())
                                .ok()
                                .and_then(|l| off.checked_add(l))
                                .is_some_and(|end| end < FREE)
                        })
                        .ok_or(KeyedStateError::ArenaFull { key_group })?;
                    arena.extend_from_slice(key);
                    let mut b = [0u8; INLINE_KEY];
                    b[..4].copy_from_slice(&off.to_le_bytes());
                    b
                };
                self.len += 1;
                shard.len += 1;
                let e = &mut shard.slots[i];
                *e = Entry {
                    hash: h,
                    value: init,
                    key: stored,
                    key_len: key.len() as u32,
                    epoch,
                };
                if self.tracking {
                    self.changes[idx].keys.push(KeyRef::of(e));
                }
                Ok(&mut e.value)
            }
        }
    }

    /// Starts loading the table slot a lookup of `hash` begins at, without waiting for it:
    /// a caller with many keys calls this for a run of them first, then looks them up, so
    /// that their cache misses overlap instead of following one another (with 1M keys
    /// nearly every lookup misses). Only a hint: a key of another subtask is ignored here.
    #[inline(always)]
    pub fn prefetch(&self, hash: KeyHash) {
        self.prefetch_slot(self.place(hash));
    }

    /// The shard a key at `place` is in (`None` for a key of another subtask).
    #[inline(always)]
    fn live_of(&self, place: KeyPlace) -> Option<&Live> {
        let idx = place.key_group.checked_sub(self.range.start)? as usize;
        let unit = (idx << self.shard_bits) | shard_of(place.table, self.shard_bits);
        (place.key_group <= self.range.end)
            .then(|| self.live.get(unit))
            .flatten()
    }

    /// The first of two prefetch passes: starts loading the shard a key at `place` is in
    /// (where its table is), so that [`KeyedStore::prefetch_slot`] finds it without waiting.
    /// With a few thousand keys spread over ~8k shards, the shard itself was the miss.
    #[inline(always)]
    pub fn prefetch_shard(&self, place: KeyPlace) {
        if let Some(live) = self.live_of(place) {
            prefetch_line(live);
        }
    }

    /// [`KeyedStore::prefetch`] of a key whose place is known.
    #[inline(always)]
    pub fn prefetch_slot(&self, place: KeyPlace) {
        if let Some(shard) = self.live_of(place).map(Live::get) {
            let (home, next) = shard.home_and_next(place.table);
            if let Some(e) = home {
                prefetch_entry(e);
            }
            // Linear probing goes on to the next slot; when that is in the next cache line,
            // load it too (a key of a well-filled table is often one slot past its home).
            if let Some(e) = next {
                prefetch_entry(e);
            }
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, hash: KeyHash, key: &[u8]) -> Result<Option<u64>, KeyedStateError> {
        let key_group = self.groups.of(hash.flink);
        let idx = self.slot(key_group)?;
        Ok(self.group_at(idx).find(hash.table, key).map(|e| e.value))
    }

    /// Removes `key`, returning its value if it was present. The next delta records the
    /// removal as a deletion.
    pub fn remove(&mut self, hash: KeyHash, key: &[u8]) -> Result<Option<u64>, KeyedStateError> {
        let key_group = self.groups.of(hash.flink);
        let idx = self.slot(key_group)?;
        Ok(self.remove_at(idx, hash.table, key))
    }

    fn remove_at(&mut self, idx: usize, h: u64, key: &[u8]) -> Option<u64> {
        let unit = (idx << self.shard_bits) | shard_of(h, self.shard_bits);
        // Look before copying: removing an absent key must not copy a shard a snapshot holds.
        self.live[unit].get().find(h, key)?;
        let shard = self.live[unit].own(&self.frozen, unit, &mut self.kept[unit]);
        let packed = if key.len() <= INLINE_KEY {
            pack(key)
        } else {
            [0; INLINE_KEY]
        };
        let i = shard.probe(h, key, &packed).ok()?;
        let e = shard.remove_slot(i);
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
            shards: Shards::Live(&self.live[idx * n..(idx + 1) * n]),
        }
    }

    /// Every owned key group with its table, in group order.
    pub fn groups(&self) -> impl Iterator<Item = (u32, GroupTable<'_>)> + '_ {
        let n = 1usize << self.shard_bits;
        self.range
            .iter()
            .zip(self.live.chunks(n).map(|s| GroupTable {
                shards: Shards::Live(s),
            }))
    }

    /// A consistent view of the store as it is now, with the changes since the previous
    /// snapshot (or the restore).
    ///
    /// The synchronous part of a checkpoint, so it is cheap: one `Arc` clone per shard (about
    /// 8k) and a move of the change lists, nothing proportional to the number of keys. Later
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
        self.take_spent();
        let frozen = Arc::new(Frozen {
            spent: Arc::downgrade(&self.spent),
            shards: self
                .live
                .iter_mut()
                .zip(&mut self.kept)
                .map(|(l, kept)| Mutex::new(l.share(kept)))
                .collect(),
        });
        self.frozen = Arc::downgrade(&frozen);
        let snap = KeyedSnapshot {
            range: self.range,
            max_parallelism: self.max_parallelism(),
            frozen,
            pinned: OnceLock::new(),
            len: self.len,
            shard_bits: self.shard_bits,
            changes,
            sequence,
            delta_base: self.base,
        };
        self.next_sequence += 1;
        self.base = match self.track_changes {
            true => DeltaBase::Snapshot(sequence),
            false => DeltaBase::Empty,
        };
        self.epoch = self.epoch.wrapping_add(1);
        self.tracking = self.track_changes;
        snap
    }

    /// Frees the spent copies no write has freed since the last snapshot (their shards were
    /// not written) and takes the copies let go since, to free one by one ([`Live::unshare`]).
    fn take_spent(&mut self) {
        for kept in &mut self.kept {
            drop(kept.unfreed.take());
        }
        // Placed after the lock is released: a snapshot let go meanwhile need not wait.
        let spent = std::mem::take(&mut *self.spent.lock().unwrap_or_else(|p| p.into_inner()));
        if spent.is_empty() {
            return;
        }
        for (unit, copy) in spent {
            if let Some(kept) = self.kept.get_mut(unit) {
                kept.unfreed = Some(copy);
            }
        }
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
        self.tracking = self.track_changes;
        self.base = match self.track_changes {
            true => DeltaBase::Restored,
            false => DeltaBase::Empty,
        };
        self.next_sequence = 0;
    }

    fn wrong_group(&self, key_group: u32) -> KeyedStateError {
        KeyedStateError::WrongKeyGroup {
            key_group,
            range: self.range,
            max_parallelism: self.max_parallelism(),
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
    /// Shared with the store, which may swap in compact copies (same contents).
    frozen: Arc<Frozen>,
    /// Every shard held at once, for [`KeyedSnapshot::groups`] and
    /// [`KeyedSnapshot::changes`] (tools and tests): taken on their first call.
    pinned: OnceLock<Vec<Arc<Shard>>>,
    len: usize,
    shard_bits: u32,
    /// `None` with [`DeltaBase::Empty`]: every key is a change.
    changes: Option<Arc<Vec<GroupChanges>>>,
    sequence: u64,
    delta_base: DeltaBase,
}

impl KeyedSnapshot {
    /// Number of keys in the snapshot.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key group with its table, in group order. Holds every shard until the snapshot
    /// is dropped, so the store's next write to each copies it in full: for tools and tests;
    /// a checkpoint encodes with [`KeyedSnapshot::for_each_group`].
    pub fn groups(&self) -> impl Iterator<Item = (u32, GroupTable<'_>)> + '_ {
        let n = 1usize << self.shard_bits;
        let pinned = self.pinned.get_or_init(|| {
            (0..self.frozen.shards.len())
                .map(|i| self.frozen.get(i))
                .collect()
        });
        self.range.iter().zip(pinned.chunks(n).map(|s| GroupTable {
            shards: Shards::Frozen(s),
        }))
    }

    /// Calls `f` with each key group's index, number and table, in group order, holding only
    /// that group's shards meanwhile: the store writing on hands this snapshot compact copies
    /// of the other shards and takes its tables back without copying them.
    fn each_group(&self, mut f: impl FnMut(usize, u32, GroupTable<'_>)) {
        let n = 1usize << self.shard_bits;
        let mut held: Vec<Arc<Shard>> = Vec::with_capacity(n);
        for (idx, key_group) in self.range.iter().enumerate() {
            held.clear();
            held.extend((idx * n..(idx + 1) * n).map(|i| self.frozen.get(i)));
            f(
                idx,
                key_group,
                GroupTable {
                    shards: Shards::Frozen(&held),
                },
            );
        }
    }

    /// [`KeyedSnapshot::groups`] one group at a time (see `each_group`): what a full
    /// checkpoint encodes.
    pub fn for_each_group(&self, mut f: impl FnMut(u32, GroupTable<'_>)) {
        self.each_group(|_, key_group, group| f(key_group, group));
    }

    /// [`KeyedSnapshot::changes`] one group at a time, holding only that group's shards: what
    /// an incremental checkpoint encodes.
    pub fn for_each_change_group(&self, mut f: impl FnMut(u32, &[Change<'_>])) {
        self.each_group(|idx, key_group, group| {
            let changes = self.group_changes(idx, group);
            if !changes.is_empty() {
                f(key_group, &changes);
            }
        });
    }

    /// The changes of group `idx` (its table `group`), each key once.
    fn group_changes<'a>(&'a self, idx: usize, group: GroupTable<'a>) -> Vec<Change<'a>> {
        match &self.changes {
            None => group
                .entries()
                .map(|(key, hash, v)| Change {
                    key,
                    hash,
                    value: Some(v),
                })
                .collect(),
            Some(all) => resolve(group, &all[idx]),
        }
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
    /// Holds every shard, like [`KeyedSnapshot::groups`].
    pub fn changes(&self) -> impl Iterator<Item = (u32, Vec<Change<'_>>)> + '_ {
        self.groups()
            .enumerate()
            .filter_map(move |(idx, (key_group, group))| {
                let changes = self.group_changes(idx, group);
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
            let key = key_bytes(&r.key, r.key_len, group.shard(r.hash).arena());
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
    fn every_table_entry_lies_within_one_cache_line() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
        let mut store = full_store();
        for i in 0..20_000u64 {
            let key = format!("w{i}");
            store
                .get_or_insert(hash_str(key.as_bytes()), key.as_bytes(), 0)
                .unwrap();
        }
        for live in &store.live {
            let slots = &live.get().slots;
            for e in slots.iter() {
                let at = e as *const Entry as usize;
                assert_eq!(at / 64, (at + 31) / 64, "an entry across two lines");
            }
        }
    }

    /// A table grows only for a new key: a write of a key already there, to a table as full
    /// as it may be, leaves the table where it is (a shard taken back after a snapshot keeps
    /// the table the snapshot saw, and a moved table would be a copy on the data path).
    #[test]
    fn a_write_of_a_present_key_never_moves_its_table() {
        let mut store = full_store();
        let mut full_tables = 0;
        for i in 0..20_000i64 {
            let k = i.to_le_bytes();
            store.get_or_insert(hash_int(i), &k, 0).unwrap();
            let place = store.place(hash_int(i));
            let unit = (store.slot(place.key_group).unwrap() << store.shard_bits)
                | shard_of(place.table, store.shard_bits);
            let table = |store: &KeyedStore| {
                let s = store.live[unit].get();
                (
                    s.slots.as_ptr(),
                    s.slots.len(),
                    needs_growth(s.len, s.slots.len()),
                )
            };
            let before = table(&store);
            if !before.2 {
                continue;
            }
            full_tables += 1;
            *store.get_or_insert(hash_int(i), &k, 0).unwrap() += 1;
            let (ptr, len, _) = table(&store);
            assert_eq!((ptr, len), (before.0, before.1), "key {i}'s table moved");
        }
        assert!(full_tables > 100, "only {full_tables} tables were full");
        assert_eq!(store.len(), 20_000);
    }

    /// A lookup reads its shard before its slot: a shard is one aligned half cache line, so
    /// the store's ~8k shards take 256 KB of the core's cache, and none spans two lines.
    #[test]
    fn every_shard_lies_within_one_cache_line() {
        assert_eq!(std::mem::size_of::<Live>(), 32);
        let store = full_store();
        for live in &store.live {
            let at = live as *const Live as usize;
            assert_eq!(at % 32, 0, "a shard across two lines");
        }
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

    /// A store whose checkpoints are always full keeps no change lists, and its snapshots
    /// say their delta is the whole state: nothing can build a wrong delta on them.
    #[test]
    fn a_store_without_change_tracking_keeps_no_change_lists() {
        let mut store = full_store().without_change_tracking();
        for round in 0..3u64 {
            for i in 0..1000i64 {
                let k = i.to_le_bytes();
                *store.get_or_insert(hash_int(i), &k, 0).unwrap() += 1;
            }
            assert!(store.changes.iter().all(|g| g.keys.is_empty()));
            let snap = store.snapshot();
            assert_eq!(snap.delta_base(), DeltaBase::Empty);
            assert_eq!(snap.delta_len(), 1000);
            let mut values: Vec<u64> = snap
                .changes()
                .flat_map(|(_, cs)| cs.into_iter().map(|c| c.value.unwrap()))
                .collect();
            values.dedup();
            assert_eq!(values, vec![round + 1], "every key, with its whole value");
        }
        let mut tracked = full_store();
        for i in 0..10i64 {
            let k = i.to_le_bytes();
            *tracked.get_or_insert(hash_int(i), &k, 0).unwrap() += 1;
        }
        tracked.snapshot();
        let k = 3i64.to_le_bytes();
        *tracked.get_or_insert(hash_int(3), &k, 0).unwrap() += 1;
        assert_eq!(
            tracked.snapshot().delta_len(),
            1,
            "a tracking store lists its changes"
        );
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

    /// Random inserts, updates and removals (many keys per shard, so probe runs wrap and
    /// removals shift entries back), with snapshots taken and dropped in between, against a
    /// plain map: every key stays reachable and every snapshot keeps its own view.
    #[test]
    fn random_writes_and_removals_match_a_map() {
        let mut store = KeyedStore::new(KeyGroupRange::for_subtask(0, 1, 1), 1);
        let mut model: HashMap<i64, u64> = HashMap::new();
        let mut z = 7u64;
        let mut held: Option<(KeyedSnapshot, HashMap<i64, u64>)> = None;
        for round in 0..100_000u64 {
            z = z
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = ((z >> 33) % 20_000) as i64;
            let key = k.to_le_bytes();
            if (z >> 20).is_multiple_of(3) {
                let got = store.remove(hash_int(k), &key).unwrap();
                assert_eq!(got, model.remove(&k), "remove {k}");
            } else {
                *store.get_or_insert(hash_int(k), &key, 0).unwrap() += round;
                *model.entry(k).or_default() += round;
            }
            if round % 10_000 == 0 {
                // Take a snapshot; drop the previous one (its shards go back unshared).
                let snap = store.snapshot();
                held = Some((snap, model.clone()));
            }
            if round % 10_000 == 5000 {
                if let Some((snap, at)) = held.take() {
                    let mut seen: HashMap<i64, u64> = HashMap::new();
                    for (_, t) in snap.groups() {
                        for (k, v) in t.iter() {
                            seen.insert(i64::from_le_bytes(k.try_into().unwrap()), v);
                        }
                    }
                    assert_eq!(seen, at, "snapshot of round {round}");
                    // Lookups too (what a delta resolves its changes with).
                    let (_, g) = snap.groups().next().unwrap();
                    for k in (0..20_000i64).step_by(3) {
                        let found = g.find(hash_int(k).table, &k.to_le_bytes());
                        assert_eq!(found.map(|e| e.value), at.get(&k).copied(), "key {k}");
                    }
                }
            }
        }
        assert_eq!(store.len(), model.len());
        for k in 0..20_000i64 {
            let got = store.get(hash_int(k), &k.to_le_bytes()).unwrap();
            assert_eq!(got, model.get(&k).copied(), "key {k}");
        }
    }

    /// The snapshot's contents as `for_each_group` (the checkpoint's way) sees them.
    fn contents_of(snap: &KeyedSnapshot) -> HashMap<i64, u64> {
        let mut seen = HashMap::new();
        snap.for_each_group(|_, t| {
            for (k, v) in t.iter() {
                seen.insert(i64::from_le_bytes(k.try_into().unwrap()), v);
            }
        });
        seen
    }

    /// A write after a snapshot gives the snapshot a compact copy of the shard and moves the
    /// table back into the store: no shard is copied in full, and the snapshot's view stays.
    #[test]
    fn writes_after_a_snapshot_hand_it_compact_copies() {
        let mut store = full_store();
        for i in 0..20_000i64 {
            *store
                .get_or_insert(hash_int(i), &i.to_le_bytes(), 0)
                .unwrap() += i as u64;
        }
        let snap = store.snapshot();
        let before: HashMap<i64, u64> = (0..20_000i64).map(|i| (i, i as u64)).collect();
        for i in 0..20_000i64 {
            *store
                .get_or_insert(hash_int(i), &i.to_le_bytes(), 0)
                .unwrap() += 1;
        }
        store.remove(hash_int(7), &7i64.to_le_bytes()).unwrap();
        let slots = &snap.frozen.shards;
        let compact = slots
            .iter()
            .filter(|s| s.lock().unwrap().is_compact())
            .count();
        let written = slots.iter().filter(|s| s.lock().unwrap().len > 0).count();
        assert_eq!(
            compact, written,
            "every written shard was handed a compact copy"
        );
        assert!(store
            .live
            .iter()
            .all(|l| matches!(l, Live::Own(..)) || l.get().len == 0));
        assert_eq!(contents_of(&snap), before);
        assert_eq!(snap.len(), 20_000);
        // Lookups in compact copies (what a delta resolves its changes with).
        let k = 7i64.to_le_bytes();
        let (_, g) = snap
            .groups()
            .find(|(g, _)| *g == hash_int(7).key_group(128))
            .unwrap();
        assert_eq!(g.find(hash_int(7).table, &k).map(|e| e.value), Some(7));
        assert_eq!(store.get(hash_int(7), &k).unwrap(), None);
        assert_eq!(
            store.get(hash_int(8), &8i64.to_le_bytes()).unwrap(),
            Some(9)
        );
    }

    /// A shard taken back from a snapshot keeps its `Arc` (held by nothing else) and the
    /// next snapshot shares the shard in it: no allocation per shard at the barrier.
    #[test]
    fn a_shard_taken_back_is_shared_again_in_its_own_arc() {
        let mut store = full_store();
        let write = |store: &mut KeyedStore, i: i64| {
            *store
                .get_or_insert(hash_int(i), &i.to_le_bytes(), 0)
                .unwrap() += 1;
        };
        (0..20_000i64).for_each(|i| write(&mut store, i));
        let arcs = |snap: &KeyedSnapshot| -> Vec<*const Shard> {
            let shards = &snap.frozen.shards;
            shards
                .iter()
                .map(|s| Arc::as_ptr(&s.lock().unwrap()))
                .collect()
        };
        let snap = store.snapshot();
        let first = arcs(&snap);
        (0..20_000i64)
            .filter(|i| i % 3 == 0)
            .for_each(|i| write(&mut store, i));
        drop(snap);
        // The written shards keep the very `Arc` the snapshot held them in (alive all along,
        // so not an address the allocator gave again).
        let mut kept = 0;
        for (i, (l, k)) in store.live.iter().zip(&store.kept).enumerate() {
            match (l, &k.spare) {
                (Live::Own(_), Some(a)) => {
                    assert_eq!(Arc::as_ptr(a), first[i], "shard {i}");
                    kept += 1;
                }
                (Live::Own(_), None) => panic!("shard {i} taken back without its Arc"),
                (Live::Shared(_), _) => {}
            }
        }
        assert!(kept > 0 && kept < first.len(), "{kept} of {}", first.len());
        let next = store.snapshot();
        assert_eq!(arcs(&next), first, "every shard shared in the same Arc");
        assert!(store.live.iter().all(|l| matches!(l, Live::Shared(_))));
        let expect: HashMap<i64, u64> = (0..20_000i64)
            .map(|i| (i, 1 + u64::from(i % 3 == 0)))
            .collect();
        assert_eq!(contents_of(&next), expect);
    }

    /// A snapshot let go leaves its compact copies with the store, which takes them at its
    /// next snapshot and frees each at its shard's next write (on its own thread); the
    /// shards it still shared are let go at once, so that a later first write takes the
    /// table back without copying it.
    #[test]
    fn a_let_go_snapshots_copies_are_freed_at_their_shards_next_write() {
        let mut store = full_store();
        let keys = 0..20_000i64;
        let write = |store: &mut KeyedStore, i: i64| {
            *store
                .get_or_insert(hash_int(i), &i.to_le_bytes(), 0)
                .unwrap() += 1;
        };
        keys.clone().for_each(|i| write(&mut store, i));
        let snap = store.snapshot();
        // Half the keys written while the snapshot lives: their shards get compact copies.
        keys.clone()
            .filter(|i| i % 2 == 0)
            .for_each(|i| write(&mut store, i));
        let copies = snap
            .frozen
            .shards
            .iter()
            .filter(|s| s.lock().unwrap().is_compact())
            .count();
        assert!(copies > 0);
        let tables: Vec<*const Entry> = store.live.iter().map(|l| l.get().slots.as_ptr()).collect();
        drop(snap);
        assert_eq!(
            store.spent.lock().unwrap().len(),
            copies,
            "only the copies wait"
        );
        keys.clone().for_each(|i| write(&mut store, i));
        assert!(
            store
                .live
                .iter()
                .zip(&tables)
                .all(|(l, t)| l.get().slots.as_ptr() == *t
                    && (matches!(l, Live::Own(..)) || l.get().len == 0)),
            "every table taken back without a copy"
        );
        let next = store.snapshot();
        assert!(
            store.spent.lock().unwrap().is_empty(),
            "taken at the next snapshot"
        );
        let unfreed =
            |store: &KeyedStore| store.kept.iter().filter(|k| k.unfreed.is_some()).count();
        assert_eq!(unfreed(&store), copies, "not freed at the snapshot");
        let expect: HashMap<i64, u64> = keys.map(|i| (i, 2 + u64::from(i % 2 == 0))).collect();
        assert_eq!(contents_of(&next), expect);
        // Each is freed by the next write to its shard, and only then.
        let place = store.place(hash_int(0));
        let unit = (store.slot(place.key_group).unwrap() << store.shard_bits)
            | shard_of(place.table, store.shard_bits);
        let weak = Arc::downgrade(
            store.kept[unit]
                .unfreed
                .as_ref()
                .expect("key 0's shard was copied"),
        );
        write(&mut store, 0);
        assert!(weak.upgrade().is_none(), "freed at its shard's write");
        assert_eq!(unfreed(&store), copies - 1, "the others still wait");
        (0..20_000i64)
            .filter(|i| i % 2 == 0)
            .for_each(|i| write(&mut store, i));
        assert_eq!(unfreed(&store), 0, "every copy freed by its shard's write");
        // A copy whose shard is not written before the snapshot after is freed there.
        drop(next);
        let third = store.snapshot();
        assert_eq!(unfreed(&store), copies);
        drop(third);
        let _fourth = store.snapshot();
        assert_eq!(
            unfreed(&store),
            0,
            "left over copies freed at the snapshot after"
        );
    }

    /// Lookups in compact copies (what a delta's changes are resolved with) find every key
    /// and no other, with many keys per shard so that probe runs wrap around a table's end,
    /// and removals (which move entries back along their probe runs) before the snapshot.
    #[test]
    fn compact_copies_find_every_key() {
        let mut store = KeyedStore::new(KeyGroupRange::for_subtask(0, 1, 1), 1);
        let long = |i: i64| format!("a longer key number {i}").into_bytes();
        let removed = |i: i64| i % 5 == 3;
        for i in 0..30_000i64 {
            *store
                .get_or_insert(hash_int(i), &i.to_le_bytes(), 0)
                .unwrap() = i as u64;
            let k = long(i);
            *store.get_or_insert(hash_str(&k), &k, 0).unwrap() = i as u64 + 1;
        }
        for i in (0..30_000i64).filter(|&i| removed(i)) {
            store.remove(hash_int(i), &i.to_le_bytes()).unwrap();
        }
        let snap = store.snapshot();
        for i in 0..30_000i64 {
            *store
                .get_or_insert(hash_int(i), &i.to_le_bytes(), 0)
                .unwrap() += 7;
        }
        let (_, g) = snap.groups().next().unwrap();
        assert!(g.shards.iter().all(|s| s.is_compact() || s.len == 0));
        for i in 0..30_000i64 {
            let found = g.find(hash_int(i).table, &i.to_le_bytes());
            let want = (!removed(i)).then_some(i as u64);
            assert_eq!(found.map(|e| e.value), want, "key {i}");
            let k = long(i);
            let found = g.find(hash_str(&k).table, &k);
            assert_eq!(found.map(|e| e.value), Some(i as u64 + 1), "long key {i}");
        }
        for i in 30_000..31_000i64 {
            assert!(g.find(hash_int(i).table, &i.to_le_bytes()).is_none());
        }
    }

    /// The checkpoint encodes on another thread while the data path writes on: the snapshot
    /// still sees exactly the state at the snapshot, for full and delta alike.
    #[test]
    fn a_snapshot_read_while_the_store_writes_keeps_its_view() {
        let mut store = full_store();
        for i in 0..30_000i64 {
            *store
                .get_or_insert(hash_int(i), &i.to_le_bytes(), 0)
                .unwrap() += 1;
        }
        store.snapshot();
        for i in 0..30_000i64 {
            *store
                .get_or_insert(hash_int(i), &i.to_le_bytes(), 0)
                .unwrap() += 1;
        }
        let snap = Arc::new(store.snapshot());
        let reader = {
            let snap = snap.clone();
            std::thread::spawn(move || {
                let full = contents_of(&snap);
                let mut delta = 0;
                snap.for_each_change_group(|_, cs| {
                    assert!(cs.iter().all(|c| c.value == Some(2)));
                    delta += cs.len();
                });
                (full, delta)
            })
        };
        for round in 0..3 {
            for i in 0..30_000i64 {
                *store
                    .get_or_insert(hash_int(i), &i.to_le_bytes(), 0)
                    .unwrap() += round;
            }
        }
        let (full, delta) = reader.join().unwrap();
        assert_eq!(full, (0..30_000i64).map(|i| (i, 2)).collect());
        assert_eq!(delta, 30_000);
    }

    #[test]
    fn prefetch_is_only_a_hint() {
        // Subtask 0 of 2: "a" belongs to the other subtask; prefetching it does nothing.
        let mut store = KeyedStore::new(KeyGroupRange::for_subtask(0, 2, 128), 128);
        store.prefetch(hash_str(b"a"));
        store.prefetch(hash_str(b"b"));
        bump(&mut store, b"b", 2);
        store.prefetch(hash_str(b"b"));
        assert_eq!(store.get(hash_str(b"b"), b"b").unwrap(), Some(2));
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
