//! The keyed value store that aggregates keep their per-key values in.
//!
//! One [`KeyedStore`] per operator subtask holds an 8-byte value (an `i64` or the bits of an
//! `f64`) per key, for the key groups that subtask owns. It is laid out for snapshots with a
//! short synchronous part:
//! - one table per key group, so a restore with another parallelism moves whole groups;
//! - each table behind an [`Arc`]: a write goes through [`Arc::make_mut`], so a snapshot is a
//!   clone of the `Arc`s (copy-on-write: the first write to a group after a snapshot copies
//!   that group once, later writes go to the copy);
//! - entries are plain fixed-size data (`hash`, key offset and length in the group's
//!   append-only key arena, value): copying a group is a memcpy of two buffers, never an
//!   allocation per entry.
//!
//! It must not know about tasks, channels or files: writing a snapshot to disk is the
//! checkpoint module's job. A key is hashed once by the caller ([`KeyHash`]), never here.

use crate::state::keygroup::{KeyGroupRange, KeyHash};
use hashbrown::HashTable;
use std::sync::Arc;

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

/// One entry: where its key lies in the group's arena, and its value.
#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: u64,
    key_off: u32,
    key_len: u32,
    value: u64,
}

/// The keys and values of one key group.
#[derive(Debug, Clone, Default)]
pub struct GroupTable {
    /// Key bytes, appended as keys arrive; never rewritten.
    arena: Vec<u8>,
    table: HashTable<Entry>,
}

impl GroupTable {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Every `(key, value)` of the group, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        self.table.iter().map(move |e| {
            let start = e.key_off as usize;
            (&self.arena[start..start + e.key_len as usize], e.value)
        })
    }
}

/// Per-subtask keyed values, partitioned by key group.
#[derive(Debug, Clone)]
pub struct KeyedStore {
    range: KeyGroupRange,
    max_parallelism: u32,
    /// `groups[g - range.start]` is key group `g`.
    groups: Vec<Arc<GroupTable>>,
    len: usize,
}

impl KeyedStore {
    /// An empty store for the key groups in `range` of `max_parallelism`.
    pub fn new(range: KeyGroupRange, max_parallelism: u32) -> Self {
        KeyedStore {
            range,
            max_parallelism,
            groups: (0..range.len())
                .map(|_| Arc::new(GroupTable::default()))
                .collect(),
            len: 0,
        }
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

    /// The value of `key`, inserting `init` first if the key is new.
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
        if !self.range.contains(key_group) {
            return Err(self.wrong_group(key_group));
        }
        let slot = &mut self.groups[(key_group - self.range.start) as usize];
        // Copy-on-write: copies the group only if a snapshot still holds it.
        let group = Arc::make_mut(slot);
        let GroupTable { arena, table } = group;
        let h = hash.table;
        let entry = table.entry(
            h,
            |e| {
                e.hash == h
                    && e.key_len as usize == key.len()
                    && &arena[e.key_off as usize..e.key_off as usize + key.len()] == key
            },
            |e| e.hash,
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(o) => Ok(&mut o.into_mut().value),
            hashbrown::hash_table::Entry::Vacant(v) => {
                let key_off = u32::try_from(arena.len())
                    .ok()
                    .filter(|off| off.checked_add(key.len() as u32).is_some())
                    .ok_or(KeyedStateError::ArenaFull { key_group })?;
                arena.extend_from_slice(key);
                self.len += 1;
                let e = v.insert(Entry {
                    hash: h,
                    key_off,
                    key_len: key.len() as u32,
                    value: init,
                });
                Ok(&mut e.into_mut().value)
            }
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, hash: KeyHash, key: &[u8]) -> Result<Option<u64>, KeyedStateError> {
        let key_group = hash.key_group(self.max_parallelism);
        if !self.range.contains(key_group) {
            return Err(self.wrong_group(key_group));
        }
        let group = &self.groups[(key_group - self.range.start) as usize];
        let h = hash.table;
        Ok(group
            .table
            .find(h, |e| {
                e.hash == h
                    && e.key_len as usize == key.len()
                    && &group.arena[e.key_off as usize..e.key_off as usize + key.len()] == key
            })
            .map(|e| e.value))
    }

    /// The table of `key_group`, if this subtask owns it.
    pub fn group(&self, key_group: u32) -> Option<&GroupTable> {
        self.range
            .contains(key_group)
            .then(|| &*self.groups[(key_group - self.range.start) as usize])
    }

    /// Every owned key group with its table, in group order.
    pub fn groups(&self) -> impl Iterator<Item = (u32, &GroupTable)> + '_ {
        self.range.iter().zip(self.groups.iter().map(|g| &**g))
    }

    /// A consistent view of the store as it is now. Cheap: one `Arc` clone per key group;
    /// later writes copy a group on its first write instead of changing the snapshot.
    pub fn snapshot(&self) -> KeyedSnapshot {
        KeyedSnapshot {
            range: self.range,
            max_parallelism: self.max_parallelism,
            groups: self.groups.clone(),
        }
    }

    fn wrong_group(&self, key_group: u32) -> KeyedStateError {
        KeyedStateError::WrongKeyGroup {
            key_group,
            range: self.range,
            max_parallelism: self.max_parallelism,
        }
    }
}

/// A frozen copy of a [`KeyedStore`], for the asynchronous part of a checkpoint.
#[derive(Debug, Clone)]
pub struct KeyedSnapshot {
    pub range: KeyGroupRange,
    pub max_parallelism: u32,
    groups: Vec<Arc<GroupTable>>,
}

impl KeyedSnapshot {
    /// Number of keys in the snapshot.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key group with its table, in group order.
    pub fn groups(&self) -> impl Iterator<Item = (u32, &GroupTable)> + '_ {
        self.range.iter().zip(self.groups.iter().map(|g| &**g))
    }
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
        assert_eq!(store.group(22).map(GroupTable::len), Some(1));
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
}
