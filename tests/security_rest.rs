//! The REST server against hostile clients (issue 13, points 3 and 4), through a real
//! `floe serve`: job submission is off without `web.submit.enable` and a token, and a
//! submitted pipeline may read and write only under `web.submit.allowed-dirs`; a `Host`
//! header that does not name the server is refused (DNS rebinding); half-open and idle
//! connections are closed after `rest.server.read-timeout`; a body over
//! `rest.server.max-content-length` gets 413.

mod security_support;

use security_support::*;
use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;

const TOKEN: &str = "rest-test-token-7d1e";

/// A `floe serve` over an empty pipeline directory, with `conf` as its flink-conf.yaml (the
/// checkpoint directory is added).
fn serve(dir: &Path, conf: &str) -> Floe {
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    std::fs::write(
        dir.join("conf/flink-conf.yaml"),
        format!(
            "execution.checkpointing.dir: {}\n{conf}",
            dir.join("ck").display()
        ),
    )
    .unwrap();
    let mut cmd = floe();
    cmd.current_dir(dir)
        .env("FLOE_REST_PORT", "0")
        .arg("serve")
        .arg("--conf-dir")
        .arg(dir.join("conf"))
        .arg("--pipelines")
        .arg(dir.join("pipelines"));
    Floe::serve(cmd)
}

/// A pipeline reading `input` and writing `output` (file source and sink).
fn copy_pipeline(name: &str, input: &Path, output: &Path, extra: &str) -> String {
    format!(
        "name: {name}
{extra}operators:
  - id: source
    type: file
    path: {}
    follow: true
  - id: sink
    type: file
    inputs: [source]
    path: {}
",
        input.display(),
        output.display()
    )
}

fn submit(f: &Floe, pipeline: &str, token: Option<&str>) -> Answer {
    f.call(
        "POST",
        "/jobs",
        Some(&json!({ "pipeline": pipeline })),
        token,
    )
}

fn web_submit(f: &Floe) -> serde_json::Value {
    f.get("/config").json()["features"]["web-submit"].clone()
}

fn jobs(f: &Floe) -> usize {
    f.get("/jobs").json()["jobs"].as_array().unwrap().len()
}

#[test]
fn submission_is_off_without_the_setting_or_the_token() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside");
    let before = victim(&outside);
    let pipeline = copy_pipeline(
        "sneaky",
        &outside.join("victim.txt"),
        &outside.join("out"),
        "",
    );
    for (label, conf) in [
        ("default", String::new()),
        (
            "setting without a token",
            "web.submit.enable: true\n".into(),
        ),
        (
            "token without the setting",
            format!("rest.auth.token: {TOKEN}\n"),
        ),
    ] {
        let dir = root.path().join(label.replace(' ', "-"));
        let f = serve(&dir, &conf);
        assert_eq!(web_submit(&f), false, "{label}: /config tells the truth");
        let a = submit(&f, &pipeline, Some(TOKEN));
        assert_eq!(a.status, 403, "{label}: {}", a.body);
        assert!(
            a.body.contains("job submission is off"),
            "{label}: {}",
            a.body
        );
        assert!(a.body.contains("web.submit.enable"), "{label}: {}", a.body);
        assert_eq!(jobs(&f), 0, "{label}: nothing started");
        let (status, log) = f.terminate();
        assert!(status.success(), "{log}");
        if label == "setting without a token" {
            assert!(log.contains("job submission stays off"), "{log}");
        }
        assert_eq!(tree(&outside), before, "{label}: outside untouched");
    }
}

/// Pipelines a service allowing `allowed` must refuse: each with what the refusal says.
fn refused_pipelines(allowed: &Path, outside: &Path) -> Vec<(&'static str, String, &'static str)> {
    let link = allowed.join("link");
    std::os::unix::fs::symlink(outside, &link).unwrap();
    vec![
        (
            "a file source outside",
            copy_pipeline("r1", &outside.join("victim.txt"), &allowed.join("o1"), ""),
            "file source path",
        ),
        (
            "a file sink outside",
            copy_pipeline("r2", &allowed.join("in"), &outside.join("out"), ""),
            "file sink path",
        ),
        (
            "a sink through a symlink out of the allowed directory",
            copy_pipeline("r3", &allowed.join("in"), &link.join("out"), ""),
            "outside",
        ),
        (
            "a glob climbing out",
            copy_pipeline(
                "r4",
                &allowed.join("in/*/../../../outside/*.txt"),
                &allowed.join("o4"),
                "",
            ),
            "'..' after a wildcard",
        ),
        (
            "its own checkpoint directory outside",
            copy_pipeline(
                "r5",
                &allowed.join("in"),
                &allowed.join("o5"),
                &format!("checkpointing:\n  checkpoint-dir: {}\n", outside.display()),
            ),
            "checkpoint directory",
        ),
        (
            "the service's S3 settings",
            copy_pipeline(
                "r6",
                &allowed.join("in"),
                &allowed.join("o6"),
                "config:\n  s3.endpoint: http://127.0.0.1:9\n",
            ),
            "s3.endpoint",
        ),
        (
            "a Kafka property naming a file outside",
            kafka_pipeline(&format!(
                "ssl.ca.location: {}",
                outside.join("victim.txt").display()
            )),
            "Kafka property file",
        ),
        (
            "a Kafka property that loads code",
            kafka_pipeline("plugin.library.paths: /tmp/evil.so"),
            "loads code",
        ),
        (
            "a Kafka property that runs a command",
            kafka_pipeline("sasl.kerberos.kinit.cmd: touch /tmp/owned"),
            "runs a command",
        ),
    ]
}

