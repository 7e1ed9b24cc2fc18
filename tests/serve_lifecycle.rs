//! `floe serve` across process ends (issue 6): SIGTERM stops every job with a final savepoint
//! and exits 0, and the next start resumes each pipeline from it by itself; after kill -9,
//! the next start resumes from the latest retained checkpoint. Counts are exact across both.
//! Also: a bad configuration at start exits 78.

mod serve_support;
use serve_support::*;

#[test]
fn sigterm_leaves_a_final_savepoint_and_the_next_start_resumes_from_it() {
    let l = Layout::new("");
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    let serve = Serve::start(&l, &[]);
    serve.wait_running("wc.yaml");
    let a = lines(300, 11);
    l.input("part-1", &a);
    wait_committed(&l, updates(&counts(&[&a])));
    let (status, log) = serve.terminate();
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}\n{log}");
    let savepoints = l.service_savepoints();
    assert_eq!(
        savepoints.len(),
        1,
        "one final savepoint: {savepoints:?}\n{log}"
    );
    assert!(savepoints[0].join("_metadata").is_file());

    // Input that arrives while floe is down is read after the restart, once.
    let b = lines(200, 12);
    l.input("part-2", &b);
    let serve = Serve::start(&l, &[]);
    let id = serve.wait_running("wc.yaml");
    let ck = serve.get(&format!("/jobs/{id}/checkpoints"));
    let restored = ck["latest"]["restored"]["external_path"]
        .as_str()
        .unwrap_or("");
    assert!(
        restored.ends_with(&savepoints[0].display().to_string()),
        "resumed from the final savepoint {}: {ck}",
        savepoints[0].display()
    );
    assert_eq!(ck["latest"]["restored"]["is_savepoint"], true);
    let expected = counts(&[&a, &b]);
    wait_committed(&l, updates(&expected));
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    assert_exactly_once(&l.committed(), &expected);
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
