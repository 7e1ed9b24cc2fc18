//! `floe serve` follows edits of a pipeline file (issue 6): the edited version continues from
//! the old one's savepoint with nothing lost or doubled; an invalid edit leaves the old
//! version running with the error in `/jobs` and `floe reload` failing; a new version that
//! cannot restore (an operator with state removed, not allowed) brings the old one back from
//! the same savepoint. Real binary, real directories, the exactly-once `file` sink.

mod serve_support;
use serve_support::*;

/// A filter before `split`: the new version's new operator (stateless, keeps every line).
const FILTER: &str = "  - id: pre
    type: filter
    inputs: [source]
    condition: 'true'
";

#[test]
fn an_edited_pipeline_continues_the_counts_exactly_once() {
    let l = Layout::new("");
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    let serve = Serve::start(&l, &[]);
    let first = serve.wait_running("wc.yaml");
    let a = lines(300, 1);
    l.input("part-1", &a);
    wait_committed(&l, updates(&counts(&[&a])));

    l.save_by_rename("wc.yaml", &l.wordcount("wc", Some(FILTER)));
    let second = serve.wait_replaced("wc.yaml", &first);
    let old = serve.get(&format!("/jobs/{first}"));
    assert_eq!(old["state"], "FINISHED", "the old version stopped: {old}");
    // The new version runs the filter, restored from the old version's savepoint.
    let ck = serve.get(&format!("/jobs/{second}/checkpoints"));
    let restored = ck["latest"]["restored"]["external_path"]
        .as_str()
        .unwrap_or("");
    assert!(
        restored.contains("floe-savepoints/savepoint-"),
        "restored from the reload's savepoint: {ck}"
    );
    let details = serve.get(&format!("/jobs/{second}"));
    assert!(
        details.to_string().contains("pre"),
        "the new version has the filter: {details}"
    );

    let b = lines(200, 2);
    l.input("part-2", &b);
    let expected = counts(&[&a, &b]);
    wait_committed(&l, updates(&expected));
    let (status, log) = serve.terminate();
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}\n{log}");
    assert_exactly_once(&l.committed(), &expected);
}

#[test]
fn an_invalid_edit_leaves_the_old_version_running_and_reports_the_error() {
    let l = Layout::new("");
    let good = l.wordcount("wc", None);
    std::fs::write(l.path("pipelines/wc.yaml"), &good).unwrap();
    let serve = Serve::start(&l, &[]);
    let id = serve.wait_running("wc.yaml");

    l.save_by_rename("wc.yaml", &good.replace("type: key_by", "type: key_byy"));
    // Whether the watcher met the edit first or not, an explicit reload reports it as not
    // applied, and fails.
    let reload = serve.cli(&["reload"]);
    let said = String::from_utf8_lossy(&reload.stdout).to_string();
    assert_eq!(reload.status.code(), Some(1), "{said}");
    assert!(said.contains("wc.yaml: changed -> rejected"), "{said}");
    assert!(said.contains("key_byy"), "{said}");
    let error_shown = || {
        serve
            .jobs()
            .iter()
            .find(|j| j["jid"] == id.as_str())
            .and_then(|j| j["reload-error"].as_str().map(str::to_owned))
    };
    let error = error_shown().expect("the reload error in /jobs/overview");
    assert!(
        error.contains("key_byy"),
        "the error names the problem: {error}"
    );
    assert!(
        error.contains("wc.yaml"),
        "the error names the file: {error}"
    );
    let listed = serve.get("/jobs");
    assert!(
        listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id.as_str()
                && j["status"] == "RUNNING"
                && j["reload-error"].as_str().is_some()),
        "/jobs shows the running job with its reload-error: {listed}"
    );
    let details = serve.get(&format!("/jobs/{id}"));
    assert_eq!(details["state"], "RUNNING");
    assert!(details["reload-error"]
        .as_str()
        .unwrap()
        .contains("key_byy"));
    assert_eq!(
        serve.jobs_of("wc.yaml").len(),
        1,
        "no other job was started"
    );

    // The old version still counts.
    let a = lines(100, 3);
    l.input("part-1", &a);
    wait_committed(&l, updates(&counts(&[&a])));

    // Fixed: the reload applies it and says so with exit 0.
    l.save_by_rename("wc.yaml", &l.wordcount("wc", Some(FILTER)));
    let fixed = serve.cli(&["reload", "--json"]);
    let said = String::from_utf8_lossy(&fixed.stdout).to_string();
    assert_eq!(fixed.status.code(), Some(0), "{said}");
    let new_id = serve.wait_replaced("wc.yaml", &id);
    let new_job = serve.get(&format!("/jobs/{new_id}"));
    assert!(new_job.get("reload-error").is_none(), "{new_job}");
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    assert_exactly_once(&l.committed(), &counts(&[&a]));
}

