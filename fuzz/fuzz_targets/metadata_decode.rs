//! Any bytes as a checkpoint's `_metadata`: decoding must end in metadata or in an error
//! naming the file, never in a panic, an abort, a hang or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = floe::checkpoint::metadata::decode(data, Path::new("chk-1/_metadata"));
});
