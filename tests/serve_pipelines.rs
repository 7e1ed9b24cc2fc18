//! Pipelines are first-class in `floe serve` (issue 14, points 1 and 4): a bad pipeline file
//! never blocks the others (they start; it is shown as invalid in the log, `/pipelines`,
//! `/readyz` and the metrics); two files with one `name:` are both refused; `/pipelines`
//! gives one entry per file with its current version and its history (capped); the metrics
//! of a pipeline keep their labels across reloads; process metrics are there. Real binary.

mod serve_support;
use serde_json::Value;
use serve_support::*;

/// The value of the first `/metrics` sample whose line starts with `name{` and has every
/// `labels` part.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn a_bad_file_never_blocks_the_others_and_is_shown_everywhere() {
    let l = Layout::new("");
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    let bad = "name: bad\noperators:\n  - id: src\n    type: sockett\n";
    std::fs::write(l.path("pipelines/bad.yaml"), bad).unwrap();
    let serve = Serve::start(&l, &[]);
    serve.wait_running("wc.yaml");
    let a = lines(100, 41);
    l.input("part-1", &a);
    wait_committed(&l, updates(&counts(&[&a])));

    let mut body = Value::Null;
    wait_for("bad.yaml listed as not ready", || {
        body = serve.readyz().1;
        body.to_string().contains("bad.yaml")
    });
    let p = serve.pipeline("bad.yaml");
    assert_eq!(p["status"], "INVALID", "{p}");
    assert_eq!(p["ready"], false);
    assert!(p["reason"].as_str().unwrap().contains("sockett"), "{p}");
    let listed = body["pipelines"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "only bad.yaml is not ready: {body}");
    assert_eq!(listed[0]["file"], "bad.yaml");
    let m = serve.metrics();
    assert_eq!(
        sample(&m, "floe_pipeline_ready", &["pipeline=\"bad.yaml\""]),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            "floe_pipeline_status",
            &["pipeline=\"bad.yaml\"", "status=\"INVALID\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "floe_pipeline_ready", &["pipeline=\"wc.yaml\""]),
        Some(1.0)
    );
    assert!(
        serve
            .log_text()
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("bad.yaml") && l.contains("sockett")),
        "{}",
        serve.log_text()
    );

    // Fixed: it starts by itself, and the service is ready.
    std::fs::write(
        l.path("pipelines/bad.yaml"),
        l.wordcount("fixed", None).replace("/out", "/out-fixed"),
    )
    .unwrap();
    serve.wait_running("bad.yaml");
    serve.wait_ready(200);
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    assert_exactly_once(&l.committed(), &counts(&[&a]));
}

#[test]
fn two_files_with_one_name_are_both_refused_until_one_is_renamed() {
    let l = Layout::new("");
    std::fs::write(l.path("pipelines/a.yaml"), l.wordcount("wc", None)).unwrap();
    std::fs::write(
        l.path("pipelines/b.yaml"),
        l.wordcount("wc", None).replace("/out", "/out-b"),
    )
    .unwrap();
    let serve = Serve::start(&l, &[]);
    let mut body = Value::Null;
    wait_for("both files listed as not ready", || {
        body = serve.readyz().1;
        body["pipelines"].as_array().is_some_and(|p| p.len() == 2)
    });
    for file in ["a.yaml", "b.yaml"] {
        let p = serve.pipeline(file);
        assert_eq!(p["status"], "INVALID", "{p}");
        let reason = p["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("a.yaml and b.yaml both have `name: wc`"),
            "{p}"
        );
    }
    assert!(body.to_string().contains("both have"), "{body}");
    assert!(
        serve.jobs().is_empty(),
        "nothing started: {:?}",
        serve.jobs()
    );

    std::fs::write(
        l.path("pipelines/b.yaml"),
        l.wordcount("wc-b", None).replace("/out", "/out-b"),
    )
    .unwrap();
    let a = serve.wait_running("a.yaml");
    serve.wait_running("b.yaml");
    serve.wait_ready(200);

    // A second file takes the name of a running one: it does not start, the running one runs
    // on, and both are shown with the error.
    std::fs::write(
        l.path("pipelines/c.yaml"),
        l.wordcount("wc", None).replace("/out", "/out-c"),
    )
    .unwrap();
    wait_for("the clash shown", || {
        let all = serve.get("/pipelines")["pipelines"].clone();
        let of = |f: &str| {
            all.as_array()
                .and_then(|l| l.iter().find(|p| p["file"] == f).cloned())
                .unwrap_or(Value::Null)
        };
        of("c.yaml")["status"] == "INVALID" && of("a.yaml")["ready"] == false
    });
    assert!(serve.jobs_of("c.yaml").is_empty());
    assert_eq!(
        serve.wait_running("a.yaml"),
        a,
        "a.yaml runs on, the same job"
    );
    let reason = serve.pipeline("a.yaml")["reason"].to_string();
    assert!(reason.contains("a.yaml and c.yaml both have"), "{reason}");
}

