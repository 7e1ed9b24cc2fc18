//! Key groups: which group a key belongs to and which subtask owns a group.
//!
//! The hash is Flink's, so that a key lands in the same key group in floe as in Flink:
//! `keyGroup = murmurHash(key.hashCode()) % maxParallelism`, with Java's `hashCode` of the
//! key (`String`: `s[0]*31^(n-1) + … + s[n-1]` over UTF-16 code units; `Long`:
//! `(int)(v ^ (v >>> 32))`; `Boolean`: 1231 / 1237) and Flink's `MathUtils.murmurHash`.
//! It is fixed and never seeded; the test vectors below are Flink's own.
//!
//! A key is hashed once. [`KeyHash`] keeps the 32-bit Flink hash (for the key group) and a
//! 64-bit spread of it (for hash tables), so nothing downstream hashes the key again.
//!
//! The hash exchange hands each row's key group and `hashCode` on with the rows it routes
//! ([`RoutedKey`]), so the keyed operator that reads them does not hash the key again.
//!
//! Group → subtask is Flink's range formula (`KeyGroupRangeAssignment`).

pub use crate::record::RoutedKey;
use crate::record::StrColumn;

/// Flink's upper bound on max parallelism (`1 << 15`).
pub const UPPER_BOUND_MAX_PARALLELISM: u32 = 1 << 15;

/// One key's hash: Flink's (for the key group) and a 64-bit spread (for hash tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash {
    /// `murmurHash(hashCode)`: non-negative.
    pub flink: u32,
    /// A 64-bit value derived from the key's `hashCode`, well mixed in every bit.
    pub table: u64,
}

impl KeyHash {
    /// The hash of a key whose Java `hashCode` is `code`.
    #[inline]
    pub fn from_java_hash_code(code: i32) -> KeyHash {
        KeyHash {
            flink: murmur_hash(code),
            table: table_of_hash_code(code as u32),
        }
    }

    /// The key group of this key among `max_parallelism` groups.
    #[inline]
    pub fn key_group(self, max_parallelism: u32) -> u32 {
        self.flink % max_parallelism
    }
}

/// Where a key lives in keyed state: its key group and its 64-bit table hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPlace {
    pub key_group: u32,
    pub table: u64,
}

impl KeyPlace {
    /// The place of a key the hash exchange routed ([`KeyGroups::route`]): the key group it
    /// computed, the table hash from the key's `hashCode`, as [`KeyHash`] derives it.
    #[inline]
    pub fn of_routed(key: RoutedKey) -> KeyPlace {
        KeyPlace {
            key_group: key.key_group,
            table: table_of_hash_code(key.hash_code as u32),
        }
    }
}

/// The key groups of one max parallelism: `flink % max_parallelism` without a division.
///
/// Every record's key group is a remainder by the same divisor, and a 32-bit division costs
/// more than the rest of routing a record (measured: a quarter of the exchange's time). This
/// computes it exactly from a reciprocal fixed up front (Lemire, Kaser and Kurz, "Faster
/// Remainder by Direct Computation", 2019: exact for every 32-bit dividend and divisor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGroups {
    max_parallelism: u32,
    /// `ceil(2^64 / max_parallelism)`, wrapped (0 for a divisor of 1).
    reciprocal: u64,
}

impl KeyGroups {
    /// The key groups of `max_parallelism` (at least 1; 0 counts as 1).
    pub fn new(max_parallelism: u32) -> KeyGroups {
        let d = max_parallelism.max(1);
        KeyGroups {
            max_parallelism: d,
            reciprocal: (u64::MAX / d as u64).wrapping_add(1),
        }
    }

    pub fn max_parallelism(self) -> u32 {
        self.max_parallelism
    }

    /// `flink % max_parallelism`: the key group of a key of Flink hash `flink`.
    #[inline(always)]
    pub fn of(self, flink: u32) -> u32 {
        let low = self.reciprocal.wrapping_mul(flink as u64);
        ((low as u128 * self.max_parallelism as u128) >> 64) as u32
    }

    /// The place of a key of hash `hash`.
    #[inline(always)]
    pub fn place(self, hash: KeyHash) -> KeyPlace {
        KeyPlace {
            key_group: self.of(hash.flink),
            table: hash.table,
        }
    }

