//! Kept in the repository for `benches/wordcount.rs`, which compiles it with `rustc -O` and runs
//! it beside floe: the speed limit floe's word count is measured against. It is not part of
//! floe and not a cargo target. Its corpus is the datagen definition of
//! `tests/fixtures/gen_corpus.py`.
//!
//! The speed-limit reference for word count: one thread, no framework, no checkpoints.
//! It counts the words of a corpus file (made by gen_corpus.py) with a plain hash map, or
//! generates the same words in memory (`--gen LINES WORDS_PER_LINE VOCAB SEED`) with the
//! SplitMix64 definition documented in gen_corpus.py.
//!
//! Build: rustc --edition 2021 -C opt-level=3 -o wordcount_limit wordcount_limit.rs
//! Run:   ./wordcount_limit corpus.txt
//!        ./wordcount_limit --gen 2000000 10 10000 42
//!        ./wordcount_limit --gen-prefetch 2000000 10 1000000 42
//! `--gen-prefetch` is the same count with the layout a tuned engine could reach: words of at
//! most 8 bytes packed into a u64 key, a flat open-addressing table, and lookups issued in
//! batches of 32 with a prefetch of each slot first, so that cache misses overlap. With 1M
//! distinct words it shows how far past the plain map memory-level parallelism goes.
//!        ./wordcount_limit --text-prefetch 2000000 10 1000000 42
//! `--text-prefetch` does what a word-count pipeline does on top: it formats each generated
//! line as text ("w12 w345 ..."), splits it at spaces and packs each word before the same
//! batched, prefetched count. It is the limit for datagen -> split -> count on one core.
//! Prints one line: `words=N distinct=D seconds=S words_per_sec=R checksum=C`, where checksum is
//! the sum over distinct words of (count * length of word), a cheap cross-check for other
//! implementations.
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

/// FxHash-style hasher: fast, not DoS-resistant; fine for a reference figure.
#[derive(Default)]
struct Fx(u64);
impl Hasher for Fx {
    fn write(&mut self, mut bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        while bytes.len() >= 8 {
            let (head, rest) = bytes.split_at(8);
            let v = u64::from_le_bytes(head.try_into().unwrap_or([0; 8]));
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
            bytes = rest;
        }
        let mut v = 0u64;
        for (i, b) in bytes.iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        self.0 = (self.0.rotate_left(5) ^ v ^ 0xff).wrapping_mul(K);
    }
    fn finish(&self) -> u64 {
        // Multiplication leaves the low bits weak; the map indexes buckets by them, so mix.
        mix(self.0)
    }
}
type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn report(words: u64, counts: &FxMap<Vec<u8>, u64>, secs: f64) {
    let checksum: u64 = counts.iter().map(|(w, c)| c * w.len() as u64).sum();
    println!(
        "words={} distinct={} seconds={:.3} words_per_sec={:.0} checksum={}",
        words,
        counts.len(),
        secs,
        words as f64 / secs,
        checksum
    );
}

/// Packs a word of at most 8 bytes into a u64 (little endian, zero padded).
fn pack_bytes(w: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..w.len()].copy_from_slice(w);
    u64::from_le_bytes(b)
}

fn text_prefetch(lines: u64, w: u64, vocab: u64, seed: u64) {
    let cap = (vocab * 2).next_power_of_two() as usize;
    let mask = cap - 1;
    let mut table: Vec<(u64, u64)> = vec![(0, 0); cap];
    let start = Instant::now();
    let mut z = seed;
    let mut line: Vec<u8> = Vec::with_capacity(16 * w as usize);
    let mut keys: Vec<u64> = Vec::with_capacity(w as usize);
    let mut slots: Vec<usize> = Vec::with_capacity(w as usize);
    let mut pending: Vec<u64> = Vec::with_capacity(64);
    let mut total = 0u64;
    let mut num = [0u8; 20];
    for _ in 0..lines {
        // format the line as a generator source would
        line.clear();
        for j in 0..w {
            z = z.wrapping_add(GAMMA);
            let mut id = mix(z) % vocab;
            if j > 0 {
                line.push(b' ');
            }
            line.push(b'w');
            let mut n = 0;
            loop {
                num[n] = b'0' + (id % 10) as u8;
                n += 1;
                id /= 10;
                if id == 0 {
                    break;
                }
            }
            for k in (0..n).rev() {
                line.push(num[k]);
            }
        }
        // split and pack, collecting a batch of about 32 words before counting
        for word in line.split(|&b| b == b' ') {
            if !word.is_empty() {
                pending.push(pack_bytes(word));
            }
        }
        if pending.len() >= 32 {
            count_batch(&mut table, mask, &pending, &mut keys, &mut slots);
            total += pending.len() as u64;
            pending.clear();
        }
    }
    count_batch(&mut table, mask, &pending, &mut keys, &mut slots);
    total += pending.len() as u64;
    let secs = start.elapsed().as_secs_f64();
    let mut distinct = 0u64;
    let mut checksum = 0u64;
    for &(k, c) in &table {
        if k != 0 {
            distinct += 1;
            checksum += c * (8 - (k.leading_zeros() / 8) as u64);
        }
    }
    println!(
        "words={} distinct={} seconds={:.3} words_per_sec={:.0} checksum={}",
        total, distinct, secs, total as f64 / secs, checksum
    );
}

