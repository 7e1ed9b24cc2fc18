//! Secrets never leave floe (issue 13, point 2): the REST token, the S3 keys and Kafka
//! `properties:` such as `sasl.password` and `ssl.key.password` are masked on every REST route
//! (the dashboard shows what those routes answer), in `floe config` (table and JSON), in the
//! logs, and in error messages that happen to quote one (a job's `failure-cause`).

mod security_support;

use security_support::*;
use std::path::Path;

const TOKEN: &str = "tok-3f9a-SECRET";
const S3_ACCESS: &str = "AKIA-SECRET-ACCESS";
const S3_SECRET: &str = "sk-SECRET-9c1d";
const KAFKA_PASSWORD: &str = "kafka-SECRET-pw";
const KEY_PASSWORD: &str = "keypw-SECRET-55";
const ALL: [&str; 5] = [TOKEN, S3_ACCESS, S3_SECRET, KAFKA_PASSWORD, KEY_PASSWORD];

fn assert_no_secret(what: &str, text: &str) {
    for s in ALL {
        assert!(!text.contains(s), "{what} shows the secret {s}:\n{text}");
    }
}

fn conf(dir: &Path) {
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::write(
        dir.join("conf/flink-conf.yaml"),
        format!(
            "rest.auth.token: {TOKEN}
s3.access-key: {S3_ACCESS}
s3.secret-key: {S3_SECRET}
execution.checkpointing.dir: {}
",
            dir.join("ck").display()
        ),
    )
    .unwrap();
}

/// Three pipelines: one that runs and sets a secret in its `config:`; one whose Kafka source
/// carries secret properties (librdkafka of this build has no OpenSSL, so validation refuses
/// `ssl.key.password`, naming it without its value); one whose file source names a path that
/// quotes the S3 secret, so that the check's refusal of it (the file is not there) would show it.
fn pipelines(dir: &Path) {
    let p = dir.join("pipelines");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        p.join("running.yaml"),
        format!(
            "name: running
config:
  s3.secret-key: {S3_SECRET}
operators:
  - id: source
    type: datagen
    rate: 100
  - id: sink
    type: blackhole
    inputs: [source]
"
        ),
    )
    .unwrap();
    std::fs::write(
        p.join("kafka.yaml"),
        format!(
            "name: with-kafka
config:
  s3.secret-key: {S3_SECRET}
operators:
  - id: source
    type: kafka
    bootstrap-servers: 127.0.0.1:9
    topics: [lines]
    properties:
      security.protocol: SASL_PLAINTEXT
      sasl.mechanism: PLAIN
      sasl.username: floe
      sasl.password: {KAFKA_PASSWORD}
      ssl.key.password: {KEY_PASSWORD}
  - id: sink
    type: blackhole
    inputs: [source]
"
        ),
    )
    .unwrap();
    std::fs::write(
        p.join("failing.yaml"),
        format!(
            "name: failing
operators:
  - id: source
    type: file
    path: missing-{S3_SECRET}.txt
  - id: sink
    type: blackhole
    inputs: [source]
"
        ),
    )
    .unwrap();
}