    /// What the hash exchange hands on for a key of Java `hashCode` `code`: its key group
    /// (`murmurHash(code) % max_parallelism`, as [`KeyHash::key_group`]) and the code.
    #[inline(always)]
    pub fn route(self, code: i32) -> RoutedKey {
        RoutedKey {
            key_group: self.of(murmur_hash(code)),
            hash_code: code,
        }
    }
}

/// The hash of a text key (Java `String.hashCode` over its UTF-16 code units).
#[inline]
pub fn hash_str(bytes: &[u8]) -> KeyHash {
    KeyHash::from_java_hash_code(java_string_hash_code(bytes))
}

/// The hash of an integer key (Java `Long.hashCode`).
#[inline]
pub fn hash_int(v: i64) -> KeyHash {
    KeyHash::from_java_hash_code(int_hash_code(v))
}

/// The hash of a boolean key (Java `Boolean.hashCode`).
#[inline]
pub fn hash_bool(v: bool) -> KeyHash {
    KeyHash::from_java_hash_code(bool_hash_code(v))
}

/// The hash of a float key (Java `Double.hashCode` of the bits, with Java's canonical NaN).
#[inline]
pub fn hash_float(v: f64) -> KeyHash {
    KeyHash::from_java_hash_code(float_hash_code(v))
}

/// Java's `Long.hashCode`.
#[inline]
pub fn int_hash_code(v: i64) -> i32 {
    let u = v as u64;
    (u ^ (u >> 32)) as u32 as i32
}

/// Java's `Boolean.hashCode`.
#[inline]
pub fn bool_hash_code(v: bool) -> i32 {
    if v {
        1231
    } else {
        1237
    }
}

/// Java's `Double.hashCode`, with Java's canonical NaN.
#[inline]
pub fn float_hash_code(v: f64) -> i32 {
    let bits = if v.is_nan() {
        0x7ff8_0000_0000_0000u64
    } else {
        v.to_bits()
    };
    (bits ^ (bits >> 32)) as u32 as i32
}

/// Java's `String.hashCode`: ASCII text in one pass over the bytes; other text over its
/// UTF-16 code units, as Java sees it. Invalid UTF-8 is hashed byte by byte (Java could not
/// hold such a string; this keeps the hash total and stable).
#[inline]
pub fn java_string_hash_code(bytes: &[u8]) -> i32 {
    let mut h: i32 = 0;
    if bytes.is_ascii() {
        for &b in bytes {
            h = h.wrapping_mul(31).wrapping_add(b as i32);
        }
        return h;
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            for unit in s.encode_utf16() {
                h = h.wrapping_mul(31).wrapping_add(unit as i32);
            }
        }
        Err(_) => {
            for &b in bytes {
                h = h.wrapping_mul(31).wrapping_add(b as i32);
            }
        }
    }
    h
}

/// `java_string_hash_code` of text record `i` of `column`.
///
/// A key of at most 8 ASCII bytes is hashed without a loop: 8 bytes read at once from the
/// column's buffer (where the buffer has them), the bytes past the key masked off, then
/// `Σ b[j]·31^(7-j)`, which is the hash times `31^(8-len)`; 31 is odd, so multiplying by its
/// inverse mod 2^32 to that power leaves the hash (Java's arithmetic wraps mod 2^32 too).
/// The byte loop's exit, taken at a different length word after word, was mispredicted so
/// often that hashing cost more than the arithmetic suggests.
#[inline(always)]
pub fn str_hash_code(column: &StrColumn, i: usize) -> i32 {
    let span = column.spans[i];
    let (start, len) = (span.start as usize, span.len as usize);
    if len <= 8 {
        if let Some(word) = column.buf.get(start..start + 8) {
            let word = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
            // The key's bytes only: `len` of the 8 (u128, so that 8 bytes shift in range).
            let word = word & ((1u128 << (8 * len)) - 1) as u64;
            if word & 0x8080_8080_8080_8080 == 0 {
                return short_ascii_hash_code(word, len);
            }
        }
    }
    java_string_hash_code(column.get(i))
}