/// Hash and prefetch every key's slot, then update: the misses of a batch overlap.
fn count_batch(table: &mut [(u64, u64)], mask: usize, batch: &[u64], keys: &mut Vec<u64>, slots: &mut Vec<usize>) {
    keys.clear();
    slots.clear();
    for &k in batch {
        let s = (mix(k) as usize) & mask;
        prefetch(&table[s]);
        keys.push(k);
        slots.push(s);
    }
    for (&k, &s0) in keys.iter().zip(slots.iter()) {
        let mut s = s0;
        loop {
            let e = &mut table[s];
            if e.0 == k {
                e.1 += 1;
                break;
            }
            if e.0 == 0 {
                *e = (k, 1);
                break;
            }
            s = (s + 1) & mask;
        }
    }
}

/// Flat table: key 0 = empty (packed keys are never 0: every word starts with 'w').
fn gen_prefetch(lines: u64, w: u64, vocab: u64, seed: u64) {
    let pack = |i: u64| -> u64 {
        let s = format!("w{i}");
        assert!(s.len() <= 8, "--gen-prefetch packs words of at most 8 bytes");
        let mut b = [0u8; 8];
        b[..s.len()].copy_from_slice(s.as_bytes());
        u64::from_le_bytes(b)
    };
    let names: Vec<u64> = (0..vocab).map(pack).collect();
    let cap = (vocab * 2).next_power_of_two() as usize;
    let mask = cap - 1;
    let mut table: Vec<(u64, u64)> = vec![(0, 0); cap];
    const B: usize = 32;
    let total = lines * w;
    let start = Instant::now();
    let mut z = seed;
    let mut keys = [0u64; B];
    let mut slots = [0usize; B];
    let mut done = 0u64;
    while done < total {
        let n = (total - done).min(B as u64) as usize;
        for i in 0..n {
            z = z.wrapping_add(GAMMA);
            let k = names[(mix(z) % vocab) as usize];
            keys[i] = k;
            let s = (mix(k) as usize) & mask;
            slots[i] = s;
            prefetch(&table[s]);
        }
        for i in 0..n {
            let k = keys[i];
            let mut s = slots[i];
            loop {
                let e = &mut table[s];
                if e.0 == k {
                    e.1 += 1;
                    break;
                }
                if e.0 == 0 {
                    *e = (k, 1);
                    break;
                }
                s = (s + 1) & mask;
            }
        }
        done += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut distinct = 0u64;
    let mut checksum = 0u64;
    for &(k, c) in &table {
        if k != 0 {
            distinct += 1;
            checksum += c * (8 - (k.leading_zeros() / 8) as u64);
        }
    }
    println!(
        "words={} distinct={} seconds={:.3} words_per_sec={:.0} checksum={}",
        total, distinct, secs, total as f64 / secs, checksum
    );
}

#[cfg(target_arch = "x86_64")]
fn prefetch<T>(p: &T) {
    // SAFETY: a prefetch is a hint; any address is allowed and nothing is read into Rust.
    unsafe { std::arch::x86_64::_mm_prefetch(p as *const T as *const i8, std::arch::x86_64::_MM_HINT_T0) }
}
#[cfg(not(target_arch = "x86_64"))]
fn prefetch<T>(_: &T) {}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--text-prefetch") {
        let num = |i: usize| -> u64 { args.get(i).and_then(|s| s.parse().ok()).expect("usage: --text-prefetch LINES W VOCAB SEED") };
        text_prefetch(num(2), num(3), num(4), num(5));
        return;
    }
    if args.get(1).map(String::as_str) == Some("--gen-prefetch") {
        let num = |i: usize| -> u64 { args.get(i).and_then(|s| s.parse().ok()).expect("usage: --gen-prefetch LINES W VOCAB SEED") };
        gen_prefetch(num(2), num(3), num(4), num(5));
        return;
    }
    let mut counts: FxMap<Vec<u8>, u64> = FxMap::default();
    let mut words = 0u64;
    if args.get(1).map(String::as_str) == Some("--gen") {
        let num = |i: usize| -> u64 { args.get(i).and_then(|s| s.parse().ok()).expect("usage: --gen LINES W VOCAB SEED") };
        let (lines, w, vocab, seed) = (num(2), num(3), num(4), num(5));
        // Word names are formatted once, as a generator source would intern them.
        let names: Vec<Vec<u8>> = (0..vocab).map(|i| format!("w{i}").into_bytes()).collect();
        let start = Instant::now();
        let mut z = seed;
        for _ in 0..lines * w {
            z = z.wrapping_add(GAMMA);
            let name = &names[(mix(z) % vocab) as usize];
            match counts.get_mut(name.as_slice()) {
                Some(c) => *c += 1,
                None => {
                    counts.insert(name.clone(), 1);
                }
            }
            words += 1;
        }
        report(words, &counts, start.elapsed().as_secs_f64());
        return;
    }
    let path = args.get(1).expect("usage: wordcount_limit CORPUS | --gen LINES W VOCAB SEED");
    let data = std::fs::read(path).expect("cannot read corpus");
    let start = Instant::now();
    for line in data.split(|&b| b == b'\n') {
        for word in line.split(|&b| b == b' ') {
            if word.is_empty() {
                continue;
            }
            words += 1;
            match counts.get_mut(word) {
                Some(c) => *c += 1,
                None => {
                    counts.insert(word.to_vec(), 1);
                }
            }
        }
    }
    report(words, &counts, start.elapsed().as_secs_f64());
}