#[test]
fn floe_reload_exit_codes_follow_the_report() {
    let l = Layout::new("");
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    let serve = Serve::start(&l, &[]);
    serve.wait_running("wc.yaml");
    let unchanged = serve.cli(&["reload"]);
    assert_eq!(unchanged.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&unchanged.stdout).contains("No pipeline changed"));
    // Written in place, broken YAML: rejected, exit 1, in JSON with the per-pipeline result.
    std::fs::write(l.path("pipelines/wc.yaml"), "name: wc\noperators: [\n").unwrap();
    let out = serve.cli(&["reload", "--json"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{said}");
    let report: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["pipelines"][0]["file"], "wc.yaml");
    assert_eq!(report["pipelines"][0]["result"], "rejected");
    // A new valid file: started, exit 0.
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    std::fs::write(
        l.path("pipelines/other.yml"),
        l.wordcount("other", None).replace("/out", "/out2"),
    )
    .unwrap();
    let out = serve.cli(&["reload"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{said}");
    serve.wait_running("other.yml");
    // SIGHUP reloads too: a removed file's job stops with a savepoint.
    std::fs::remove_file(l.path("pipelines/other.yml")).unwrap();
    serve.signal("-HUP");
    wait_for("the removed file's job to stop", || {
        serve
            .jobs_of("other.yml")
            .iter()
            .all(|j| j["state"] == "FINISHED")
    });
    assert_eq!(
        l.service_savepoints().len(),
        1,
        "{:?}",
        l.service_savepoints()
    );
}

#[test]
fn a_new_version_that_cannot_restore_brings_the_old_one_back_from_the_savepoint() {
    let l = Layout::new("");
    let good = l.wordcount("wc", None);
    std::fs::write(l.path("pipelines/wc.yaml"), &good).unwrap();
    let serve = Serve::start(&l, &[]);
    let first = serve.wait_running("wc.yaml");
    let a = lines(200, 4);
    l.input("part-1", &a);
    wait_committed(&l, updates(&counts(&[&a])));

    // `count` renamed `total`: the state of `count` has no operator to go to, and dropping
    // it is not allowed.
    let renamed = good
        .replace("id: count", "id: total")
        .replace("inputs: [count]", "inputs: [total]");
    l.save_by_rename("wc.yaml", &renamed);
    let back = serve.wait_replaced("wc.yaml", &first);
    let job = serve.get(&format!("/jobs/{back}"));
    let error = job["reload-error"].as_str().unwrap_or_default();
    assert!(
        error.contains("count"),
        "the error names the operator: {job}"
    );
    // It is the old version: `count`, not `total`.
    assert!(job.to_string().contains("\"count\""), "{job}");
    // Asked again, the reload reports the refusal without restarting anything.
    let again = serve.cli(&["reload"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stdout).contains("count"));
    assert_eq!(
        serve.jobs_of("wc.yaml").len(),
        2,
        "{:?}",
        serve.jobs_of("wc.yaml")
    );

    let b = lines(100, 5);
    l.input("part-2", &b);
    let expected = counts(&[&a, &b]);
    wait_committed(&l, updates(&expected));
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    assert_exactly_once(&l.committed(), &expected);
}