#[test]
fn one_entry_per_file_with_its_versions_and_labels_that_survive_reloads() {
    let l = Layout::new("service.history.max-versions: 2\n");
    let base = l.wordcount("wc", None);
    std::fs::write(l.path("pipelines/wc.yaml"), &base).unwrap();
    let serve = Serve::start(&l, &[]);
    let mut ids = vec![serve.wait_running("wc.yaml")];
    let running = "floe_job_state";
    let labels = [
        "pipeline=\"wc.yaml\"",
        "job_name=\"wc\"",
        "state=\"RUNNING\"",
    ];
    serve.wait_ready(200);
    assert_eq!(sample(&serve.metrics(), running, &labels), Some(1.0));
    for n in 1..=4 {
        l.save_by_rename(
            "wc.yaml",
            &base.replace("name: wc", &format!("name: wc\n# v{n}")),
        );
        let out = serve.cli(&["reload"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let id = serve.wait_replaced("wc.yaml", ids.last().unwrap());
        ids.push(id);
        // The same series, across versions: no job id in a pipeline's labels.
        let m = serve.metrics();
        assert_eq!(sample(&m, running, &labels), Some(1.0), "{m}");
        assert!(
            !m.contains(ids[0].as_str()),
            "no ended version's job id: {m}"
        );
    }
    let p = serve.pipeline("wc");
    assert_eq!(p["file"], "wc.yaml");
    assert_eq!(p["job-id"], ids[4].as_str(), "{p}");
    assert_eq!(p["current"], true);
    assert_eq!(p["versions-started"], 5, "{p}");
    let versions: Vec<&str> = p["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["job-id"].as_str().unwrap())
        .collect();
    assert_eq!(
        versions,
        [&ids[2], &ids[3], &ids[4]],
        "two ended versions and the current"
    );
    let listed: Vec<Value> = serve.jobs_of("wc.yaml");
    assert_eq!(
        listed.len(),
        3,
        "the REST job list is capped too: {listed:?}"
    );
    let all = serve.get("/pipelines");
    assert_eq!(all["pipelines"].as_array().unwrap().len(), 1, "{all}");

    let m = serve.metrics();
    for family in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        let v = sample(&m, family, &[]).unwrap_or_else(|| panic!("{family} in {m}"));
        assert!(v > 0.0, "{family} = {v}");
    }
    assert_eq!(
        sample(
            &m,
            "floe_pipeline_versions_total",
            &["pipeline=\"wc.yaml\""]
        ),
        Some(5.0)
    );
    assert!(sample(
        &m,
        "floe_pipeline_records_per_second",
        &["pipeline=\"wc.yaml\""]
    )
    .is_some());
    assert!(sample(&m, "floe_job_records_per_second", &["pipeline=\"wc.yaml\""]).is_some());
}
