//! What runs survives a restart of `floe serve` (issue 14, point 5): a REST cancel or stop of
//! a pipeline file's job is remembered (in `floe-serve-state.json` under the state
//! directory) until `floe start NAME`, an edit of the file or its removal, and is "as
//! intended" for `/readyz`; a job submitted with `floe run -d` is resumed from its final
//! savepoint; one that ended is not. Counts exact throughout. Real binary.

mod serve_support;
use serde_json::Value;
use serve_support::*;

const FILTER: &str = "  - id: pre
    type: filter
    inputs: [source]
    condition: 'true'
";

/// The jobs named `name` (any state).
fn named(serve: &Serve, name: &str) -> Vec<Value> {
    serve
        .jobs()
        .into_iter()
        .filter(|j| j["name"] == name)
        .collect()
}

#[test]
fn a_rest_cancel_is_remembered_across_restarts_until_floe_start() {
    let l = Layout::new(
        "execution.checkpointing.externalized-checkpoint-retention: RETAIN_ON_CANCELLATION\n",
    );
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    let serve = Serve::start(&l, &[]);
    let id = serve.wait_running("wc.yaml");
    let a = lines(200, 51);
    l.input("part-1", &a);
    wait_committed(&l, updates(&counts(&[&a])));

    let out = serve.cli(&["cancel", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("CANCELED", || {
        serve.pipeline("wc.yaml")["status"] == "CANCELED"
    });
    // A cancel the user asked for is the intended state: ready.
    serve.wait_ready(200);
    assert_eq!(serve.pipeline("wc.yaml")["held"], "cancelled");
    assert!(
        serve.log_text().contains("REST: cancel of job"),
        "{}",
        serve.log_text()
    );
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    assert!(l.path("floe-serve-state.json").is_file());

    // Input while floe is down, and a restart: it stays cancelled.
    let b = lines(120, 52);
    l.input("part-2", &b);
    let serve = Serve::start(&l, &[]);
    wait_for("the pipeline listed", || {
        serve.get("/pipelines")["pipelines"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    });
    serve.wait_ready(200);
    let p = serve.pipeline("wc");
    assert_eq!(p["status"], "CANCELED", "{p}");
    assert!(serve.jobs().is_empty(), "{:?}", serve.jobs());

    // `floe start wc`: it resumes from its retained checkpoint and reads what came since.
    let out = serve.cli(&["start", "wc"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("wc.yaml: started -> started"), "{said}");
    serve.wait_running("wc.yaml");
    let expected = counts(&[&a, &b]);
    wait_committed(&l, updates(&expected));
    serve.wait_ready(200);
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    assert_exactly_once(&l.committed(), &expected);
}

#[test]
fn a_rest_stop_is_remembered_across_restarts_until_the_file_is_edited() {
    let l = Layout::new("");
    let sp = l.path("sp");
    std::fs::write(
        l.path("conf/flink-conf.yaml"),
        format!(
            "{}state.savepoints.dir: {}\n",
            std::fs::read_to_string(l.path("conf/flink-conf.yaml")).unwrap(),
            sp.display()
        ),
    )
    .unwrap();
    let base = l.wordcount("wc", None);
    std::fs::write(l.path("pipelines/wc.yaml"), &base).unwrap();
    let serve = Serve::start(&l, &[]);
    let id = serve.wait_running("wc.yaml");
    let a = lines(150, 61);
    l.input("part-1", &a);
    wait_committed(&l, updates(&counts(&[&a])));
    let out = serve.cli(&["stop", &id, "-p", sp.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("STOPPED", || {
        serve.pipeline("wc.yaml")["status"] == "STOPPED"
    });
    serve.wait_ready(200);
    assert!(
        serve.log_text().contains("REST: stop of job"),
        "{}",
        serve.log_text()
    );
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");

    let serve = Serve::start(&l, &[]);
    wait_for("the pipeline listed", || {
        serve.get("/pipelines")["pipelines"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    });
    assert_eq!(serve.pipeline("wc.yaml")["status"], "STOPPED");
    assert!(serve.jobs().is_empty(), "{:?}", serve.jobs());

    // An edit ends the hold: the new version resumes from the stop's savepoint.
    let b = lines(100, 62);
    l.input("part-2", &b);
    l.save_by_rename("wc.yaml", &l.wordcount("wc", Some(FILTER)));
    let id = serve.wait_running("wc.yaml");
    let restored = serve.get(&format!("/jobs/{id}/checkpoints"))["latest"]["restored"].clone();
    assert_eq!(restored["is_savepoint"], true, "{restored}");
    let expected = counts(&[&a, &b]);
    wait_committed(&l, updates(&expected));
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    assert_exactly_once(&l.committed(), &expected);
}

#[test]
fn a_submitted_job_is_resumed_after_a_restart_and_forgotten_once_it_ended() {
    let l = Layout::submitting("");
    let file = l.path("submitted.yaml");
    std::fs::write(&file, l.wordcount("sub", None)).unwrap();
    let serve = Serve::start(&l, &[]);
    let out = serve.cli_with_token(&["run", "-d", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the submitted job to run", || {
        named(&serve, "sub").iter().any(|j| j["state"] == "RUNNING")
    });
    let a = lines(150, 71);
    l.input("part-1", &a);
    wait_committed(&l, updates(&counts(&[&a])));
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");

    let b = lines(100, 72);
    l.input("part-2", &b);
    let serve = Serve::start(&l, &[]);
    let mut id = String::new();
    wait_for("the submitted job to run again", || {
        match named(&serve, "sub")
            .iter()
            .find(|j| j["state"] == "RUNNING")
        {
            Some(j) => {
                id = j["jid"].as_str().unwrap().to_string();
                true
            }
            None => false,
        }
    });
    let restored = serve.get(&format!("/jobs/{id}/checkpoints"))["latest"]["restored"].clone();
    assert_eq!(
        restored["is_savepoint"], true,
        "resumed from the final savepoint: {restored}"
    );
    let expected = counts(&[&a, &b]);
    wait_committed(&l, updates(&expected));

    // Cancelled: it ended, and the next start does not bring it back.
    let out = serve.cli_with_token(&["cancel", &id]);
    assert!(out.status.success());
    wait_for("CANCELED", || {
        named(&serve, "sub")
            .iter()
            .any(|j| j["state"] == "CANCELED")
    });
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    let serve = Serve::start(&l, &[]);
    serve.wait_ready(200);
    assert!(named(&serve, "sub").is_empty(), "{:?}", serve.jobs());
    assert_exactly_once(&l.committed(), &expected);
}

#[test]
fn floe_start_needs_the_token_like_every_changing_call() {
    let l = Layout::submitting("");
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    let serve = Serve::start(&l, &[]);
    let id = serve.wait_running("wc.yaml");
    let out = serve.cli_with_token(&["cancel", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("CANCELED", || {
        serve.pipeline("wc.yaml")["status"] == "CANCELED"
    });
    let refused = serve.cli(&["start", "wc"]);
    let said = String::from_utf8_lossy(&refused.stderr).to_string()
        + &String::from_utf8_lossy(&refused.stdout);
    assert_ne!(refused.status.code(), Some(0), "{said}");
    assert!(said.contains("Authorization: Bearer"), "{said}");
    assert_eq!(serve.pipeline("wc.yaml")["status"], "CANCELED");
    let out = serve.cli_with_token(&["start", "wc"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    serve.wait_running("wc.yaml");
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn a_hold_ends_when_its_file_is_removed() {
    let l = Layout::new("");
    let text = l.wordcount("wc", None);
    std::fs::write(l.path("pipelines/wc.yaml"), &text).unwrap();
    let serve = Serve::start(&l, &[]);
    let id = serve.wait_running("wc.yaml");
    assert!(serve.cli(&["cancel", &id]).status.success());
    wait_for("CANCELED", || {
        serve.pipeline("wc.yaml")["held"] == "cancelled"
    });
    std::fs::remove_file(l.path("pipelines/wc.yaml")).unwrap();
    wait_for("wc.yaml gone from /pipelines", || {
        serve.get("/pipelines")["pipelines"]
            .as_array()
            .is_some_and(|p| p.is_empty())
    });
    let state = std::fs::read_to_string(l.path("floe-serve-state.json")).unwrap_or_default();
    assert!(!state.contains("wc.yaml"), "the hold is forgotten: {state}");
    // The file back: it runs, no `floe start` needed.
    std::fs::write(l.path("pipelines/wc.yaml"), &text).unwrap();
    serve.wait_replaced("wc.yaml", &id);
    serve.wait_ready(200);
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
}
