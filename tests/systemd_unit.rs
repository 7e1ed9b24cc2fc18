//! The systemd unit in `deploy/systemd/` and what it runs before the service starts.
//!
//! `systemd-analyze verify` checks the unit the way systemd would load it (where the tool
//! exists: Debian's `systemd` package; `.ci/run` installs it, and under `CI` a missing tool
//! fails the test). The unit's `/usr/local/bin/floe` is pointed at the binary under test,
//! since verify refuses an `ExecStart` that does not exist.

mod common;

use common::floe;
use std::path::{Path, PathBuf};
use std::process::Command;

const UNIT: &str = "deploy/systemd/floe.service";

fn systemd_analyze() -> Option<PathBuf> {
    let found = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| common::tools::on_path("systemd-analyze"));
    if found.is_none() {
        common::tools::missing("systemd-analyze", "apt-get install systemd");
    }
    found
}

/// The unit with its binary paths pointed at the floe under test, in `dir`.
fn unit_for_test(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(UNIT).unwrap();
    let text = text.replace("/usr/local/bin/floe", env!("CARGO_BIN_EXE_floe"));
    let path = dir.join("floe.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_unit_is_accepted_by_systemd_analyze_verify() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let out = Command::new(&tool)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify refused the unit: {stderr}");
    // verify also prints warnings with rc 0: none may concern our unit.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("floe.service"))
        .collect();
    assert!(ours.is_empty(), "warnings about the unit: {ours:?}");

    // A broken copy is refused: the check above can fail.
    let broken = dir.path().join("broken.service");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&unit)
            .unwrap()
            .replace("Type=notify", "Type=notifyy"),
    )
    .unwrap();
    let out = Command::new(&tool)
        .arg("verify")
        .arg(&broken)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() || stderr.contains("notifyy"),
        "a bad Type= must be reported: {stderr}"
    );
}

#[test]
fn the_unit_says_what_the_service_contract_needs() {
    let text = std::fs::read_to_string(UNIT).unwrap();
    let settings: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let has = |k: &str, v: &str| settings.iter().any(|(a, b)| *a == k && b.contains(v));
    assert!(has("Type", "notify"));
    assert!(has("ExecStartPre", "floe validate --service"));
    assert!(has("ExecStart", "floe serve"));
    assert!(has("ExecReload", "floe reload"));
    assert!(has("RestartPreventExitStatus", "78"));
    assert!(has("StateDirectory", "floe"));
    assert!(has("ConfigurationDirectory", "floe"));
    assert!(has("NoNewPrivileges", "yes"));
    assert!(has("ProtectSystem", "strict"));
    assert!(has("WatchdogSec", "s"));
}

#[test]
fn the_unit_is_hardened_by_systemd_s_own_measure() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let out = Command::new(&tool)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // "→ Overall exposure level for floe.service: 1.9 OK 🙂"
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in: {stdout}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score of: {line}"));
    assert!(score <= 3.0, "exposure {score} above 3.0 (OK): {line}");
}

/// `floe validate [--service] --conf-dir CONF DIR` (the unit's `ExecStartPre` runs it with
/// `--service`).
fn validate_with(extra: &[&str], conf: &Path, pipelines: &Path) -> std::process::Output {
    floe()
        .arg("validate")
        .args(extra)
        .arg("--conf-dir")
        .arg(conf)
        .arg(pipelines)
        .output()
        .unwrap()
}

fn validate(conf: &Path, pipelines: &Path) -> std::process::Output {
    validate_with(&[], conf, pipelines)
}

/// The unit's pre-start check fails only on what stops the whole service: an invalid
/// pipeline file is reported, with exit 0 (floe serve starts the others); a bad conf file,
/// REST address or pipeline directory is exit 78.
#[test]
fn the_units_check_fails_only_on_what_stops_the_whole_service() {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).unwrap();
    std::fs::copy("pipelines/wordcount.yaml", pipelines.join("wordcount.yaml")).unwrap();
    std::fs::write(
        pipelines.join("broken.yml"),
        "name: broken\noperators:\n  - id: src\n    type: sockett\n",
    )
    .unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(conf.join("flink-conf.yaml"), "parallelism.default: 1\n").unwrap();
    let service = ["--service"];

    let out = validate_with(&service, &conf, &pipelines);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("broken.yml"),
        "the bad file is reported: {stderr}"
    );
    assert!(stdout.contains("wordcount.yaml: valid"), "{stdout}");

    // What stops the whole service: exit 78, the key named.
    for (bad, key) in [
        (
            "execution.checkpointing.interval: often\n",
            "execution.checkpointing.interval",
        ),
        ("rest.bind-address: 0.0.0.0\n", "rest.auth.token"),
        (
            "rest.auth.token-file: /nonexistent/floe-token\n",
            "rest.auth.token-file",
        ),
    ] {
        std::fs::write(conf.join("flink-conf.yaml"), bad).unwrap();
        let out = validate_with(&service, &conf, &pipelines);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{bad}: {stderr}");
        assert!(stderr.contains(key), "{bad}: {stderr}");
    }
    std::fs::write(conf.join("flink-conf.yaml"), "parallelism.default: 1\n").unwrap();
    let out = validate_with(&service, &conf, &dir.path().join("missing"));
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pipelines"));
}

#[test]
fn validate_checks_a_directory_of_pipelines_with_the_conf_file() {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).unwrap();
    std::fs::copy("pipelines/wordcount.yaml", pipelines.join("wordcount.yaml")).unwrap();
    // An editor's swap file and a non-YAML file are not pipelines.
    std::fs::write(pipelines.join(".wordcount.yaml.swp"), "garbage: [").unwrap();
    std::fs::write(pipelines.join("README.txt"), "not a pipeline").unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(conf.join("flink-conf.yaml"), "parallelism.default: 1\n").unwrap();

    let out = validate(&conf, &pipelines);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("wordcount.yaml: valid"), "{stdout}");
    assert_eq!(stdout.matches(": valid").count(), 1, "{stdout}");

    // A bad pipeline in the directory: exit 78, the file named.
    std::fs::write(
        pipelines.join("broken.yml"),
        "name: broken\noperators:\n  - id: src\n    type: sockett\n",
    )
    .unwrap();
    let out = validate(&conf, &pipelines);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.yml"), "{stderr}");
    std::fs::remove_file(pipelines.join("broken.yml")).unwrap();

    // A bad value in the conf file: exit 78, the key named.
    std::fs::write(
        conf.join("flink-conf.yaml"),
        "execution.checkpointing.interval: often\n",
    )
    .unwrap();
    let out = validate(&conf, &pipelines);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("execution.checkpointing.interval"),
        "{stderr}"
    );
}