/// A Kafka source with one more librdkafka property.
fn kafka_pipeline(property: &str) -> String {
    format!(
        "name: k
operators:
  - id: source
    type: kafka
    bootstrap-servers: 127.0.0.1:9
    topics: [t]
    properties:
      {property}
  - id: sink
    type: blackhole
    inputs: [source]
"
    )
}

#[test]
fn a_submitted_pipeline_reads_and_writes_only_under_the_allowed_dirs() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside");
    let before = victim(&outside);
    let allowed = root.path().join("allowed");
    std::fs::create_dir_all(allowed.join("in")).unwrap();
    std::fs::write(allowed.join("in/a.txt"), "hello world\n").unwrap();
    let f = serve(
        &root.path().join("svc"),
        &format!(
            "web.submit.enable: true\nrest.auth.token: {TOKEN}\nweb.submit.allowed-dirs: {}\n",
            allowed.display()
        ),
    );
    assert_eq!(web_submit(&f), true);
    let good = copy_pipeline("good", &allowed.join("in"), &allowed.join("out"), "");
    // Without the token, or with a wrong one: 401.
    assert_eq!(submit(&f, &good, None).status, 401);
    assert_eq!(submit(&f, &good, Some("wrong")).status, 401);

    for (label, pipeline, says) in refused_pipelines(&allowed, &outside) {
        let a = submit(&f, &pipeline, Some(TOKEN));
        assert_eq!(a.status, 403, "{label}: {}", a.body);
        assert!(a.body.contains(says), "{label}: {}", a.body);
    }
    let a = f.call(
        "POST",
        "/jobs",
        Some(&json!({
            "pipeline": good,
            "savepointPath": outside.join("victim.txt").display().to_string(),
        })),
        Some(TOKEN),
    );
    assert_eq!(a.status, 403, "a restore from outside: {}", a.body);
    assert!(a.body.contains("snapshot to restore"), "{}", a.body);
    let a = f.call(
        "POST",
        "/jobs",
        Some(&json!({ "pipeline": good, "dynamic": ["rest.savepoints.allowed-dirs=/"] })),
        Some(TOKEN),
    );
    assert_eq!(a.status, 403, "a -D of a service key: {}", a.body);
    assert_eq!(jobs(&f), 0, "nothing refused was started");

    let a = submit(&f, &good, Some(TOKEN));
    assert_eq!(a.status, 200, "{}", a.body);
    wait_for("the submitted job's output", || {
        std::fs::read_dir(allowed.join("out"))
            .map(|d| d.count() > 0)
            .unwrap_or(false)
    });
    let (status, log) = f.terminate();
    assert!(status.success(), "{log}");
    assert_eq!(tree(&outside), before, "outside untouched");
}

/// A request with exactly the given Host header (or none).
fn with_host(f: &Floe, method: &str, path: &str, host: Option<&str>) -> Answer {
    let headers: Vec<(String, String)> = host
        .map(|h| vec![("Host".to_string(), h.to_string())])
        .unwrap_or_default();
    request(&f.addr, method, path, &headers, "")
}

