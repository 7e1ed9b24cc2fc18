//! Any text as a pipeline file: parsing and validating it, loading its `config:` block over an
//! empty conf file, and planning what validates with the parallelism it asks for, must end in
//! a pipeline or in errors, never in a panic, an abort or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(pipeline) = floe::pipeline::parse(text, Path::new("fuzz/p.yaml")) else {
        return;
    };
    let opts = floe::config::LoadOptions {
        conf_dir: None,
        pipeline_settings: pipeline.settings.clone(),
        dynamic: Vec::new(),
    };
    let conf = Path::new("conf/flink-conf.yaml");
    let Ok(loaded) = floe::config::load_with_conf_text("", conf, &opts, &[]) else {
        return;
    };
    let c = &loaded.config;
    // The plan is what the memory check weighs; a parallelism the budget refuses is not built
    // by floe either, so keep to small ones here (the fuzzer must not spend its time on p²).
    if c.parallelism_default <= 64 {
        let _ = floe::pipeline::plan::Plan::build(&pipeline, c.parallelism_default, c.max_parallelism);
    }
});
