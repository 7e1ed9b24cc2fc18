//! `floe list`, `savepoint`, `stop` and `cancel` as a user runs them: the real `floe` binary
//! talks over a real socket to a REST server started in the test, whose registered job is
//! answered by a stand-in driver. Checks Flink's printed lines, `--json`, the exit codes, and
//! the errors (unknown job, malformed id, nothing listening, missing token).

mod rest_support;

use floe::checkpoint::{CheckpointId, CompletedCheckpoint, JobId};
use floe::service::registry::{JobCommand, JobState};
use floe::service::rest::{self, ApiState, RestOptions, RestServer};
use floe::service::JobRegistry;
use rest_support::{checkpoint_config, fixed_stats, registration, JOB_A, JOB_B};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

const RUNNING_HEADER: &str = "------------------ Running/Restarting Jobs -------------------";
const TERMINATED_HEADER: &str = "---------------------- Terminated Jobs -----------------------";
const FOOTER: &str = "--------------------------------------------------------------";

/// What the stand-in driver was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Savepoint { target: String, cancel_job: bool },
    Stop { target: String, drain: bool },
    Cancel,
}

/// Answers commands as a job would: a savepoint is a directory with a `_metadata` file; a
/// target containing "refuse" fails; stop finishes the job, cancel cancels it. Reports each
/// command on `seen`. A target containing "hold" is never answered.
fn fake_driver(
    registry: JobRegistry,
    id: JobId,
    mut rx: UnboundedReceiver<JobCommand>,
    seen: UnboundedSender<Seen>,
) {
    tokio::spawn(async move {
        let mut held = Vec::new();
        let mut held_sp = Vec::new();
        let mut next = 5;
        let mut take = |target: &str| -> Result<CompletedCheckpoint, String> {
            if target.contains("refuse") {
                return Err(format!("cannot write into {target}"));
            }
            let dir = Path::new(target).join(format!("savepoint-{}-0123456789ab", &id.0[..6]));
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
                    let target = target.unwrap_or_default();
                    let _ = seen.send(Seen::Savepoint {
                        target: target.clone(),
                        cancel_job,
                    });
                    if target.contains("hold") {
                        held_sp.push(reply);
                        continue;
                    }
                    let _ = reply.send(take(&target));
                }
                JobCommand::Stop {
                    target,
                    drain,
                    reply,
                } => {
                    let target = target.unwrap_or_default();
                    let _ = seen.send(Seen::Stop {
                        target: target.clone(),
                        drain,
                    });
                    if target.contains("hold") {
                        held.push(reply);
                        continue;
                    }
                    let r = take(&target);
                    if r.is_ok() {
                        registry.finish(&id, JobState::Finished, None);
                    }
                    let _ = reply.send(r);
                }
                JobCommand::Cancel { reply } => {
                    let _ = seen.send(Seen::Cancel);
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
    seen: UnboundedReceiver<Seen>,
    root: tempfile::TempDir,
}

impl Setup {
    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
    fn m(&self) -> String {
        self.addr().to_string()
    }
    /// The job's `state.savepoints.dir`, resolved as the API resolves it.
    fn sp_dir(&self) -> PathBuf {
        let sp = self.root.path().join("sp");
        std::fs::create_dir_all(&sp).unwrap();
        std::fs::canonicalize(sp).unwrap()
    }
    fn conf_dir(&self) -> PathBuf {
        empty_conf(self.root.path())
    }
    /// Runs `floe <args>` with an empty configuration directory, in the temp root.
    async fn floe(&self, args: &[&str]) -> Output {
        floe_in(self.root.path(), &self.conf_dir(), args).await
    }
}

/// `<root>/conf` with an empty `flink-conf.yaml` (kept if the test wrote one).
fn empty_conf(root: &Path) -> PathBuf {
    let c = root.join("conf");
    std::fs::create_dir_all(&c).unwrap();
    let f = c.join("flink-conf.yaml");
    if !f.exists() {
        std::fs::write(f, "").unwrap();
    }
    c
}

async fn floe_in(cwd: &Path, conf_dir: &Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_floe"));
    cmd.arg("--conf-dir")
        .arg(conf_dir)
        .args(args)
        .current_dir(cwd);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FLOE_") {
            cmd.env_remove(k);
        }
    }
    // A blocking child: off the runtime's threads, so the in-process server keeps answering.
    tokio::task::spawn_blocking(move || cmd.output().expect("run floe"))
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

/// Job A running with `state.savepoints.dir` = `<tmp>/sp`; `<tmp>/extra` allowed too.
async fn setup(opts: impl FnOnce(&mut RestOptions)) -> Setup {
    let root = tempfile::tempdir().unwrap();
    let sp = root.path().join("sp");
    let registry = JobRegistry::new();
    let rx = registry.register(registration(
        JOB_A,
        Some(fixed_stats()),
        checkpoint_config(Some(&sp)),
    ));
    let (tx, seen) = unbounded_channel();
    fake_driver(registry.clone(), JobId(JOB_A.into()), rx, tx);
    let mut o = RestOptions::local_ephemeral();
    o.allowed_dirs = vec![root.path().join("extra").display().to_string()];
    opts(&mut o);
    let state = ApiState::new(registry.clone(), &o);
    let server = rest::serve(rest::router(state), &o).await.unwrap();
    Setup {
        server,
        registry,
        seen,
        root,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_prints_flinks_blocks_and_json() {
    // No jobs yet.
    let registry = JobRegistry::new();
    let o = RestOptions::local_ephemeral();
    let server = rest::serve(rest::router(ApiState::new(registry.clone(), &o)), &o)
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let m = server.local_addr().to_string();
    let out = floe_in(root.path(), &empty_conf(root.path()), &["list", "-m", &m]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Waiting for response...\nNo running jobs.\nNo scheduled jobs.\n"
    );

    let _a = registry.register(registration(JOB_A, None, checkpoint_config(None)));
    let _b = registry.register(registration(JOB_B, None, checkpoint_config(None)));
    registry.finish(&JobId(JOB_B.into()), JobState::Finished, None);
    let out = floe_in(root.path(), &empty_conf(root.path()), &["list", "-m", &m]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "Waiting for response...\n{RUNNING_HEADER}\n24.11.2026 10:18:34 : {JOB_A} : \
             wordcount (RUNNING)\n{FOOTER}\nNo scheduled jobs.\n"
        )
    );

    let out = floe_in(
        root.path(),
        &empty_conf(root.path()),
        &["list", "-a", "-m", &m],
    )
    .await;
    let text = stdout(&out);
    assert!(
        text.ends_with(&format!(
            "{TERMINATED_HEADER}\n24.11.2026 10:18:34 : {JOB_B} : wordcount (FINISHED)\n\
             {FOOTER}\n"
        )),
        "{text}"
    );

    let out = floe_in(
        root.path(),
        &empty_conf(root.path()),
        &["list", "--json", "-m", &m],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{v}");
    assert_eq!(jobs[0]["jid"], JOB_A);
    assert_eq!(jobs[0]["state"], "RUNNING");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoint_prints_the_path_and_the_savepoint_exists() {
    let mut s = setup(|_| {}).await;
    let m = s.m();
    let extra = s.root.path().join("extra");
    let out = s
        .floe(&["savepoint", JOB_A, &extra.display().to_string(), "-m", &m])
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let dir = std::fs::canonicalize(&extra)
        .unwrap()
        .join("savepoint-8f7974-0123456789ab");
    assert_eq!(
        stdout(&out),
        format!(
            "Triggering savepoint for job {JOB_A}.\nWaiting for response...\nSavepoint \
             completed. Path: file:{}\nYou can resume your program from this savepoint with \
             the run command.\n",
            dir.display()
        )
    );
    assert!(dir.join("_metadata").is_file());
    assert_eq!(
        s.seen.recv().await,
        Some(Seen::Savepoint {
            target: std::fs::canonicalize(&extra).unwrap().display().to_string(),
            cancel_job: false
        })
    );

    // No target: the job's state.savepoints.dir; --json.
    let out = s.floe(&["savepoint", JOB_A, "--json", "-m", &m]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["job-id"], JOB_A);
    assert_eq!(
        v["location"],
        format!(
            "file:{}/savepoint-8f7974-0123456789ab",
            s.sp_dir().display()
        )
    );
    assert!(JobId::is_valid(v["request-id"].as_str().unwrap()), "{v}");

    // A relative target is taken from the shell's working directory (here the temp root).
    let out = s.floe(&["savepoint", JOB_A, "sp/relative", "-m", &m]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(s
        .sp_dir()
        .join("relative/savepoint-8f7974-0123456789ab/_metadata")
        .is_file());
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoint_detached_prints_the_trigger_id() {
    let mut s = setup(|_| {}).await;
    let m = s.m();
    let out = s.floe(&["savepoint", "-detached", JOB_A, "-m", &m]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("Triggering savepoint in detached mode for job {JOB_A}.").as_str())
    );
    let trigger = lines
        .next()
        .and_then(|l| l.strip_prefix("Successfully trigger manual savepoint, triggerId: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(JobId::is_valid(trigger), "{trigger}");
    // The savepoint was really triggered.
    assert!(matches!(s.seen.recv().await, Some(Seen::Savepoint { .. })));
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoint_failures_say_why_and_exit_1() {
    let s = setup(|_| {}).await;
    let m = s.m();
    // The job fails the savepoint: the operation's failure cause.
    let refuse = s.root.path().join("extra/refuse").display().to_string();
    let out = s.floe(&["savepoint", JOB_A, &refuse, "-m", &m]).await;
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "Failed to trigger a savepoint for the job {JOB_A}."
        )),
        "{err}"
    );
    assert!(err.contains("cannot write into"), "{err}");
    assert!(!err.contains("FlinkException"), "{err}");

    // Outside the allowed roots: the API's 403 message.
    let out = s.floe(&["savepoint", JOB_A, "/etc", "-m", &m]).await;
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("outside the allowed directories"),
        "{}",
        stderr(&out)
    );

    // Unknown job: the API's 404 message.
    let unknown = "00000000000000000000000000000000";
    let out = s.floe(&["savepoint", unknown, "-m", &m]).await;
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("Job could not be found."),
        "{}",
        stderr(&out)
    );

    // A malformed id: Flink's message, nothing sent.
    let out = s.floe(&["savepoint", "notajobid", "-m", &m]).await;
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).starts_with(
        "Cannot parse JobID from \"notajobid\". The expected format is [0-9a-fA-F]{32}, e.g. \
         fd72014d4c864993a2e5a9287b4a9c5d.\n"
    ));
    let out = s.floe(&["savepoint", "-m", &m]).await;
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).starts_with("Missing JobID. Specify a Job ID to trigger a savepoint."));
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_takes_a_savepoint_and_finishes_the_job() {
    let mut s = setup(|_| {}).await;
    let m = s.m();
    let out = s.floe(&["stop", JOB_A, "--drain", "-m", &m]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "Draining job \"{JOB_A}\" with a CANONICAL savepoint.\nTriggering \
             stop-with-savepoint for job {JOB_A}.\nWaiting for response...\nSavepoint \
             completed. Path: file:{}/savepoint-8f7974-0123456789ab\n",
            s.sp_dir().display()
        )
    );
    assert_eq!(
        s.seen.recv().await,
        Some(Seen::Stop {
            target: s.sp_dir().display().to_string(),
            drain: true
        })
    );
    assert_eq!(
        s.registry.get(&JobId(JOB_A.into())).unwrap().state,
        JobState::Finished
    );

    // The job ended: the API refuses another stop, and the CLI says so.
    let out = s.floe(&["stop", JOB_A, "-m", &m]).await;
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("Could not stop with a savepoint job \"{JOB_A}\".")),
        "{err}"
    );
    assert!(err.contains("FINISHED"), "{err}");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_a_path_and_json() {
    let mut s = setup(|_| {}).await;
    let m = s.m();
    let extra = s.root.path().join("extra").display().to_string();
    let out = s
        .floe(&["stop", "-p", &extra, JOB_A, "--json", "-m", &m])
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["drain"], false);
    assert!(
        v["location"]
            .as_str()
            .unwrap()
            .ends_with("/extra/savepoint-8f7974-0123456789ab"),
        "{v}"
    );
    assert!(matches!(
        s.seen.recv().await,
        Some(Seen::Stop { drain: false, .. })
    ));
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_prints_flinks_lines_and_the_job_is_cancelled() {
    let mut s = setup(|_| {}).await;
    let m = s.m();
    let out = s.floe(&["cancel", JOB_A, "-m", &m]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("Cancelling job {JOB_A}.\nCancelled job {JOB_A}.\n")
    );
    assert_eq!(s.seen.recv().await, Some(Seen::Cancel));

    // Unknown: the API's 404 message, exit 1.
    let unknown = "00000000000000000000000000000000";
    let out = s.floe(&["cancel", unknown, "-m", &m]).await;
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("Could not cancel job {unknown}.")),
        "{err}"
    );
    assert!(err.contains("Job could not be found."), "{err}");

    let out = s.floe(&["cancel", "xyz", "-m", &m]).await;
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("Cannot parse JobID from \"xyz\""));
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_comes_from_the_configuration_without_m() {
    let s = setup(|_| {}).await;
    let port = format!("rest.port={}", s.addr().port());
    let out = s
        .floe(&["list", "-D", "rest.address=127.0.0.1", "-D", &port])
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(JOB_A), "{}", stdout(&out));

    std::fs::write(
        s.conf_dir().join("flink-conf.yaml"),
        format!("rest.address: 127.0.0.1\nrest.port: {}\n", s.addr().port()),
    )
    .unwrap();
    let out = s.floe(&["list"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(JOB_A), "{}", stdout(&out));
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_names_the_address_and_the_fix() {
    let root = tempfile::tempdir().unwrap();
    // A port that was free a moment ago and has no listener now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let m = format!("127.0.0.1:{port}");
    for args in [
        vec!["list", "-m", &m],
        vec!["savepoint", JOB_A, "-m", &m],
        vec!["stop", JOB_A, "-m", &m],
        vec!["cancel", JOB_A, "-m", &m],
    ] {
        let out = floe_in(root.path(), &empty_conf(root.path()), &args).await;
        assert_eq!(code(&out), 1, "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("cannot reach the floe REST API at {m}")),
            "{err}"
        );
        assert!(err.contains("floe run"), "{err}");
        assert!(err.contains("-m host:port"), "{err}");
    }
    // An address that cannot be one is a configuration error.
    let out = floe_in(
        root.path(),
        &empty_conf(root.path()),
        &["list", "-m", "localhost"],
    )
    .await;
    assert_eq!(code(&out), 78);
    assert!(stderr(&out).contains("host:port"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_token_is_sent() {
    let mut s = setup(|o| o.token = Some("s3cret".into())).await;
    let m = s.m();
    let out = s.floe(&["cancel", JOB_A, "-m", &m]).await;
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("Authorization: Bearer"),
        "{}",
        stderr(&out)
    );

    let token_file = s.root.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let d = format!("rest.auth.token-file={}", token_file.display());
    let out = s.floe(&["savepoint", JOB_A, "-D", &d, "-m", &m]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(matches!(s.seen.recv().await, Some(Seen::Savepoint { .. })));

    let out = s
        .floe(&["cancel", JOB_A, "-D", "rest.auth.token=s3cret", "-m", &m])
        .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(s.seen.recv().await, Some(Seen::Cancel));
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_floe_that_goes_away_mid_savepoint_is_reported() {
    let mut s = setup(|_| {}).await;
    let m = s.m();
    let hold = s.root.path().join("extra/hold").display().to_string();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_floe"));
    cmd.arg("--conf-dir")
        .arg(s.conf_dir())
        .args(["stop", JOB_A, "-p", &hold, "-m", &m])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    // The job got the stop; the CLI is waiting for it. Now the floe goes away.
    assert!(matches!(s.seen.recv().await, Some(Seen::Stop { .. })));
    s.server.shutdown().await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("stopped answering while savepoint"), "{err}");
    assert!(err.contains("savepoint-* directory"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_that_never_completes_times_out_with_timeout() {
    let mut s = setup(|_| {}).await;
    let m = s.m();
    let hold = s.root.path().join("extra/hold").display().to_string();
    let out = s
        .floe(&["savepoint", JOB_A, &hold, "--timeout", "300ms", "-m", &m])
        .await;
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("was still in progress after 300ms"), "{err}");
    assert!(matches!(s.seen.recv().await, Some(Seen::Savepoint { .. })));
    s.server.shutdown().await;
}
