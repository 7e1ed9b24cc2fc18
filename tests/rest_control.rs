//! The endpoints that change something, over a real socket, with a stand-in job driver that
//! answers the registry's commands: savepoint trigger and status, stop, cancel, disposal;
//! savepoint targets and disposal paths confined to the allowed roots; the bearer token;
//! the port-taken and non-loopback refusals.

mod rest_support;

use floe::checkpoint::{CheckpointId, CompletedCheckpoint, JobId};
use floe::service::registry::{JobCommand, JobState};
use floe::service::rest::{self, ApiState, DisposalHook, RestOptions, RestServer, ServeError};
use floe::service::JobRegistry;
use rest_support::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// Answers commands as a job would: a savepoint is a directory with a `_metadata` file; a
/// target containing "refuse" fails; stop finishes the job, cancel cancels it.
fn fake_driver(registry: JobRegistry, id: JobId, mut rx: UnboundedReceiver<JobCommand>) {
    tokio::spawn(async move {
        let mut next = 5;
        let mut take = |target: Option<String>| -> Result<CompletedCheckpoint, String> {
            let target = target.ok_or("no target")?;
            if target.contains("refuse") {
                return Err(format!("cannot write into {target}"));
            }
            let dir = Path::new(&target).join(format!("savepoint-{}-0123456789ab", &id.0[..6]));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            std::fs::write(dir.join("_metadata"), b"meta").map_err(|e| e.to_string())?;
            next += 1;
            Ok(CompletedCheckpoint {
                checkpoint_id: CheckpointId(next),
                path: floe::checkpoint::storage::Location::Local(dir),
                size: 4,
            })
        };
        while let Some(cmd) = rx.recv().await {
            match cmd {
                JobCommand::TriggerSavepoint {
                    target,
                    cancel_job,
                    reply,
                } => {
                    let r = take(target);
                    if cancel_job && r.is_ok() {
                        registry.finish(&id, JobState::Canceled, None);
                    }
                    let _ = reply.send(r);
                }
                JobCommand::Stop { target, reply, .. } => {
                    let r = take(target);
                    if r.is_ok() {
                        registry.finish(&id, JobState::Finished, None);
                    }
                    let _ = reply.send(r);
                }
                JobCommand::Cancel { reply } => {
                    registry.finish(&id, JobState::Canceled, None);
                    let _ = reply.send(Ok(()));
                }
            }
        }
    });
}

struct Setup {
    server: RestServer,
    registry: JobRegistry,
    root: tempfile::TempDir,
}

impl Setup {
    fn sp_dir(&self) -> PathBuf {
        self.root.path().join("sp")
    }
}

/// Job A running with `state.savepoints.dir` = `<tmp>/sp`; `<tmp>/extra` allowed too.
async fn setup(opts: impl FnOnce(&mut RestOptions), with_savepoint_dir: bool) -> Setup {
    let root = tempfile::tempdir().unwrap();
    let sp = root.path().join("sp");
    let registry = JobRegistry::new();
    let config = checkpoint_config(with_savepoint_dir.then_some(sp.as_path()));
    let rx = registry.register(registration(JOB_A, Some(fixed_stats()), config));
    fake_driver(registry.clone(), JobId(JOB_A.into()), rx);
    let mut o = RestOptions::local_ephemeral();
    o.allowed_dirs = vec![root.path().join("extra").display().to_string()];
    opts(&mut o);
    let dispose: DisposalHook = Arc::new(|p: &Path| {
        if !p.join("_metadata").is_file() {
            return Err(format!("{} is not a savepoint (no _metadata)", p.display()));
        }
        std::fs::remove_dir_all(p).map_err(|e| e.to_string())
    });
    let state = ApiState::new(registry.clone(), &o).with_disposal(dispose);
    let server = rest::serve(rest::router(state), &o).await.unwrap();
    Setup {
        server,
        registry,
        root,
    }
}

fn completed_op(v: &serde_json::Value) -> bool {
    v["status"]["id"] == "COMPLETED"
}

