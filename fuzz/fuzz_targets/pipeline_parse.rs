//! Any text as a pipeline file: parsing and validating it, and planning what validates, must
//! end in a pipeline or in errors, never in a panic, an abort or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pipeline) = floe::pipeline::parse(text, Path::new("fuzz/p.yaml")) {
        let _ = floe::pipeline::plan::Plan::build(&pipeline, 1, None);
    }
});
