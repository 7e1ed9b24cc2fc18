//! The read-only REST endpoints over a real socket, against golden JSON with Flink's field
//! names; bad requests get Flink-shaped 4xx errors; `/metrics` parses as Prometheus text;
//! `/healthz` and `/readyz`.

mod rest_support;

use floe::checkpoint::JobId;
use floe::config::Config;
use floe::service::registry::JobState;
use floe::service::rest::{self, ApiState, RestOptions, RestServer};
use floe::service::JobRegistry;
use rest_support::*;

async fn start(registry: &JobRegistry) -> RestServer {
    let opts = RestOptions::local_ephemeral();
    let app = rest::router(ApiState::new(registry.clone(), &opts));
    rest::serve(app, &opts).await.unwrap()
}

/// Job A runs with checkpoints; job B finished without checkpointing.
fn two_jobs() -> JobRegistry {
    let r = JobRegistry::new();
    let _a = r.register(registration(
        JOB_A,
        Some(fixed_stats()),
        checkpoint_config(None),
    ));
    let mut b = registration(JOB_B, None, Config::default());
    b.restore = None;
    let _b = r.register(b);
    r.finish(&JobId(JOB_B.into()), JobState::Finished, None);
    r
}

#[tokio::test]
async fn endpoints_match_golden_json() {
    let registry = two_jobs();
    let server = start(&registry).await;
    let addr = server.local_addr();
    for (name, path) in [
        ("overview", "/overview".to_owned()),
        ("config", "/config".to_owned()),
        ("jobs", "/jobs".to_owned()),
        ("jobs_overview", "/jobs/overview".to_owned()),
        ("job_details", format!("/jobs/{JOB_A}")),
        ("job_details_finished", format!("/jobs/{JOB_B}")),
        ("job_checkpoints", format!("/jobs/{JOB_A}/checkpoints")),
        (
            "job_checkpoints_config",
            format!("/jobs/{JOB_A}/checkpoints/config"),
        ),
        (
            "job_jobmanager_config",
            format!("/jobs/{JOB_A}/jobmanager/config"),
        ),
        ("job_config", format!("/jobs/{JOB_A}/config")),
    ] {
        let a = get(addr, &path).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        assert!(
            a.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{path}: {:?}",
            a.headers
        );
        assert_golden(name, a.json());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn checkpoint_fields_are_flinks() {
    let registry = two_jobs();
    let server = start(&registry).await;
    let v = get(server.local_addr(), &format!("/jobs/{JOB_A}/checkpoints"))
        .await
        .json();
    assert_eq!(v["counts"]["completed"], 3);
    assert_eq!(v["counts"]["failed"], 1);
    assert_eq!(v["counts"]["restored"], 1);
    let history = v["history"].as_array().unwrap();
    let ids: Vec<u64> = history.iter().map(|h| h["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![4, 3, 2, 1], "newest first");
    let keys: Vec<&str> = history[1]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "className",
        "id",
        "status",
        "is_savepoint",
        "savepointFormat",
        "trigger_timestamp",
        "latest_ack_timestamp",
        "checkpointed_size",
        "state_size",
        "end_to_end_duration",
        "num_subtasks",
        "num_acknowledged_subtasks",
        "checkpoint_type",
        "tasks",
        "external_path",
        "discarded",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
    assert_eq!(
        history[1]["external_path"],
        format!("file:/data/ck/{JOB_A}/chk-3")
    );
    assert_eq!(
        history[0]["failure_message"],
        "Checkpoint expired before completing."
    );
    assert_eq!(
        v["latest"]["restored"]["external_path"],
        "file:/data/sp/savepoint-8f7974-8dae5167eb70"
    );
    for k in ["min", "max", "avg", "p50", "p90", "p95", "p99", "p999"] {
        assert!(v["summary"]["end_to_end_duration"][k].is_number(), "{k}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_flink_errors() {
    let registry = two_jobs();
    let server = start(&registry).await;
    let addr = server.local_addr();
    let unknown = "00000000000000000000000000000000";

    let a = get(addr, &format!("/jobs/{unknown}")).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error(), format!("Job {unknown} not found"));

    let a = get(addr, "/jobs/notajobid").await;
    assert_eq!(a.status, 400);
    assert!(
        a.error()
            .starts_with("Cannot parse JobID from \"notajobid\""),
        "{}",
        a.body
    );

    let a = get(addr, &format!("/jobs/{JOB_B}/checkpoints")).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error(), "Checkpointing has not been enabled.");

    let a = get(addr, &format!("/jobs/{JOB_A}/checkpoints/details/3")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["id"], 3);
    let a = get(addr, &format!("/jobs/{JOB_A}/checkpoints/details/12")).await;
    assert_eq!(a.status, 404);
    assert_eq!(
        a.error(),
        "Could not find checkpointing statistics for checkpoint 12."
    );
    let a = get(addr, &format!("/jobs/{JOB_A}/checkpoints/details/x")).await;
    assert_eq!(a.status, 400);

    let a = get(addr, "/jobs/%FF%FE").await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(!a.error().is_empty());

    let a = get(addr, "/no/such/path").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error(), "Not found: /no/such/path");

    let a = request(addr, "DELETE", "/jobs", &[], None).await;
    assert_eq!(a.status, 405);
    assert!(a.error().contains("DELETE"), "{}", a.body);

    let a = post_json(addr, &format!("/jobs/{JOB_A}/savepoints"), "{not json").await;
    assert_eq!(a.status, 400);
    assert!(
        a.error()
            .starts_with("Request did not match expected format SavepointTriggerRequestBody"),
        "{}",
        a.body
    );

    let a = post_json(
        addr,
        &format!("/jobs/{JOB_A}/savepoints"),
        r#"{"target-directory": 7}"#,
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);

    let a = post_json(addr, &format!("/jobs/{JOB_A}/stop"), r#"{"drian": true}"#).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.error().contains("drian"), "{}", a.body);

    let a = request(
        addr,
        "POST",
        &format!("/jobs/{JOB_A}/savepoints"),
        &[("Content-Type", "text/plain")],
        Some("{}"),
    )
    .await;
    assert_eq!(a.status, 415, "{}", a.body);

    let a = request(
        addr,
        "PATCH",
        &format!("/jobs/{JOB_A}?mode=explode"),
        &[],
        None,
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(a.error().contains("mode=cancel"), "{}", a.body);

    let a = get(addr, &format!("/jobs/{JOB_A}/savepoints/{unknown}")).await;
    assert_eq!(a.status, 404);
    assert_eq!(
        a.error(),
        format!("There is no savepoint operation with triggerId={unknown} for job {JOB_A}.")
    );
    server.shutdown().await;
}

/// One sample: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// `name{labels} value` lines, with `# HELP`/`# TYPE` before each family.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            typed.insert(it.next().unwrap().to_owned());
            assert!(matches!(it.next(), Some("counter" | "gauge")), "{line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        // `name value` (no labels, e.g. process_open_fds) or `name{labels} value`.
        let (name, labels, value) = match line.split_once('{') {
            Some((name, rest)) => {
                let (labels, value) = rest.rsplit_once("} ").unwrap_or_else(|| panic!("{line}"));
                (name, labels, value)
            }
            None => {
                let (name, value) = line.split_once(' ').unwrap_or_else(|| panic!("{line}"));
                (name, "", value)
            }
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(typed.contains(name), "no # TYPE before {line}");
        let labels: Vec<(String, String)> = labels
            .split("\",")
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                (k.to_owned(), v.trim_end_matches('"').to_owned())
            })
            .collect();
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        out.push((name.to_owned(), labels, value));
    }
    out
}

fn sample(samples: &[Sample], name: &str, label: (&str, &str)) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l.iter().any(|(k, v)| k == label.0 && v == label.1))
        .unwrap_or_else(|| panic!("no {name} with {label:?}"))
        .2
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let registry = two_jobs();
    let server = start(&registry).await;
    let a = get(server.local_addr(), "/metrics").await;
    assert_eq!(a.status, 200);
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        a.headers
    );
    let samples = parse_prometheus(&a.body);
    // fixed_metrics: task 1 is "count -> print": count got 200, print 210 in; out twice that.
    assert_eq!(
        sample(
            &samples,
            "floe_operator_records_in_total",
            ("operator", "count")
        ),
        200.0
    );
    assert_eq!(
        sample(
            &samples,
            "floe_operator_records_out_total",
            ("operator", "print")
        ),
        420.0
    );
    let job = ("job_id", JOB_A);
    assert_eq!(
        sample(&samples, "floe_checkpoints_completed_total", job),
        3.0
    );
    assert_eq!(sample(&samples, "floe_checkpoints_failed_total", job), 1.0);
    assert_eq!(sample(&samples, "floe_checkpoint_last_id", job), 3.0);
    assert_eq!(
        sample(&samples, "floe_checkpoint_last_size_bytes", job),
        4003.0
    );
    assert_eq!(
        sample(&samples, "floe_checkpoint_last_duration_seconds", job),
        0.06
    );
    assert!(sample(&samples, "floe_checkpoint_last_age_seconds", job) >= 0.0);
    assert_eq!(sample(&samples, "floe_restore_checkpoint_id", job), 37.0);
    assert_eq!(sample(&samples, "floe_restore_is_savepoint", job), 1.0);
    let running = samples
        .iter()
        .find(|(n, l, _)| {
            n == "floe_job_state"
                && l.contains(&("job_id".into(), JOB_A.into()))
                && l.contains(&("state".into(), "RUNNING".into()))
        })
        .unwrap();
    assert_eq!(running.2, 1.0);
    server.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let registry = two_jobs();
    let server = start(&registry).await;
    let addr = server.local_addr();
    assert_eq!(get(addr, "/healthz").await.status, 200);
    assert_eq!(get(addr, "/readyz").await.status, 200, "running + finished");

    registry.record_restart(&JobId(JOB_A.into()), Some("boom".into()));
    let a = get(addr, "/readyz").await;
    assert_eq!(a.status, 503);
    assert_eq!(a.json()["jobs"][0]["state"], "RESTARTING");
    assert_eq!(get(addr, "/healthz").await.status, 200, "still serving");

    registry.set_state(&JobId(JOB_A.into()), JobState::Running);
    assert_eq!(get(addr, "/readyz").await.status, 200);
    registry.finish(&JobId(JOB_A.into()), JobState::Failed, Some("boom".into()));
    assert_eq!(get(addr, "/readyz").await.status, 503);
    server.shutdown().await;
}