#[tokio::test]
async fn savepoint_trigger_then_status_then_checkpoints_show_it() {
    let s = setup(|_| {}, true).await;
    let addr = s.server.local_addr();
    let a = post_json(addr, &format!("/jobs/{JOB_A}/savepoints"), "{}").await;
    assert_eq!(a.status, 202, "{}", a.body);
    let trigger = a.json()["request-id"].as_str().unwrap().to_owned();
    assert!(JobId::is_valid(&trigger), "{trigger}");
    let v = poll_until(
        addr,
        &format!("/jobs/{JOB_A}/savepoints/{trigger}"),
        completed_op,
    )
    .await;
    let location = v["operation"]["location"].as_str().unwrap();
    let sp = std::fs::canonicalize(s.sp_dir()).unwrap();
    assert_eq!(
        location,
        format!("file:{}/savepoint-8f7974-0123456789ab", sp.display())
    );

    let c = get(addr, &format!("/jobs/{JOB_A}/checkpoints"))
        .await
        .json();
    assert_eq!(c["latest"]["savepoint"]["external_path"], location);
    assert_eq!(c["latest"]["savepoint"]["is_savepoint"], true);
    assert_eq!(c["latest"]["savepoint"]["checkpoint_type"], "SAVEPOINT");
    assert_eq!(c["latest"]["savepoint"]["savepointFormat"], "CANONICAL");
    assert_eq!(
        c["history"][0]["id"], 6,
        "the savepoint is the newest entry"
    );

    // An explicit target under an allowed root, given as a file URI.
    let extra = s.root.path().join("extra");
    let body = format!(r#"{{"target-directory": "file://{}"}}"#, extra.display());
    let a = post_json(addr, &format!("/jobs/{JOB_A}/savepoints"), &body).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let trigger = a.json()["request-id"].as_str().unwrap().to_owned();
    let v = poll_until(
        addr,
        &format!("/jobs/{JOB_A}/savepoints/{trigger}"),
        completed_op,
    )
    .await;
    assert!(
        v["operation"]["location"]
            .as_str()
            .unwrap()
            .contains("/extra/savepoint-8f7974-"),
        "{v}"
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn a_failed_savepoint_reports_its_cause() {
    let s = setup(|_| {}, true).await;
    let addr = s.server.local_addr();
    let target = s.root.path().join("extra/refuse");
    let body = format!(r#"{{"target-directory": "{}"}}"#, target.display());
    let a = post_json(addr, &format!("/jobs/{JOB_A}/savepoints"), &body).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let trigger = a.json()["request-id"].as_str().unwrap().to_owned();
    let v = poll_until(
        addr,
        &format!("/jobs/{JOB_A}/savepoints/{trigger}"),
        completed_op,
    )
    .await;
    let trace = v["operation"]["failure-cause"]["stack-trace"]
        .as_str()
        .unwrap();
    assert!(trace.contains("cannot write into"), "{v}");
    s.server.shutdown().await;
}

#[tokio::test]
async fn without_a_target_or_a_default_directory_flinks_message() {
    let s = setup(|_| {}, false).await;
    let addr = s.server.local_addr();
    let a = post_json(addr, &format!("/jobs/{JOB_A}/savepoints"), "{}").await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.error(),
        "Config key [execution.checkpointing.savepoint-dir] is not set. Property \
         [target-directory] must be provided."
    );
    let a = post_json(addr, &format!("/jobs/{JOB_A}/stop"), r#"{"drain": true}"#).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.error(),
        "Config key [execution.checkpointing.savepoint-dir] is not set. Property \
         [targetDirectory] must be provided."
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn targets_outside_the_roots_are_refused() {
    let s = setup(|_| {}, true).await;
    let addr = s.server.local_addr();
    let escape = format!("{}/../../etc", s.sp_dir().display());
    for body in [
        r#"{"target-directory": "/etc"}"#.to_owned(),
        format!(r#"{{"target-directory": "{escape}"}}"#),
        r#"{"target-directory": "s3://bucket/sp"}"#.to_owned(),
    ] {
        let a = post_json(addr, &format!("/jobs/{JOB_A}/savepoints"), &body).await;
        assert!(matches!(a.status, 400 | 403), "{body}: {}", a.body);
        assert!(a.error().contains("savepoint target"), "{}", a.body);
    }
    let a = post_json(
        addr,
        &format!("/jobs/{JOB_A}/stop"),
        r#"{"targetDirectory": "/tmp"}"#,
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.error().contains("outside the allowed directories"),
        "{}",
        a.body
    );

    #[cfg(unix)]
    {
        let outside = s.root.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(s.sp_dir()).unwrap();
        std::os::unix::fs::symlink(&outside, s.sp_dir().join("link")).unwrap();
        let body = format!(
            r#"{{"target-directory": "{}"}}"#,
            s.sp_dir().join("link").display()
        );
        let a = post_json(addr, &format!("/jobs/{JOB_A}/savepoints"), &body).await;
        assert_eq!(a.status, 403, "a symlink out of the root: {}", a.body);
    }
    assert_eq!(
        std::fs::read_dir(s.root.path().join("outside"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "nothing written outside"
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn stop_with_savepoint_finishes_the_job() {
    let s = setup(|_| {}, true).await;
    let addr = s.server.local_addr();
    let a = post_json(addr, &format!("/jobs/{JOB_A}/stop"), r#"{"drain": false}"#).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let trigger = a.json()["request-id"].as_str().unwrap().to_owned();
    let v = poll_until(
        addr,
        &format!("/jobs/{JOB_A}/savepoints/{trigger}"),
        completed_op,
    )
    .await;
    assert!(v["operation"]["location"].is_string(), "{v}");
    assert_eq!(
        get(addr, &format!("/jobs/{JOB_A}")).await.json()["state"],
        "FINISHED"
    );
    let c = get(addr, &format!("/jobs/{JOB_A}/checkpoints"))
        .await
        .json();
    assert_eq!(
        c["latest"]["savepoint"]["checkpoint_type"],
        "SYNC_SAVEPOINT"
    );
    // The job no longer takes commands.
    let a = post_json(addr, &format!("/jobs/{JOB_A}/savepoints"), "{}").await;
    assert_eq!(a.status, 409, "{}", a.body);
    s.server.shutdown().await;
}

#[tokio::test]
async fn cancel_is_accepted_and_idempotent() {
    let s = setup(|_| {}, true).await;
    let addr = s.server.local_addr();
    let a = request(
        addr,
        "PATCH",
        &format!("/jobs/{JOB_A}?mode=cancel"),
        &[],
        None,
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.json(), serde_json::json!({}));
    poll_until(addr, &format!("/jobs/{JOB_A}"), |v| {
        v["state"] == "CANCELED"
    })
    .await;
    let a = request(
        addr,
        "PATCH",
        &format!("/jobs/{JOB_A}?mode=cancel"),
        &[],
        None,
    )
    .await;
    assert_eq!(a.status, 202, "again: {}", a.body);
    let unknown = "00000000000000000000000000000000";
    let a = request(
        addr,
        "PATCH",
        &format!("/jobs/{unknown}?mode=cancel"),
        &[],
        None,
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error(), "Job could not be found.");
    assert!(s
        .registry
        .get(&JobId(JOB_A.into()))
        .unwrap()
        .end_time
        .is_some());
    s.server.shutdown().await;
}

#[tokio::test]
async fn disposal_removes_a_savepoint_and_refuses_the_rest() {
    let s = setup(|_| {}, true).await;
    let addr = s.server.local_addr();
    let sp = s.sp_dir().join("savepoint-8f7974-aaaaaaaaaaaa");
    std::fs::create_dir_all(&sp).unwrap();
    std::fs::write(sp.join("_metadata"), b"m").unwrap();
    let body = format!(r#"{{"savepoint-path": "file://{}"}}"#, sp.display());
    let a = post_json(addr, "/savepoint-disposal", &body).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let trigger = a.json()["request-id"].as_str().unwrap().to_owned();
    let v = poll_until(
        addr,
        &format!("/savepoint-disposal/{trigger}"),
        completed_op,
    )
    .await;
    assert_eq!(v["operation"], serde_json::json!({}), "{v}");
    assert!(!sp.exists());

    // Not a savepoint: the hook refuses, the operation carries the cause.
    let not_sp = s.sp_dir().join("plain");
    std::fs::create_dir_all(&not_sp).unwrap();
    let body = format!(r#"{{"savepoint-path": "{}"}}"#, not_sp.display());
    let a = post_json(addr, "/savepoint-disposal", &body).await;
    let trigger = a.json()["request-id"].as_str().unwrap().to_owned();
    let v = poll_until(
        addr,
        &format!("/savepoint-disposal/{trigger}"),
        completed_op,
    )
    .await;
    let trace = v["operation"]["failure-cause"]["stack-trace"]
        .as_str()
        .unwrap();
    assert!(trace.contains("Could not dispose savepoint"), "{v}");
    assert!(not_sp.exists());

    // Outside the roots: refused before anything runs.
    let outside = s.root.path().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("_metadata"), b"m").unwrap();
    let body = format!(r#"{{"savepoint-path": "{}"}}"#, outside.display());
    let a = post_json(addr, "/savepoint-disposal", &body).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.error().contains("outside the allowed directories"),
        "{}",
        a.body
    );
    assert!(outside.join("_metadata").exists());

    let a = post_json(addr, "/savepoint-disposal", "{}").await;
    assert_eq!(a.status, 400);
    assert!(a.error().contains("savepoint-path"), "{}", a.body);
    let a = get(addr, "/savepoint-disposal/ffffffffffffffffffffffffffffffff").await;
    assert_eq!(a.status, 404);
    s.server.shutdown().await;
}

#[tokio::test]
async fn a_token_guards_every_change_but_not_reads() {
    let s = setup(|o| o.token = Some("s3cret".into()), true).await;
    let addr = s.server.local_addr();
    let path = format!("/jobs/{JOB_A}/savepoints");
    let json = ("Content-Type", "application/json");

    let a = request(addr, "POST", &path, &[json], Some("{}")).await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.error().contains("Authorization: Bearer"), "{}", a.body);
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));

    let wrong = ("Authorization", "Bearer guess");
    let a = request(addr, "POST", &path, &[json, wrong], Some("{}")).await;
    assert_eq!(a.status, 401);

    let a = request(addr, "PATCH", &format!("/jobs/{JOB_A}"), &[], None).await;
    assert_eq!(a.status, 401, "cancel needs the token too");
    let a = request(addr, "POST", "/savepoint-disposal", &[json], Some("{}")).await;
    assert_eq!(a.status, 401, "disposal needs the token too");

    assert_eq!(get(addr, &format!("/jobs/{JOB_A}")).await.status, 200);
    assert_eq!(get(addr, "/metrics").await.status, 200);

    let right = ("Authorization", "Bearer s3cret");
    let a = request(addr, "POST", &path, &[json, right], Some("{}")).await;
    assert_eq!(a.status, 202, "{}", a.body);
    s.server.shutdown().await;
}

#[tokio::test]
async fn a_token_file_is_read_and_an_empty_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-file\n").unwrap();
    let mut o = RestOptions::local_ephemeral();
    o.token_file = Some(file.clone());
    assert_eq!(o.resolve_token().unwrap().as_deref(), Some("from-file"));
    std::fs::write(&file, "  \n").unwrap();
    assert!(matches!(
        o.resolve_token(),
        Err(ServeError::EmptyToken { .. })
    ));
    o.token_file = Some(dir.path().join("missing"));
    let e = rest::serve(rest::router(ApiState::new(JobRegistry::new(), &o)), &o)
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("rest.auth.token-file"), "{e}");
}

#[tokio::test]
async fn a_taken_port_says_how_to_pick_another() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut o = RestOptions::local_ephemeral();
    o.port = port;
    let e = rest::serve(rest::router(ApiState::new(JobRegistry::new(), &o)), &o)
        .await
        .err()
        .expect("the port is taken");
    assert!(matches!(e, ServeError::AddrInUse { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("-D rest.port=0"), "{text}");
}

#[tokio::test]
async fn a_non_loopback_address_needs_a_token() {
    let mut o = RestOptions::local_ephemeral();
    o.bind_address = "0.0.0.0".into();
    let e = rest::serve(rest::router(ApiState::new(JobRegistry::new(), &o)), &o)
        .await
        .err()
        .expect("refused without a token");
    assert!(matches!(e, ServeError::NoToken { .. }), "{e}");
    assert!(e.to_string().contains("rest.auth.token"), "{e}");

    o.token = Some("t".into());
    let server = rest::serve(rest::router(ApiState::new(JobRegistry::new(), &o)), &o)
        .await
        .unwrap();
    let port = server.local_addr().port();
    let a = get(([127, 0, 0, 1], port).into(), "/healthz").await;
    assert_eq!(a.status, 200);
    server.shutdown().await;
}
