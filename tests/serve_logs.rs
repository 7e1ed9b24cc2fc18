//! Every event of `floe serve` is a log line, and the lines are JSON with `--log-format json`
//! (issue 14, point 6): starts, restores in Flink's words (`Restoring job … from Savepoint N
//! @ <trigger time> …`), REST stops and cancels, a failure with its cause. Signal handlers
//! are in place before `READY=1`, and SIGTERM at any moment, also during start-up, stops
//! cleanly. Real binary; systemd's notify socket is a real unix datagram socket.

mod serve_support;
use serde_json::Value;
use serve_support::*;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};

const FILTER: &str = "  - id: pre
    type: filter
    inputs: [source]
    condition: 'true'
";

#[test]
fn json_logs_are_json_on_every_line_and_every_event_is_logged() {
    let l = Layout::new("");
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    std::fs::write(
        l.path("pipelines/other.yaml"),
        l.wordcount("other", None).replace("/out", "/out-other"),
    )
    .unwrap();
    // A pipeline that fails at once: its output directory cannot be created.
    std::fs::write(l.path("blocker"), "a file").unwrap();
    let failing = l
        .wordcount("failing", None)
        .replace(
            &l.path("out").display().to_string(),
            &l.path("blocker/out").display().to_string(),
        )
        .replace(
            "name: failing",
            "name: failing\nconfig:\n  restart-strategy.type: none",
        );
    std::fs::write(l.path("pipelines/failing.yaml"), failing).unwrap();
    let serve = Serve::start_with(&l, &[], &["--log-format", "json"]);
    let wc = serve.wait_running("wc.yaml");
    let other = serve.wait_running("other.yaml");
    // A reload: the new version restores from the reload's savepoint.
    l.save_by_rename("wc.yaml", &l.wordcount("wc", Some(FILTER)));
    serve.wait_replaced("wc.yaml", &wc);
    let cancel = serve.cli(&["cancel", &other]);
    assert!(cancel.status.success());
    wait_for("the failure", || {
        serve
            .jobs_of("failing.yaml")
            .iter()
            .any(|j| j["state"] == "FAILED")
    });
    // Not ready: a failed job is not what its file intends (the cancelled one is).
    // (The reloaded wc.yaml is ready once its new version passed its probation.)
    let mut listed = Vec::new();
    wait_for("only failing.yaml not ready", || {
        let (code, body) = serve.readyz();
        listed = body["pipelines"].as_array().cloned().unwrap_or_default();
        code == 503 && listed.len() == 1 && listed[0]["file"] == "failing.yaml"
    });
    assert!(listed[0].to_string().contains("blocker"), "{listed:?}");
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    let parsed: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let messages: Vec<String> = parsed
        .iter()
        .map(|v| {
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let has = |what: &str| messages.iter().any(|m| m.contains(what));
    assert!(has("job of wc.yaml started"), "{messages:#?}");
    let restore = messages
        .iter()
        .find(|m| m.starts_with("Restoring job ") && m.contains(" from Savepoint "))
        .unwrap_or_else(|| panic!("a restore line: {messages:#?}"));
    let at: u64 = restore
        .split(" @ ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    assert!(
        at > 1_600_000_000_000,
        "the savepoint's trigger time: {restore}"
    );
    assert!(has("REST: cancel of job"), "{messages:#?}");
    assert!(
        has("switched from state RUNNING to CANCELED"),
        "{messages:#?}"
    );
    let failed = messages
        .iter()
        .find(|m| m.contains("switched from state RUNNING to FAILED"))
        .unwrap_or_else(|| panic!("the failure: {messages:#?}"));
    assert!(failed.contains("blocker"), "with its cause: {failed}");
    assert!(
        has("floe serve stopped"),
        "the closing line is JSON too: {messages:#?}"
    );
}

#[test]
fn a_sighup_the_moment_ready_is_sent_reloads_instead_of_killing() {
    let l = Layout::new("");
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    let sock = l.path("notify.sock");
    let pid = Arc::new(Mutex::new(None::<u32>));
    // Exactly one SIGHUP: from the socket's thread the moment READY=1 arrives, or (when
    // READY=1 came before the pid was known here) from this thread once it is known.
    let sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (target, once) = (pid.clone(), sent.clone());
    let got = notify_socket(UnixDatagram::bind(&sock).unwrap(), move || {
        if let Some(p) = *target.lock().unwrap() {
            if !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let _ = std::process::Command::new("kill")
                    .args(["-HUP", &p.to_string()])
                    .status();
            }
        }
    });
    let serve = Serve::start(&l, &[("NOTIFY_SOCKET", sock.to_str().unwrap())]);
    *pid.lock().unwrap() = Some(serve.child.id());
    wait_for("READY=1", || !states(&got).is_empty());
    if !sent.swap(true, std::sync::atomic::Ordering::SeqCst) {
        serve.signal("-HUP");
    }
    wait_for("RELOADING=1 then READY=1", || {
        states(&got) == ["READY=1", "RELOADING=1", "READY=1"]
    });
    let (status, log) = serve.terminate();
    assert!(
        status.success(),
        "still alive after the SIGHUP, then stopped cleanly: {log}"
    );
}

#[test]
fn sigterm_during_start_up_stops_cleanly() {
    let l = Layout::new("");
    for n in 0..3 {
        std::fs::write(
            l.path(&format!("pipelines/wc{n}.yaml")),
            l.wordcount(&format!("wc{n}"), None)
                .replace("/out", &format!("/out{n}")),
        )
        .unwrap();
    }
    let sock = l.path("notify.sock");
    let got = notify_socket(UnixDatagram::bind(&sock).unwrap(), || {});
    // The REST address is logged before the pipelines start: SIGTERM at once.
    let serve = Serve::start(&l, &[("NOTIFY_SOCKET", sock.to_str().unwrap())]);
    let (status, log) = serve.terminate();
    assert!(status.success(), "exit 0: {status:?}\n{log}");
    assert!(log.contains("floe serve stopped"), "{log}");
    wait_for("STOPPING=1", || {
        states(&got).contains(&"STOPPING=1".to_string())
    });
    // Exit 0: every job that had started stopped with its final savepoint (none unclean),
    // and each of them is on disk.
    let said: usize = log
        .split("floe serve stopped: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the closing line:\n{log}"));
    let savepoints = l.service_savepoints();
    assert_eq!(savepoints.len(), said, "{savepoints:?}\n{log}");
    assert!(savepoints.iter().all(|s| s.join("_metadata").is_file()));
}