/// `31^(7-j)` for byte `j` of 8, and `31^-k mod 2^32` for `k` padding bytes.
const POW31: [u32; 8] = {
    let mut t = [1u32; 8];
    let mut j = 7;
    while j > 0 {
        t[j - 1] = t[j].wrapping_mul(31);
        j -= 1;
    }
    t
};
const INV31_POW: [u32; 9] = {
    // 31's inverse mod 2^32 by Newton's iteration (each step doubles the correct bits).
    let mut inv: u32 = 31;
    let mut k = 0;
    while k < 5 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(31u32.wrapping_mul(inv)));
        k += 1;
    }
    let mut t = [1u32; 9];
    let mut k = 1;
    while k < 9 {
        t[k] = t[k - 1].wrapping_mul(inv);
        k += 1;
    }
    t
};

/// Java's hash of the `len` (at most 8) ASCII bytes in `word` (little endian, zero beyond).
#[inline(always)]
fn short_ascii_hash_code(word: u64, len: usize) -> i32 {
    let mut h = 0u32;
    for (j, pow) in POW31.iter().enumerate() {
        h = h.wrapping_add(((word >> (8 * j)) as u8 as u32).wrapping_mul(*pow));
    }
    h.wrapping_mul(INV31_POW[8 - len]) as i32
}

/// Flink's `MathUtils.murmurHash(int)`: one round of Murmur3 on a 4-byte value, made
/// non-negative.
#[inline]
pub fn murmur_hash(code: i32) -> u32 {
    let mut code = code;
    code = code.wrapping_mul(0xcc9e_2d51_u32 as i32);
    code = code.rotate_left(15);
    code = code.wrapping_mul(0x1b87_3593);
    code = code.rotate_left(13);
    code = code.wrapping_mul(5).wrapping_add(0xe654_6b64_u32 as i32);
    code ^= 4;
    code ^= ((code as u32) >> 16) as i32;
    code = code.wrapping_mul(0x85eb_ca6b_u32 as i32);
    code ^= ((code as u32) >> 13) as i32;
    code = code.wrapping_mul(0xc2b2_ae35_u32 as i32);
    code ^= ((code as u32) >> 16) as i32;
    if code >= 0 {
        code as u32
    } else if code != i32::MIN {
        (-code) as u32
    } else {
        0
    }
}

/// SplitMix64's finaliser: spreads a 32-bit hash code over 64 bits for hash tables.
#[inline]
fn spread64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The hash code a table hash was spread from ([`KeyHash::table`]), or `None` if it was not
/// spread from a 32-bit one: the state file keeps the 4-byte code instead of the 8-byte hash.
#[inline]
pub fn hash_code_of_table(table: u64) -> Option<u32> {
    u32::try_from(unspread64(table)).ok()
}

/// The table hash of a key whose Java `hashCode` (as unsigned) is `code`: the one place it
/// is computed, since state files keep the code and restores compute the hash again.
#[inline]
pub fn table_of_hash_code(code: u32) -> u64 {
    spread64(code as u64)
}

/// The inverse of `a` (odd) modulo 2^64, by Newton's iteration: each step doubles the bits
/// that are right, from the 3 that `a` itself gets right.
const fn mul_inverse(a: u64) -> u64 {
    let mut x = a;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

/// The inverse of `y = x ^ (x >> s)`.
#[inline]
fn unxorshift(y: u64, s: u32) -> u64 {
    let mut x = y;
    let mut done = s;
    while done < 64 {
        x = y ^ (x >> s);
        done += s;
    }
    x
}

/// The inverse of [`spread64`] (each of its steps is a bijection of u64).
#[inline]
fn unspread64(z: u64) -> u64 {
    const INV1: u64 = mul_inverse(0xBF58_476D_1CE4_E5B9);
    const INV2: u64 = mul_inverse(0x94D0_49BB_1331_11EB);
    let z = unxorshift(z, 31).wrapping_mul(INV2);
    let z = unxorshift(z, 27).wrapping_mul(INV1);
    unxorshift(z, 30).wrapping_sub(0x9E37_79B9_7F4A_7C15)
}

/// The subtask (0-based) that owns `key_group`: `keyGroup * parallelism / maxParallelism`.
#[inline]
pub fn operator_index(key_group: u32, parallelism: u32, max_parallelism: u32) -> u32 {
    (key_group as u64 * parallelism as u64 / max_parallelism as u64) as u32
}

/// An inclusive range of key groups, as Flink's `KeyGroupRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyGroupRange {
    pub start: u32,
    pub end: u32,
}

