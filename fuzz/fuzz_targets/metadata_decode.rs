//! Any bytes as a checkpoint's `_metadata`: decoding must end in metadata or in an error
//! naming the file, never in a panic, an abort, a hang or a huge allocation.
//!
//! The bytes are tried twice: as the whole file, and as the payload of a sound frame (magic,
//! a version from the first byte, the length, the crc32c), so that the fuzzer also gets past
//! the checksum into the payload's decoding and its checks (names, counts, paths).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("chk-1/_metadata");
    let _ = floe::checkpoint::metadata::decode(data, path);
    let Some((&version, payload)) = data.split_first() else {
        return;
    };
    let mut framed = Vec::with_capacity(payload.len() + 20);
    framed.extend_from_slice(&floe::checkpoint::metadata::METADATA_MAGIC);
    framed.extend_from_slice(&u32::from(version % 3).to_be_bytes());
    framed.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    framed.extend_from_slice(payload);
    let crc = crc32c::crc32c(&framed);
    framed.extend_from_slice(&crc.to_be_bytes());
    let _ = floe::checkpoint::metadata::decode(&framed, path);
});
