//! Any text as `flink-conf.yaml`: loading it must end in a configuration or in errors naming
//! the file, never in a panic, an abort or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = floe::config::LoadOptions::default();
    let _ = floe::config::load_with_conf_text(text, Path::new("conf/flink-conf.yaml"), &opts, &[]);
});