#[test]
fn a_host_that_does_not_name_the_server_is_refused() {
    let root = tempfile::tempdir().unwrap();
    // A savepoint a rebinding page would like to dispose of.
    let sp = root.path().join("sp/savepoint-8f7974-dddddddddddd");
    let name = "0d0d0d0d-0000-4000-8000-00000000000d";
    write_forged(
        &sp,
        floe::checkpoint::metadata::SnapshotKind::Savepoint,
        floe::checkpoint::metadata::BlobLocation::Exclusive(name.into()),
    );
    std::fs::write(sp.join(name), "state").unwrap();
    let before = tree(root.path());
    let f = serve(
        &root.path().join("svc"),
        &format!(
            "rest.allowed-hosts: dash.example.com\nrest.savepoints.allowed-dirs: {}\n",
            root.path().join("sp").display()
        ),
    );
    let port = f.addr.rsplit_once(':').unwrap().1.to_string();
    let dispose = format!("{{\"savepoint-path\": \"{}\"}}", sp.display());
    let headers = [
        ("Host".to_string(), format!("evil.example:{port}")),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    let a = request(&f.addr, "POST", "/savepoint-disposal", &headers, &dispose);
    assert_eq!(a.status, 403, "{}", a.body);
    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
    ] {
        let a = with_host(&f, "GET", "/overview", Some(&host));
        assert_eq!(a.status, 403, "{host}: {}", a.body);
        assert!(a.body.contains("rest.allowed-hosts"), "{host}: {}", a.body);
        // A changing call learns nothing more (not 401, not 404).
        let a = with_host(&f, "POST", "/jobs", Some(&host));
        assert_eq!(a.status, 403, "{host}: {}", a.body);
        let a = with_host(&f, "GET", "/", Some(&host));
        assert_eq!(a.status, 403, "{host}: the dashboard too");
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "localhost".to_string(),
        format!("dash.example.com:{port}"),
        "DASH.example.com".to_string(),
    ] {
        let a = with_host(&f, "GET", "/overview", Some(&host));
        assert_eq!(a.status, 200, "{host}: {}", a.body);
    }
    let a = with_host(&f, "GET", "/overview", None);
    assert_eq!(a.status, 400, "no Host at all: {}", a.body);
    let (status, log) = f.terminate();
    assert!(status.success(), "{log}");
    let after: Vec<_> = tree(root.path())
        .into_iter()
        .filter(|(p, _)| !p.starts_with("svc"))
        .collect();
    assert_eq!(
        after,
        before.into_iter().collect::<Vec<_>>(),
        "the savepoint is intact"
    );
}

/// Reads until the server closes the connection (end of stream or reset); what it sent.
/// The read timeout is only a failure guard: a server that never closes fails the test.
fn read_until_closed(mut s: TcpStream) -> Result<Vec<u8>, String> {
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(got),
            Err(e) => return Err(format!("still open ({e})")),
        }
    }
}

#[test]
fn half_open_and_idle_connections_are_closed_after_the_read_timeout() {
    let root = tempfile::tempdir().unwrap();
    let f = serve(root.path(), "rest.server.read-timeout: 200 ms\n");
    let mut conns = Vec::new();
    for i in 0..500 {
        let mut s = TcpStream::connect(&f.addr).unwrap();
        match i % 3 {
            // Connected, nothing sent.
            0 => {}
            // Half a request header, the rest never comes (slowloris).
            1 => s
                .write_all(b"GET /overview HTTP/1.1\r\nHost: local")
                .unwrap(),
            // A whole request on a keep-alive connection, then silence.
            _ => s
                .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", f.addr).as_bytes())
                .unwrap(),
        }
        conns.push((i, s));
    }
    let readers: Vec<_> = conns
        .into_iter()
        .map(|(i, s)| std::thread::spawn(move || (i, read_until_closed(s))))
        .collect();
    for r in readers {
        let (i, got) = r.join().unwrap();
        let got = got.unwrap_or_else(|e| panic!("connection {i}: {e}"));
        if i % 3 == 2 {
            assert!(
                got.starts_with(b"HTTP/1.1 200"),
                "connection {i} was answered first: {}",
                text(&got)
            );
        }
    }
    // A request whose body stops half-way: answered 408, then closed.
    let mut s = TcpStream::connect(&f.addr).unwrap();
    let head = format!(
        "POST /savepoint-disposal HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"savepoint-path\"",
        f.addr
    );
    s.write_all(head.as_bytes()).unwrap();
    let a = parse_answer(&read_until_closed(s).unwrap());
    assert_eq!(a.status, 408, "{}", a.body);
    assert!(a.body.contains("rest.server.read-timeout"), "{}", a.body);
    // The server still serves.
    assert_eq!(f.get("/overview").status, 200);
    let (status, log) = f.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn a_body_over_the_limit_gets_413() {
    let root = tempfile::tempdir().unwrap();
    let f = serve(
        root.path(),
        &format!("rest.server.max-content-length: 1 kb\nrest.auth.token: {TOKEN}\nweb.submit.enable: true\n"),
    );
    let big = json!({ "savepoint-path": "x".repeat(2000) });
    for path in ["/savepoint-disposal", "/jobs"] {
        // Declared by Content-Length: refused before it is read.
        let a = f.call("POST", path, Some(&big), Some(TOKEN));
        assert_eq!(a.status, 413, "{path}: {}", a.body);
        assert!(
            a.body.contains("rest.server.max-content-length"),
            "{}",
            a.body
        );
        // Chunked, so only reading finds out.
        let mut s = TcpStream::connect(&f.addr).unwrap();
        let chunk = "y".repeat(800);
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n{len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
            f.addr,
            len = chunk.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let a = parse_answer(&read_until_closed(s).unwrap());
        assert_eq!(a.status, 413, "{path} chunked: {}", a.body);
    }
    // A body within the limit is read as usual.
    let a = f.call("POST", "/savepoint-disposal", Some(&json!({})), Some(TOKEN));
    assert_eq!(a.status, 400, "{}", a.body);
    let (status, log) = f.terminate();
    assert!(status.success(), "{log}");
}
