//! Incremental keyed state: a full blob followed by deltas (updates, inserts, deletions)
//! restores to exactly the state a full blob of the same moment restores to; a delta is small
//! when few keys changed; a snapshot is unaffected by later writes; a restore at another
//! parallelism reads only its own key groups.

use floe::state::keyed::{DeltaBase, KeyedSnapshot, KeyedStore};
use floe::state::keygroup::{hash_str, KeyGroupRange};
use floe::state::snapshot::{decode_blob, encode_delta, encode_full, restore_store, EncodedBlob};
use std::collections::BTreeMap;

const MAX_P: u32 = 128;

fn all() -> KeyGroupRange {
    KeyGroupRange::for_subtask(0, 1, MAX_P)
}

/// Key `i`: short ones inline in the entry, every 7th one long (in the arena).
fn key(i: u64) -> Vec<u8> {
    if i.is_multiple_of(7) {
        format!("a-rather-long-key-number-{i}").into_bytes()
    } else {
        format!("k{i}").into_bytes()
    }
}

fn put(store: &mut KeyedStore, k: &[u8], v: u64) {
    *store.get_or_insert(hash_str(k), k, 0).unwrap() = v;
}

fn contents(store: &KeyedStore) -> BTreeMap<Vec<u8>, u64> {
    store
        .groups()
        .flat_map(|(_, t)| t.iter().map(|(k, v)| (k.to_vec(), v)))
        .collect()
}

fn snapshot_contents(snap: &KeyedSnapshot) -> BTreeMap<Vec<u8>, u64> {
    snap.groups()
        .flat_map(|(_, t)| t.iter().map(|(k, v)| (k.to_vec(), v)))
        .collect()
}

/// Restores `range` from a chain of blobs (full first), as storage would after reading them.
fn restore_chain(chain: &[EncodedBlob], range: KeyGroupRange) -> KeyedStore {
    let mut groups = Vec::new();
    for blob in chain {
        groups.extend(decode_blob(&blob.bytes, &blob.groups, range).unwrap());
    }
    restore_store(range, MAX_P, groups).unwrap()
}

#[test]
fn a_chain_of_deltas_restores_to_the_full_state() {
    let mut store = KeyedStore::new(all(), MAX_P);
    let mut model: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for i in 0..20_000 {
        put(&mut store, &key(i), i);
        model.insert(key(i), i);
    }
    let first = store.snapshot();
    assert_eq!(first.delta_base(), DeltaBase::Empty);
    let mut chain = vec![encode_full(&first)];

    // Rounds of updates, inserts and deletions (some of keys inserted in an earlier round,
    // some of keys updated in the same round, one key deleted and inserted again).
    for round in 1..=4u64 {
        for i in (round..30_000).step_by(97) {
            put(&mut store, &key(i), round * 1_000_000 + i);
            model.insert(key(i), round * 1_000_000 + i);
        }
        for i in (round * 3..30_000).step_by(211) {
            let k = key(i);
            let removed = store.remove(hash_str(&k), &k).unwrap();
            assert_eq!(removed, model.remove(&k), "key {i}");
        }
        let again = key(round * 3);
        put(&mut store, &again, 42);
        model.insert(again, 42);
        let snap = store.snapshot();
        assert_eq!(snap.delta_base(), DeltaBase::Snapshot(round - 1));
        chain.push(encode_delta(&snap));
        assert_eq!(snapshot_contents(&snap), model, "round {round}");
    }
    assert_eq!(contents(&store), model);

    let via_chain = restore_chain(&chain, all());
    let full_now = encode_full(&store.snapshot());
    let via_full = restore_chain(&[full_now], all());
    assert_eq!(contents(&via_chain), model);
    assert_eq!(contents(&via_full), model);
    assert_eq!(via_chain.len(), model.len());

    // At parallelism 3, each subtask restores its own groups from the same chain.
    let mut merged = BTreeMap::new();
    for s in 0..3 {
        let range = KeyGroupRange::for_subtask(s, 3, MAX_P);
        let part = restore_chain(&chain, range);
        for (g, t) in part.groups() {
            assert!(range.contains(g));
            for (k, v) in t.iter() {
                assert_eq!(hash_str(k).key_group(MAX_P), g);
                merged.insert(k.to_vec(), v);
            }
        }
    }
    assert_eq!(merged, model);
}

#[test]
fn a_restored_store_continues_the_chain() {
    let mut store = KeyedStore::new(all(), MAX_P);
    for i in 0..1000 {
        put(&mut store, &key(i), i);
    }
    let full = encode_full(&store.snapshot());
    let mut restored = restore_chain(std::slice::from_ref(&full), all());
    put(&mut restored, &key(5), 555);
    let k9 = key(9);
    restored.remove(hash_str(&k9), &k9).unwrap();
    let snap = restored.snapshot();
    assert_eq!(snap.delta_base(), DeltaBase::Restored);
    assert_eq!(snap.delta_len(), 2);
    let delta = encode_delta(&snap);
    let again = restore_chain(&[full, delta], all());
    assert_eq!(contents(&again), contents(&restored));
    assert_eq!(again.get(hash_str(&key(5)), &key(5)).unwrap(), Some(555));
    assert_eq!(again.get(hash_str(&k9), &k9).unwrap(), None);
}