impl KeyGroupRange {
    /// The groups subtask `index` of `parallelism` owns.
    pub fn for_subtask(index: u32, parallelism: u32, max_parallelism: u32) -> KeyGroupRange {
        let (i, p, m) = (index as u64, parallelism as u64, max_parallelism as u64);
        KeyGroupRange {
            start: (i * m).div_ceil(p) as u32,
            end: (((i + 1) * m - 1) / p) as u32,
        }
    }

    pub fn contains(&self, key_group: u32) -> bool {
        self.start <= key_group && key_group <= self.end
    }

    pub fn len(&self) -> u32 {
        if self.end < self.start {
            0
        } else {
            self.end - self.start + 1
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> {
        self.start..=self.end
    }
}

impl std::fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}]", self.start, self.end)
    }
}

/// Flink's default max parallelism for an operator of `parallelism`:
/// `min(max(roundUpToPowerOfTwo(p + p/2), 128), 32768)`.
pub fn default_max_parallelism(parallelism: u32) -> u32 {
    let want = (parallelism as u64 + parallelism as u64 / 2).max(1);
    let pow = want.next_power_of_two();
    pow.clamp(128, UPPER_BOUND_MAX_PARALLELISM as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flink's own vectors (maxP = 128, parallelism = 4): key, hashCode, key group, subtask.
    #[test]
    fn flink_test_vectors() {
        let strings: [(&str, i32, u32, u32); 4] = [
            ("a", 97, 81, 2),
            ("b", 98, 22, 0),
            ("key-1", 101943363, 54, 1),
            ("hello", 99162322, 35, 1),
        ];
        for (key, code, group, subtask) in strings {
            assert_eq!(
                java_string_hash_code(key.as_bytes()),
                code,
                "hashCode of {key}"
            );
            let g = hash_str(key.as_bytes()).key_group(128);
            assert_eq!(g, group, "key group of {key}");
            assert_eq!(operator_index(g, 4, 128), subtask, "subtask of {key}");
        }
        for (key, group, subtask) in [(0i64, 94u32, 2u32), (1, 86, 2), (42, 29, 0)] {
            let g = hash_int(key).key_group(128);
            assert_eq!(g, group, "key group of {key}");
            assert_eq!(operator_index(g, 4, 128), subtask, "subtask of {key}");
        }
    }

    #[test]
    fn key_groups_are_the_remainder_for_every_divisor() {
        // Dividends at the edges, then a pseudo-random spread over all 32 bits.
        let mut xs: Vec<u32> = vec![
            0,
            1,
            2,
            127,
            128,
            129,
            i32::MAX as u32,
            u32::MAX - 1,
            u32::MAX,
        ];
        let mut z = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200 {
            z = spread64(z);
            xs.push(z as u32);
        }
        for d in 1..=UPPER_BOUND_MAX_PARALLELISM {
            let groups = KeyGroups::new(d);
            for &x in xs.iter().chain(&[d - 1, d, d + 1, d.wrapping_mul(d)]) {
                assert_eq!(groups.of(x), x % d, "{x} % {d}");
            }
        }
        for d in [1, 3, 7, 128, 1000, 4096, 32767, 32768] {
            let groups = KeyGroups::new(d);
            for x in (0..1u32 << 20).chain(u32::MAX - (1 << 20)..=u32::MAX) {
                assert_eq!(groups.of(x), x % d, "{x} % {d}");
            }
        }
    }

    #[test]
    fn a_table_hash_gives_back_its_hash_code_and_no_other_hash_does() {
        let mut z = 11u64;
        for code in [0u32, 1, 1231, i32::MAX as u32, u32::MAX]
            .into_iter()
            .chain((0..10_000).map(|_| {
                z = spread64(z);
                z as u32
            }))
        {
            let table = table_of_hash_code(code);
            assert_eq!(hash_code_of_table(table), Some(code), "{code}");
            assert_eq!(KeyHash::from_java_hash_code(code as i32).table, table);
        }
        for x in [1u64 << 32, u64::MAX, 0x1234_5678_9abc_def0] {
            assert_eq!(unspread64(spread64(x)), x);
            assert_eq!(hash_code_of_table(spread64(x)), None, "{x:#x}");
        }
    }

    #[test]
    fn a_routed_key_has_the_place_of_its_hash() {
        let groups = KeyGroups::new(128);
        for key in ["a", "b", "key-1", "hello", "é😀", ""] {
            let hash = hash_str(key.as_bytes());
            let routed = groups.route(java_string_hash_code(key.as_bytes()));
            assert_eq!(routed.key_group, hash.key_group(128), "{key}");
            assert_eq!(KeyPlace::of_routed(routed), groups.place(hash), "{key}");
        }
        for v in [0i64, 1, 42, -7, i64::MIN] {
            let routed = groups.route(int_hash_code(v));
            assert_eq!(
                KeyPlace::of_routed(routed),
                groups.place(hash_int(v)),
                "{v}"
            );
        }
    }

    #[test]
    fn short_keys_read_whole_hash_as_byte_by_byte() {
        let mut keys: Vec<Vec<u8>> = ["", "a", "ab", "w7", "abc", "w123", "w9999", "abcdefgh"]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        keys.extend(["abcdefghi", "é", "é😀x", "\u{7f}\u{7f}"].map(|k| k.as_bytes().to_vec()));
        keys.extend([vec![0x80], vec![b'a', 0xff, b'b'], vec![0; 8]]);
        let mut z = 7u64;
        for _ in 0..20_000 {
            z = spread64(z);
            let len = (z >> 60) as usize % 11;
            keys.push((0..len).map(|j| (z >> (5 * j)) as u8 & 0x7f).collect());
            keys.push((0..len).map(|j| (z >> (5 * j)) as u8).collect());
        }
        // All in one buffer, so that most keys have 8 bytes after their start, the last not.
        let mut b = crate::record::StrColumnBuilder::default();
        for k in &keys {
            b.push(k);
        }
        let column = b.finish();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(str_hash_code(&column, i), java_string_hash_code(k), "{k:?}");
        }
        assert_eq!(java_string_hash_code(b"w9999"), 111_653_687); // 'w'·31^4 + '9'·(31^3+…+1)
    }

    #[test]
    fn non_ascii_text_hashes_as_java_utf16() {
        // "é" is U+00E9 (233); "😀" is the surrogate pair D83D DE00.
        assert_eq!(java_string_hash_code("é".as_bytes()), 233);
        assert_eq!(
            java_string_hash_code("😀".as_bytes()),
            0xD83Di32.wrapping_mul(31).wrapping_add(0xDE00)
        );
    }

    #[test]
    fn ranges_match_flink() {
        let r: Vec<_> = (0..3)
            .map(|i| KeyGroupRange::for_subtask(i, 3, 128))
            .map(|r| (r.start, r.end))
            .collect();
        assert_eq!(r, vec![(0, 42), (43, 85), (86, 127)]);
        let r: Vec<_> = (0..4)
            .map(|i| KeyGroupRange::for_subtask(i, 4, 128))
            .map(|r| (r.start, r.end))
            .collect();
        assert_eq!(r, vec![(0, 31), (32, 63), (64, 95), (96, 127)]);
        // Every group's owner by the index formula lies in that owner's range.
        for p in 1..=7 {
            for g in 0..128 {
                let i = operator_index(g, p, 128);
                assert!(KeyGroupRange::for_subtask(i, p, 128).contains(g));
            }
        }
    }

    #[test]
    fn default_max_parallelism_matches_flink() {
        for (p, m) in [
            (1, 128),
            (8, 128),
            (100, 256),
            (127, 256),
            (128, 256),
            (129, 256),
            (200, 512),
            (1000, 2048),
            (20000, 32768),
            (32768, 32768),
        ] {
            assert_eq!(default_max_parallelism(p), m, "p = {p}");
        }
    }
}
