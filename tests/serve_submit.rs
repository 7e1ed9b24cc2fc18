//! `floe run -d` (issue 5, point 3): the pipeline is submitted to a running `floe serve`
//! through `POST /jobs`, the command prints `Job has been submitted with JobID <id>` and
//! returns, and `floe list` shows the job running in the service. A `floe run` (single job)
//! refuses submissions with a pointer to `floe serve`. Submission needs `web.submit.enable`
//! and a token, and the pipeline's files must lie under `web.submit.allowed-dirs`
//! (tests/security_rest.rs checks the refusals).

mod serve_support;
use serve_support::*;

#[test]
fn run_detached_submits_to_the_service_and_list_shows_it() {
    let l = Layout::submitting("");
    let serve = Serve::start(&l, &[]);
    let file = l.path("submitted.yaml");
    std::fs::write(&file, l.wordcount("submitted-wc", None)).unwrap();
    let out = serve.cli_with_token(&["run", "-d", file.to_str().unwrap(), "-p", "2"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = said
        .trim()
        .strip_prefix("Job has been submitted with JobID ")
        .unwrap_or_else(|| panic!("Flink's line: {said}"))
        .to_string();
    assert_eq!(id.len(), 32, "{id}");
    wait_for("the submitted job to run", || {
        serve
            .jobs()
            .iter()
            .any(|j| j["jid"] == id.as_str() && j["state"] == "RUNNING")
    });
    let list = serve.cli(&["list"]);
    let listing = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        listing.contains(&format!("{id} : submitted-wc (RUNNING)")),
        "{listing}"
    );
    // -p 2 reached the job.
    let job = serve.get(&format!("/jobs/{id}"));
    assert!(
        job["vertices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["parallelism"] == 2),
        "{job}"
    );
    // It reads relative to its own file: the input written now is counted.
    let a = lines(50, 31);
    l.input("part-1", &a);
    wait_committed(&l, updates(&counts(&[&a])));

    // A broken pipeline is refused with the reason, exit 1.
    std::fs::write(
        &file,
        l.wordcount("submitted-wc", None)
            .replace("key_by", "key_byy"),
    )
    .unwrap();
    let bad = serve.cli_with_token(&["run", "-d", file.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(err.contains("key_byy"), "{err}");
    assert!(err.contains("submitted.yaml"), "names the file: {err}");
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn a_single_job_floe_run_refuses_submissions_and_reloads() {
    let l = Layout::new("");
    let file = l.path("wc.yaml");
    std::fs::write(&file, l.wordcount("wc", None)).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_floe"));
    cmd.env_remove("FLOE_CONF_DIR")
        .env("RUST_LOG", "info")
        .env("FLOE_REST_PORT", "0")
        .arg("--conf-dir")
        .arg(l.path("conf"))
        .arg("run")
        .arg(&file);
    let run = Serve::spawn(cmd);
    let out = run.cli(&["run", "-d", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("floe serve"), "points to floe serve: {err}");
    let out = run.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("floe serve"));
}