#[test]
fn one_percent_changed_makes_a_delta_of_at_most_five_percent() {
    let mut store = KeyedStore::new(all(), MAX_P);
    for i in 0..100_000 {
        put(&mut store, &key(i), i);
    }
    store.snapshot();
    for i in (0..100_000).step_by(100) {
        let k = key(i);
        *store.get_or_insert(hash_str(&k), &k, 0).unwrap() += 1;
    }
    let snap = store.snapshot();
    let delta = encode_delta(&snap);
    let full = encode_full(&snap);
    let ratio = delta.bytes.len() as f64 / full.bytes.len() as f64;
    println!(
        "full {} bytes, delta {} bytes ({:.2}%)",
        full.bytes.len(),
        delta.bytes.len(),
        ratio * 100.0
    );
    assert_eq!(delta.groups.iter().map(|g| g.entries).sum::<u64>(), 1000);
    assert!(ratio <= 0.05, "delta is {:.2}% of full", ratio * 100.0);
}

#[test]
fn a_snapshot_leaves_later_writes_out() {
    let mut store = KeyedStore::new(all(), MAX_P);
    for i in 0..5000 {
        put(&mut store, &key(i), i);
    }
    let snap = store.snapshot();
    let before = snapshot_contents(&snap);
    for i in 0..5000 {
        put(&mut store, &key(i), i + 1);
    }
    for i in 5000..6000 {
        put(&mut store, &key(i), i);
    }
    for i in (0..5000).step_by(3) {
        let k = key(i);
        store.remove(hash_str(&k), &k).unwrap();
    }
    assert_eq!(snapshot_contents(&snap), before);
    let blob = encode_full(&snap);
    assert_eq!(contents(&restore_chain(&[blob], all())), before);
    let delta = encode_delta(&snap);
    assert_eq!(
        contents(&restore_chain(&[delta], all())),
        before,
        "first delta = all"
    );
}

/// `cargo test --release --test state_incremental -- --ignored --nocapture`
#[test]
#[ignore = "timing; run by hand in release"]
fn timings_with_a_million_keys() {
    use std::time::Instant;
    let mut store = KeyedStore::new(all(), MAX_P);
    let keys: Vec<Vec<u8>> = (0..1_000_000)
        .map(|i| format!("w{i}").into_bytes())
        .collect();
    let t = Instant::now();
    for k in &keys {
        *store.get_or_insert(hash_str(k), k, 0).unwrap() += 1;
    }
    println!("1M inserts: {:?}", t.elapsed());
    store.snapshot();
    for k in &keys {
        *store.get_or_insert(hash_str(k), k, 0).unwrap() += 1;
    }
    let t = Instant::now();
    let snap = store.snapshot();
    println!("snapshot() with 1M keys, all changed: {:?}", t.elapsed());
    let t = Instant::now();
    let full = encode_full(&snap);
    println!("encode_full: {:?}, {} bytes", t.elapsed(), full.bytes.len());
    let t = Instant::now();
    let delta = encode_delta(&snap);
    println!(
        "encode_delta (1M changed): {:?}, {} bytes",
        t.elapsed(),
        delta.bytes.len()
    );
    // The copy-on-write cost on the data path: batches of 1024 scattered keys right after a
    // snapshot (the first writes to each shard copy it) against the same batches without.
    let batch_times = |store: &mut KeyedStore| {
        let mut times = Vec::new();
        for b in 0..200usize {
            let t = Instant::now();
            for j in 0..1024usize {
                let k = &keys[(b * 1024 + j).wrapping_mul(7919) % keys.len()];
                *store.get_or_insert(hash_str(k), k, 0).unwrap() += 1;
            }
            times.push(t.elapsed());
        }
        times
    };
    let after = batch_times(&mut store);
    let plain = batch_times(&mut store);
    let max = |ts: &[std::time::Duration]| ts.iter().max().copied().unwrap_or_default();
    println!(
        "batches of 1024 writes right after a snapshot: first {:?}, second {:?}, longest {:?}, all 200 {:?}; \
         without a snapshot: longest {:?}, median {:?}, all 200 {:?}",
        after[0],
        after[1],
        max(&after),
        after.iter().sum::<std::time::Duration>(),
        max(&plain),
        {
            let mut p = plain.clone();
            p.sort();
            p[p.len() / 2]
        },
        plain.iter().sum::<std::time::Duration>()
    );
    let t = Instant::now();
    let snap2 = store.snapshot();
    println!(
        "snapshot() with 1M keys, {} changed: {:?}",
        snap2.delta_len(),
        t.elapsed()
    );
    let t = Instant::now();
    let delta2 = encode_delta(&snap2);
    println!(
        "encode_delta ({} changed): {:?}, {} bytes",
        snap2.delta_len(),
        t.elapsed(),
        delta2.bytes.len()
    );
    let t = Instant::now();
    let restored = restore_chain(&[full], all());
    println!("decode + restore of the full blob: {:?}", t.elapsed());
    assert_eq!(restored.len(), 1_000_000);
    let t = Instant::now();
    for k in &keys {
        *store.get_or_insert(hash_str(k), k, 0).unwrap() += 1;
    }
    println!("1M updates, no snapshot in between: {:?}", t.elapsed());
}
