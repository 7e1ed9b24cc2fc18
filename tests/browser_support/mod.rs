//! Headless Chromium for the dashboard tests: finding it (with node and playwright-core),
//! where screenshots go, and running a driver script of `tests/browser` that prints one
//! `RESULT {json}` line.
#![allow(dead_code)]

#[allow(
    clippy::duplicate_mod,
    reason = "the missing-tool rule, also in `common` for tests that have it"
)]
#[path = "../common/tools.rs"]
mod tools;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Browser {
    pub node: PathBuf,
    pub chromium: PathBuf,
    pub driver_dir: PathBuf,
}

/// Chromium, node and playwright-core, or `None` after saying what is missing (outside CI).
/// In CI a missing piece fails the test: a browser test that silently skips proves nothing.
pub fn browser() -> Option<Browser> {
    let driver_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var_os("FLOE_CHROMIUM")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| {
            ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .or_else(|| tools::on_path("chromium"));
    let node = tools::on_path("node");
    let mut missing = Vec::new();
    if chromium.is_none() {
        missing.push("chromium (apt-get install chromium, or set FLOE_CHROMIUM)");
    }
    if node.is_none() {
        missing.push("node (apt-get install nodejs npm)");
    }
    if !driver_dir.join("node_modules/playwright-core").is_dir() {
        missing.push("playwright-core (npm ci --prefix tests/browser)");
    }
    if missing.is_empty() {
        return Some(Browser {
            node: node?,
            chromium: chromium?,
            driver_dir,
        });
    }
    tools::missing(
        "the dashboard's browser",
        &format!("missing {}", missing.join("; ")),
    );
    None
}

/// Where screenshots go: `FLOE_SCREENSHOT_DIR` to keep them, else the test's temp dir.
pub fn screenshot_path(tmp: &Path, name: &str) -> PathBuf {
    let dir = std::env::var_os("FLOE_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs `tests/browser/<script>` with `env` (and `FLOE_CHROMIUM`); its `RESULT` object. The
/// script must succeed and the page must have thrown nothing.
pub fn run_script(browser: &Browser, script: &str, env: &[(&str, &str)]) -> Value {
    let out = Command::new(&browser.node)
        .arg(browser.driver_dir.join(script))
        .current_dir(&browser.driver_dir)
        .env("FLOE_CHROMIUM", &browser.chromium)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("run node tests/browser/{script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser driver {script} failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line from {script}:\n{stdout}\n{stderr}"));
    let result: Value = serde_json::from_str(line).expect("RESULT is JSON");
    assert_eq!(
        result["pageErrors"],
        serde_json::json!([]),
        "no uncaught error in the page"
    );
    result
}
