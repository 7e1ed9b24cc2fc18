//! Helpers the end-to-end tests share: the binary, the generator's definition, waiting for
//! files, and (in `tools`) the rule for a missing external tool. Each test file uses what it
//! needs.
#![allow(dead_code)]

pub mod tools;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Word counts of the datagen corpus, from the SplitMix64 definition in
/// `tests/fixtures/gen_corpus.py` (independent of floe's own generator code).
pub fn expected_counts(
    lines: u64,
    words_per_line: u64,
    vocab: u64,
    seed: u64,
) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for n in 0..lines * words_per_line {
        let z = seed.wrapping_add((n + 1).wrapping_mul(GAMMA));
        *counts.entry(format!("w{}", mix(z) % vocab)).or_insert(0) += 1;
    }
    counts
}

/// The corpus generator's definition, `tests/fixtures/gen_corpus.py`.
pub fn gen_corpus_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gen_corpus.py")
}

/// The output of `python3 tests/fixtures/gen_corpus.py <args>`; `None` when python3 is
/// missing outside CI (see [`tools::missing`]). Panics when the script fails.
#[track_caller]
pub fn gen_corpus(args: &[&str]) -> Option<String> {
    let script = gen_corpus_script();
    let out = match Command::new("python3").arg(&script).args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tools::missing("python3", "apt-get install python3");
            return None;
        }
        Err(e) => panic!("cannot run python3 {}: {e}", script.display()),
    };
    assert!(
        out.status.success(),
        "python3 {} {}: {}\n{}",
        script.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("the corpus is ASCII"))
}

/// The floe binary, with no conf dir of the developer's leaking in and quiet logs. The
/// benches' own FLOE_BENCH_* variables are not configuration keys: floe would warn of them.
pub fn floe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_floe"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FLOE_BENCH_") {
            c.env_remove(k);
        }
    }
    // Port 0: tests run side by side, each floe on a free port of its own.
    c.env_remove("FLOE_CONF_DIR")
        .env("RUST_LOG", "warn")
        .env("FLOE_REST_PORT", "0");
    c
}

/// Polls `cond` until it holds; panics naming `what` after a deadline far above any normal
/// run. For waiting on files and processes, never for timing.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