/// Every GET route the API has, for the listed jobs.
fn routes(jobs: &[String]) -> Vec<String> {
    let mut out: Vec<String> = [
        "/",
        "/overview",
        "/config",
        "/jobs",
        "/jobs/overview",
        "/metrics",
        "/healthz",
        "/readyz",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for id in jobs {
        for r in [
            "",
            "/config",
            "/jobmanager/config",
            "/exceptions",
            "/checkpoints",
            "/checkpoints/config",
            "/checkpoints/details/1",
        ] {
            out.push(format!("/jobs/{id}{r}"));
        }
    }
    out
}

#[test]
fn secrets_are_masked_on_every_route_in_floe_config_and_in_the_logs() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    conf(dir);
    pipelines(dir);
    let mut cmd = floe();
    cmd.current_dir(dir)
        .env("FLOE_REST_PORT", "0")
        .arg("serve")
        .arg("--conf-dir")
        .arg(dir.join("conf"))
        .arg("--pipelines")
        .arg(dir.join("pipelines"));
    let f = Floe::serve(cmd);
    let mut ids = Vec::new();
    wait_for("one job running, no other", || {
        let jobs = f.get("/jobs/overview").json()["jobs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ids = jobs
            .iter()
            .map(|j| j["jid"].as_str().unwrap().to_string())
            .collect();
        let count = |s: &str| jobs.iter().filter(|j| j["state"] == s).count();
        // kafka.yaml (librdkafka, asked at validation, has no OpenSSL for
        // `ssl.key.password`) and failing.yaml (its file is not there) are refused when
        // loaded: no job for either.
        count("RUNNING") == 1 && jobs.len() == 1
    });
    let mut masked_keys = 0;
    for route in routes(&ids) {
        let a = f.get(&route);
        assert_no_secret(&format!("GET {route}"), &a.body);
        if route.ends_with("/jobmanager/config") {
            for e in a.json().as_array().unwrap() {
                if ["rest.auth.token", "s3.access-key", "s3.secret-key"]
                    .contains(&e["key"].as_str().unwrap())
                {
                    assert_eq!(e["value"], "******", "{route}: {e}");
                    masked_keys += 1;
                }
            }
        }
    }
    assert_eq!(
        masked_keys, 3,
        "three secret keys on the running job's configuration"
    );

    // `floe config` checks the pipeline: the Kafka one without what this build refuses.
    let kafka = std::fs::read_to_string(dir.join("pipelines/kafka.yaml")).unwrap();
    let speakable: String = kafka
        .lines()
        .filter(|l| !l.contains("ssl.key.password"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("kafka-speakable.yaml"), speakable).unwrap();
    for args in [&["config"][..], &["config", "--json"][..]] {
        let out = floe()
            .args(args)
            .arg("--conf-dir")
            .arg(dir.join("conf"))
            .arg("--pipeline")
            .arg(dir.join("kafka-speakable.yaml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let shown = text(&out.stdout);
        assert_no_secret(&format!("floe {args:?}"), &shown);
        assert_no_secret(&format!("floe {args:?} (stderr)"), &text(&out.stderr));
        assert_eq!(shown.matches("******").count(), 3, "{shown}");
    }

    let (status, log) = f.terminate();
    assert!(status.success(), "{log}");
    assert_no_secret("the service's log", &log);
    assert!(
        log.contains("properties.ssl.key.password: librdkafka refuses it"),
        "the refusal of kafka.yaml is logged: {log}"
    );
    assert!(
        log.contains("missing-******.txt"),
        "the refusal of failing.yaml, masked:\n{log}"
    );
}

#[test]
fn secrets_quoted_by_errors_are_masked_in_floe_run_output() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let p = dir.join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "name: failing
operators:
  - id: source
    type: file
    path: missing-{S3_SECRET}.txt
  - id: sink
    type: blackhole
    inputs: [source]
"
        ),
    )
    .unwrap();
    let out = floe()
        .current_dir(dir)
        .arg("run")
        .arg(&p)
        .args([
            "-D",
            "rest.port=0",
            "-D",
            &format!("s3.secret-key={S3_SECRET}"),
        ])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    // Refused by the check before a record is read: a configuration problem.
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert_no_secret("floe run's output", &err);
    assert!(err.contains("missing-******.txt"), "{err}");
    // `floe validate` refuses it in the same masked words.
    let out = floe()
        .current_dir(dir)
        .arg("validate")
        .arg(&p)
        .args(["-D", &format!("s3.secret-key={S3_SECRET}")])
        .output()
        .unwrap();
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{said}");
    assert_no_secret("floe validate's output", &said);
    assert!(said.contains("missing-******.txt"), "{said}");

    // librdkafka's own error quotes the value of a property it refuses.
    pipelines(dir);
    let out = floe()
        .current_dir(dir)
        .arg("run")
        .arg(dir.join("pipelines/kafka.yaml"))
        .args(["-D", "rest.port=0"])
        .output()
        .unwrap();
    // Refused at validation (exit 78): librdkafka's reason, never the value.
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert_no_secret("floe run's output", &err);
    assert!(
        err.contains("properties.ssl.key.password: librdkafka refuses it"),
        "{err}"
    );
}
