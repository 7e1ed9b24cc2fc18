//! `floe serve` speaks systemd's notify protocol (issue 6): read from a real unix datagram
//! socket given as `NOTIFY_SOCKET`, the messages are READY=1 once the jobs run, RELOADING=1
//! then READY=1 around a reload (SIGHUP), STOPPING=1 at SIGTERM, and WATCHDOG=1 when
//! `WATCHDOG_USEC` is set.

mod serve_support;
use serve_support::*;
use std::os::unix::net::UnixDatagram;

#[test]
fn ready_reloading_ready_stopping_and_the_watchdog_on_a_real_socket() {
    let l = Layout::new("");
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    let sock_path = l.path("notify.sock");
    let got = notify_socket(UnixDatagram::bind(&sock_path).unwrap(), || {});
    let serve = Serve::start(
        &l,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    wait_for("READY=1", || states(&got) == ["READY=1"]);
    // READY=1 means the jobs run.
    assert_eq!(serve.jobs_of("wc.yaml")[0]["state"], "RUNNING");
    serve.signal("-HUP");
    wait_for("RELOADING=1 then READY=1", || states(&got).len() == 3);
    wait_for("WATCHDOG=1", || {
        got.lock().unwrap().iter().any(|m| m.contains("WATCHDOG=1"))
    });
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    wait_for("STOPPING=1", || states(&got).len() == 4);
    assert_eq!(
        states(&got),
        ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    );
    let all = got.lock().unwrap().join("\n");
    assert!(all.contains("STATUS="), "status lines: {all}");
    assert!(
        all.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 comes with MONOTONIC_USEC: {all}"
    );
}
