//! `floe serve` across process ends (issue 6): SIGTERM stops every job with a final savepoint
//! and exits 0, and the next start resumes each pipeline from it by itself; after kill -9,
//! the next start resumes from the latest retained checkpoint. Counts are exact across both.
//! The same with the state on S3. Also: a bad configuration at start exits 78.

mod s3_support;
mod serve_support;
use serve_support::*;
use std::path::PathBuf;

/// SIGTERM leaves one final savepoint (found by `savepoints`), and the next start resumes
/// from it by itself, reading the input that came while floe was down exactly once.
fn sigterm_then_resume(l: &Layout, env: &[(&str, &str)], savepoints: impl Fn() -> Vec<PathBuf>) {
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    let serve = Serve::start(l, env);
    serve.wait_running("wc.yaml");
    let a = lines(300, 11);
    l.input("part-1", &a);
    wait_committed(l, updates(&counts(&[&a])));
    let (status, log) = serve.terminate();
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}\n{log}");
    let taken = savepoints();
    assert_eq!(taken.len(), 1, "one final savepoint: {taken:?}\n{log}");

    // Input that arrives while floe is down is read after the restart, once.
    let b = lines(200, 12);
    l.input("part-2", &b);
    let serve = Serve::start(l, env);
    let id = serve.wait_running("wc.yaml");
    let ck = serve.get(&format!("/jobs/{id}/checkpoints"));
    let restored = ck["latest"]["restored"]["external_path"]
        .as_str()
        .unwrap_or("");
    let taken = taken[0].display().to_string();
    assert!(
        !restored.is_empty() && (restored.ends_with(&taken) || taken.ends_with(restored)),
        "resumed from the final savepoint {taken}: {ck}\n{}",
        serve.log_text()
    );
    assert_eq!(ck["latest"]["restored"]["is_savepoint"], true);
    let expected = counts(&[&a, &b]);
    wait_committed(l, updates(&expected));
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    assert_exactly_once(&l.committed(), &expected);
}

#[test]
fn sigterm_leaves_a_final_savepoint_and_the_next_start_resumes_from_it() {
    let l = Layout::new("");
    sigterm_then_resume(&l, &[], || {
        let taken = l.service_savepoints();
        for s in &taken {
            assert!(s.join("_metadata").is_file(), "{}", s.display());
        }
        taken
    });
}

/// The same with checkpoints and service savepoints on S3 (a real SeaweedFS, `s3_support`):
/// the final savepoint is found on S3 and nothing is written to the local disk.
#[test]
fn with_state_on_s3_the_final_savepoint_is_found_there_on_the_next_start() {
    let Some(s3) = s3_support::server() else {
        return;
    };
    s3.configure_library();
    let root = s3.prefix("serve");
    let mut env = vec![("FLOE_STATE_CHECKPOINTS_DIR", root.as_str())];
    env.extend(s3.vars());
    let l = Layout::new("");
    let managed = floe::checkpoint::storage::parse_dir(&format!("{root}/floe-savepoints")).unwrap();
    sigterm_then_resume(&l, &env, || {
        floe::checkpoint::storage::list_savepoints(&managed)
            .unwrap()
            .iter()
            .map(|at| at.to_path_buf())
            .collect()
    });
    assert!(
        !l.path("ck").exists(),
        "nothing went to the local disk: {}",
        l.path("ck").display()
    );
}

#[test]
fn after_kill_9_the_next_start_resumes_from_the_latest_checkpoint() {
    let l = Layout::new("");
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    let serve = Serve::start(&l, &[]);
    serve.wait_running("wc.yaml");
    let a = lines(300, 21);
    l.input("part-1", &a);
    // Committed output means the checkpoint covering it completed.
    wait_committed(&l, updates(&counts(&[&a])));
    serve.kill9();
    assert!(
        l.service_savepoints().is_empty(),
        "no savepoint after kill -9"
    );

    let b = lines(150, 22);
    l.input("part-2", &b);
    let serve = Serve::start(&l, &[]);
    let id = serve.wait_running("wc.yaml");
    let ck = serve.get(&format!("/jobs/{id}/checkpoints"));
    let restored = ck["latest"]["restored"]["external_path"]
        .as_str()
        .unwrap_or("");
    assert!(
        restored.contains("/chk-"),
        "resumed from a checkpoint: {ck}"
    );
    assert_eq!(ck["latest"]["restored"]["is_savepoint"], false);
    // Logged in Flink's words, with the checkpoint's id and trigger time.
    let log = serve.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("Restoring job ") && l.contains(" from Checkpoint "))
        .unwrap_or_else(|| panic!("a restore line:\n{log}"));
    let at: u64 = line
        .split(" @ ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    assert!(at > 1_600_000_000_000, "the trigger time: {line}");
    assert!(line.contains("/chk-"), "{line}");
    let expected = counts(&[&a, &b]);
    wait_committed(&l, updates(&expected));
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    assert_exactly_once(&l.committed(), &expected);
}

/// `floe serve` to its end (here: a refused start).
fn serve_once(conf: &std::path::Path, pipelines: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_floe"))
        .env_remove("FLOE_CONF_DIR")
        .env("FLOE_REST_PORT", "0")
        .args(["serve", "--conf-dir"])
        .arg(conf)
        .arg("--pipelines")
        .arg(pipelines)
        .output()
        .unwrap()
}

#[test]
fn a_bad_configuration_at_start_exits_78() {
    let l = Layout::new("execution.checkpointing.interval: soon\n");
    let out = serve_once(&l.path("conf"), &l.path("pipelines"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("execution.checkpointing.interval"), "{err}");

    let l = Layout::new("");
    let out = serve_once(&l.path("conf"), &l.path("missing"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("--pipelines"), "{err}");
}
