//! The one rule for a test that needs a tool from outside the repository (python3, chromium
//! and node, tansu, SeaweedFS's `weed`, systemd-analyze...): under CI (`CI=true`, as `.ci/run`
//! sets it) a missing tool fails the test, because a check that silently did not run proves
//! nothing; elsewhere the test skips and says so on stderr, naming the tool and how to get it.
//!
//! This file depends on nothing else in `tests/`, so the support modules include it with
//! `#[path = "../common/tools.rs"] mod tools;` and every test file gets the same rule.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// Whether this run is CI's: `CI` set to anything but empty, `0` or `false`.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
    })
}

/// Reports that `tool` is missing: panics under CI; otherwise prints that the test is skipped,
/// naming the tool and `install` (how to get it), and returns so the caller can return.
#[track_caller]
pub fn missing(tool: &str, install: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    assert!(
        !ci(),
        "{test}: CI is set but {tool} is missing: {install} (.ci/run installs it)"
    );
    // Straight to stderr, not `eprintln!`: the test harness captures that for tests that
    // pass, and a skip nobody sees is a silent pass.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {tool} is missing: {install}"
    );
}

/// `name` in a directory of `PATH`, if there is one.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The tool named by the environment variable `var` if set, else `name` on `PATH`; or `None`
/// after [`missing`] (which fails under CI).
#[track_caller]
pub fn find(var: &str, name: &str, install: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let found = on_path(name);
    if found.is_none() {
        missing(name, &format!("{install}, or set {var}"));
    }
    found
}
