//! Keyed state blobs: round trips, and every kind of damage (a flipped byte, a truncation, a
//! lying index) is an error naming the key group, never a panic or a silently wrong state.

use floe::checkpoint::metadata::GroupIndexEntry;
use floe::state::keyed::KeyedStore;
use floe::state::keygroup::{hash_int, hash_str, KeyGroupRange};
use floe::state::snapshot::{
    check_header, decode_blob, decode_group, encode_delta, encode_full, group_slice, restore_store,
    StateFormatError, BLOB_MAGIC,
};
use std::collections::BTreeMap;

const MAX_P: u32 = 128;

fn all() -> KeyGroupRange {
    KeyGroupRange::for_subtask(0, 1, MAX_P)
}

fn sample() -> KeyedStore {
    let mut store = KeyedStore::new(all(), MAX_P);
    for i in 0..300i64 {
        let k = i.to_le_bytes();
        *store.get_or_insert(hash_int(i), &k, 0).unwrap() = (i as u64).wrapping_mul(u64::MAX / 7);
    }
    for w in [
        "",
        "a",
        "hello",
        "exactly8",
        "nine char",
        "a much longer key than eight bytes",
    ] {
        *store
            .get_or_insert(hash_str(w.as_bytes()), w.as_bytes(), 0)
            .unwrap() = w.len() as u64;
    }
    *store.get_or_insert(hash_str(b"max"), b"max", 0).unwrap() = u64::MAX;
    store
}

fn contents(store: &KeyedStore) -> BTreeMap<Vec<u8>, u64> {
    store
        .groups()
        .flat_map(|(_, t)| t.iter().map(|(k, v)| (k.to_vec(), v)))
        .collect()
}

#[test]
fn full_and_delta_blobs_round_trip() {
    let mut store = sample();
    let want = contents(&store);
    let blob = encode_full(&store.snapshot());
    assert_eq!(&blob.bytes[..4], &BLOB_MAGIC);
    assert!(check_header(&blob.bytes).is_ok());
    let groups = decode_blob(&blob.bytes, &blob.groups, all()).unwrap();
    let entries: usize = groups.iter().map(|(_, g)| g.len()).sum();
    assert_eq!(entries, want.len());
    // Offsets are increasing and the runs tile the blob after the header.
    let mut at = 8;
    for g in &blob.groups {
        assert_eq!(g.offset, at);
        at += g.len;
    }
    assert_eq!(at, blob.bytes.len() as u64);
    let restored = restore_store(all(), MAX_P, groups).unwrap();
    assert_eq!(contents(&restored), want);

    // A delta with a deletion round trips as a tombstone.
    store.remove(hash_str(b"hello"), b"hello").unwrap();
    let delta = encode_delta(&store.snapshot());
    let groups = decode_blob(&delta.bytes, &delta.groups, all()).unwrap();
    let decoded: Vec<_> = groups
        .iter()
        .flat_map(|(_, g)| g.iter().map(|e| (e.key.to_vec(), e.value)))
        .collect();
    assert_eq!(decoded, vec![(b"hello".to_vec(), None)]);
}

#[test]
fn an_empty_store_is_a_header_only_blob() {
    let mut store = KeyedStore::new(all(), MAX_P);
    let blob = encode_full(&store.snapshot());
    assert_eq!(blob.bytes.len(), 8);
    assert!(blob.groups.is_empty());
    let restored = restore_store(
        all(),
        MAX_P,
        decode_blob(&blob.bytes, &blob.groups, all()).unwrap(),
    )
    .unwrap();
    assert!(restored.is_empty());
}

#[test]
fn every_flipped_byte_of_a_group_is_a_checksum_error() {
    let mut store = sample();
    let blob = encode_full(&store.snapshot());
    for pos in 8..blob.bytes.len() {
        let mut bad = blob.bytes.clone();
        bad[pos] ^= 0x10;
        let owner = blob
            .groups
            .iter()
            .find(|g| g.offset as usize <= pos && pos < (g.offset + g.len) as usize)
            .unwrap();
        match decode_blob(&bad, &blob.groups, all()) {
            Err(StateFormatError::Checksum { key_group }) => assert_eq!(key_group, owner.key_group),
            other => panic!("byte {pos}: expected a checksum error, got {other:?}"),
        }
    }
    let err = decode_blob(&bad_byte(&blob.bytes, 9), &blob.groups, all()).unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

fn bad_byte(bytes: &[u8], pos: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[pos] ^= 1;
    b
}

#[test]
fn a_damaged_header_is_refused() {
    let mut store = sample();
    let blob = encode_full(&store.snapshot());
    assert!(matches!(
        decode_blob(&bad_byte(&blob.bytes, 0), &blob.groups, all()),
        Err(StateFormatError::BadMagic)
    ));
    assert!(matches!(
        decode_blob(&bad_byte(&blob.bytes, 7), &blob.groups, all()),
        Err(StateFormatError::UnsupportedVersion(0))
    ));
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let mut store = sample();
    let blob = encode_full(&store.snapshot());
    for len in 0..blob.bytes.len() {
        let cut = &blob.bytes[..len];
        let err = decode_blob(cut, &blob.groups, all()).unwrap_err();
        assert!(
            matches!(
                err,
                StateFormatError::TooShort { .. } | StateFormatError::OutOfBounds { .. }
            ),
            "cut at {len}: {err:?}"
        );
    }
    let err = decode_blob(&blob.bytes[..blob.bytes.len() - 1], &blob.groups, all()).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn an_index_that_lies_is_an_error_never_a_panic() {
    let mut store = sample();
    let blob = encode_full(&store.snapshot());
    let g = blob.groups[0];
    let run = group_slice(&blob.bytes, &g).unwrap();
    let lies = [
        GroupIndexEntry {
            entries: g.entries + 1,
            ..g
        },
        GroupIndexEntry {
            entries: g.entries - 1,
            ..g
        },
        GroupIndexEntry {
            entries: u64::MAX,
            ..g
        },
        GroupIndexEntry {
            len: g.len - 1,
            ..g
        },
    ];
    for lie in lies {
        assert!(decode_group(run, &lie).is_err(), "{lie:?}");
    }
    let far = [
        GroupIndexEntry {
            offset: u64::MAX,
            ..g
        },
        GroupIndexEntry { len: u64::MAX, ..g },
        GroupIndexEntry { offset: 2, ..g },
        GroupIndexEntry {
            offset: blob.bytes.len() as u64,
            ..g
        },
    ];
    for lie in far {
        assert!(decode_blob(&blob.bytes, &[lie], all()).is_err(), "{lie:?}");
    }
    // Garbage with a matching crc (a crafted file) is still refused structurally.
    let junk = vec![0xffu8; 40];
    let crafted = GroupIndexEntry {
        key_group: 3,
        offset: 8,
        len: 40,
        crc32c: crc32c::crc32c(&junk),
        entries: 1,
    };
    assert!(matches!(
        decode_group(&junk, &crafted),
        Err(StateFormatError::Malformed { key_group: 3 })
    ));
}
