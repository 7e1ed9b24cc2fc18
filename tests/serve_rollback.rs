//! A reload whose new version fails once started is rolled back (issue 14, point 2): the
//! version before runs again from the savepoint the new one started from, `floe reload`
//! says `rolled-back` with the cause and exits 1, the cause is logged at ERROR and shown as
//! the job's `reload-error` and on `/pipelines`, `/readyz` answers 503 until the file is
//! fixed, and the counts stay exact. Real binary, real directories.

mod serve_support;
use serve_support::*;

#[test]
fn an_edit_that_fails_once_started_rolls_back_to_the_version_before() {
    let l = Layout::new("");
    let good = l.wordcount("wc", None);
    std::fs::write(l.path("pipelines/wc.yaml"), &good).unwrap();
    let serve = Serve::start(&l, &[]);
    let first = serve.wait_running("wc.yaml");
    let a = lines(200, 31);
    l.input("part-1", &a);
    wait_committed(&l, updates(&counts(&[&a])));
    serve.wait_ready(200);

    // The new version validates (YAML, operators, plan) but cannot create its output
    // directory: a regular file is in the way. It fails as soon as it starts.
    std::fs::write(l.path("blocker"), "a file, not a directory").unwrap();
    let out = l.path("out").display().to_string();
    let broken = good.replace(&out, &l.path("blocker/out").display().to_string());
    l.save_by_rename("wc.yaml", &broken);
    let reload = serve.cli(&["reload"]);
    let said = String::from_utf8_lossy(&reload.stdout).to_string();
    assert_eq!(reload.status.code(), Some(1), "{said}");
    assert!(said.contains("wc.yaml: changed -> rolled-back"), "{said}");
    assert!(said.contains("blocker"), "the cause is named: {said}");

    // The version before runs again (a new job, restored from the savepoint), with the
    // cause as its reload-error.
    let back = serve.wait_replaced("wc.yaml", &first);
    let job = serve.get(&format!("/jobs/{back}"));
    let error = job["reload-error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("probation") && error.contains("blocker"),
        "{job}"
    );
    let restored = serve.get(&format!("/jobs/{back}/checkpoints"))["latest"]["restored"]
        ["external_path"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        restored.contains("savepoint-"),
        "restored from the savepoint: {restored}"
    );
    let log = serve.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("probation") && l.contains("blocker")),
        "the cause is logged at ERROR:\n{log}"
    );
    let p = serve.pipeline("wc.yaml");
    assert_eq!(p["rollbacks"], 1, "{p}");
    // The metrics say it too; restarts count every version listed, the failed one included.
    let m = serve.metrics();
    let sample = |family: &str| {
        m.lines()
            .find(|l| l.starts_with(&format!("{family}{{")) && l.contains("pipeline=\"wc.yaml\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{family} of wc.yaml in {m}"))
    };
    assert_eq!(sample("floe_pipeline_rollbacks_total"), 1.0, "{m}");
    assert!(sample("floe_pipeline_reload_errors_total") >= 1.0, "{m}");
    let listed: u64 = p["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["restarts"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(p["restarts"], listed, "{p}");
    assert_eq!(sample("floe_pipeline_restarts_total"), listed as f64, "{m}");
    assert_eq!(p["ready"], false, "{p}");
    assert_eq!(p["current"], false, "{p}");
    let (status, body) = serve.readyz();
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("blocker"), "{body}");

    // Nothing lost or doubled: the version before goes on counting.
    let b = lines(150, 32);
    l.input("part-2", &b);
    wait_committed(&l, updates(&counts(&[&a, &b])));

    // Fixed: applied, exit 0, ready again.
    l.save_by_rename(
        "wc.yaml",
        &good.replace("name: wc", "name: wc\nparallelism: 1"),
    );
    let fixed = serve.cli(&["reload"]);
    assert_eq!(
        fixed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&fixed.stdout)
    );
    serve.wait_ready(200);
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    assert_exactly_once(&l.committed(), &counts(&[&a, &b]));
}
