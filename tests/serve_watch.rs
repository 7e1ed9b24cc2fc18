//! `floe serve` recognises changes by content (issue 6): an editor's save-by-rename, a
//! Kubernetes ConfigMap `..data` symlink swap, and the same content written again cause
//! exactly one reload or none, and only the changed pipeline is touched.
//!
//! "Exactly one": after the change is applied, an explicit `floe reload` (queued behind any
//! rescan the watcher still has) reports no change, and the file has had exactly two jobs.

mod serve_support;
use serve_support::*;
use std::os::unix::fs::symlink;

const FILTER: &str = "  - id: pre
    type: filter
    inputs: [source]
    condition: 'true'
";

fn assert_settled(serve: &Serve) {
    let out = serve.cli(&["reload"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("No pipeline changed"),
        "nothing left to reload: {said}"
    );
}

#[test]
fn save_by_rename_and_rewriting_the_same_text_reload_once() {
    let l = Layout::new("");
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    let other = l.wordcount("other", None).replace("/out", "/out-other");
    std::fs::write(l.path("pipelines/other.yaml"), &other).unwrap();
    let serve = Serve::start(&l, &[]);
    let first = serve.wait_running("wc.yaml");
    let other_id = serve.wait_running("other.yaml");

    // vim without backupcopy: write a swap file, move the old file aside, write the new one,
    // remove the backup; then the same text saved twice more.
    let edited = l.wordcount("wc", Some(FILTER));
    std::fs::write(l.path("pipelines/.wc.yaml.swp"), "swap").unwrap();
    std::fs::rename(l.path("pipelines/wc.yaml"), l.path("pipelines/wc.yaml~")).unwrap();
    std::fs::write(l.path("pipelines/wc.yaml"), &edited).unwrap();
    std::fs::remove_file(l.path("pipelines/wc.yaml~")).unwrap();
    std::fs::remove_file(l.path("pipelines/.wc.yaml.swp")).unwrap();
    l.save_by_rename("wc.yaml", &edited);
    std::fs::write(l.path("pipelines/wc.yaml"), &edited).unwrap();
    // other.yaml touched with its own text: not a change.
    std::fs::write(l.path("pipelines/other.yaml"), &other).unwrap();

    serve.wait_replaced("wc.yaml", &first);
    assert_settled(&serve);
    assert_eq!(
        serve.jobs_of("wc.yaml").len(),
        2,
        "{:?}",
        serve.jobs_of("wc.yaml")
    );
    let others = serve.jobs_of("other.yaml");
    assert_eq!(
        others.len(),
        1,
        "the other pipeline was not touched: {others:?}"
    );
    assert_eq!(others[0]["jid"], other_id.as_str());
    assert_eq!(others[0]["state"], "RUNNING");
}

#[test]
fn a_configmap_data_swap_reloads_once() {
    let l = Layout::new("");
    let dir = l.path("pipelines");
    // The kubelet's layout: files are symlinks through `..data` to a timestamped directory.
    std::fs::create_dir(dir.join("..2026_12_01_a")).unwrap();
    std::fs::write(dir.join("..2026_12_01_a/wc.yaml"), l.wordcount("wc", None)).unwrap();
    let other = l.wordcount("other", None).replace("/out", "/out-other");
    std::fs::write(dir.join("..2026_12_01_a/other.yaml"), &other).unwrap();
    symlink("..2026_12_01_a", dir.join("..data")).unwrap();
    symlink("..data/wc.yaml", dir.join("wc.yaml")).unwrap();
    symlink("..data/other.yaml", dir.join("other.yaml")).unwrap();
    let serve = Serve::start(&l, &[]);
    let first = serve.wait_running("wc.yaml");
    let other_id = serve.wait_running("other.yaml");

    // The update: a new directory, `..data_tmp` pointing at it renamed over `..data`, the old
    // directory removed.
    std::fs::create_dir(dir.join("..2026_12_01_b")).unwrap();
    std::fs::write(
        dir.join("..2026_12_01_b/wc.yaml"),
        l.wordcount("wc", Some(FILTER)),
    )
    .unwrap();
    std::fs::write(dir.join("..2026_12_01_b/other.yaml"), &other).unwrap();
    symlink("..2026_12_01_b", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_12_01_a")).unwrap();

    let second = serve.wait_replaced("wc.yaml", &first);
    assert_settled(&serve);
    assert_eq!(
        serve.jobs_of("wc.yaml").len(),
        2,
        "{:?}",
        serve.jobs_of("wc.yaml")
    );
    let details = serve.get(&format!("/jobs/{second}"));
    assert!(
        details.to_string().contains("pre"),
        "the new version runs: {details}"
    );
    let others = serve.jobs_of("other.yaml");
    assert_eq!(
        others.len(),
        1,
        "the unchanged pipeline was not touched: {others:?}"
    );
    assert_eq!(others[0]["jid"], other_id.as_str());
}

#[test]
fn an_edited_flink_conf_applies_live_keys_and_names_the_keys_that_need_a_restart() {
    let l = Layout::new("");
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    let serve = Serve::start(&l, &[]);
    let id = serve.wait_running("wc.yaml");
    let conf = std::fs::read_to_string(l.path("conf/flink-conf.yaml")).unwrap();
    std::fs::write(
        l.path("conf/flink-conf.yaml"),
        format!(
            "{}pipeline.max-parallelism: 256\n",
            conf.replace("interval: 100 ms", "interval: 300 ms")
        ),
    )
    .unwrap();
    wait_for("the live key applied", || {
        serve.log_text().lines().any(|l| {
            l.contains("configuration applied live")
                && l.contains("execution.checkpointing.interval")
        })
    });
    wait_for("the restart key named in the log", || {
        serve.log_text().lines().any(|l| {
            l.contains("WARN") && l.contains("pipeline.max-parallelism") && l.contains("restart")
        })
    });
    // The running job's checkpoint configuration shows the new interval.
    let cfg = serve.get(&format!("/jobs/{id}/checkpoints/config"));
    assert_eq!(cfg["interval"], 300, "{cfg}");
    // The job was not restarted for it.
    let jobs = serve.jobs_of("wc.yaml");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["jid"], id.as_str());
}

#[test]
fn a_symlinked_file_edited_in_place_where_it_lives_reloads_once() {
    let l = Layout::new("");
    std::fs::create_dir(l.path("elsewhere")).unwrap();
    std::fs::write(l.path("elsewhere/wc.yaml"), l.wordcount("wc", None)).unwrap();
    symlink(l.path("elsewhere/wc.yaml"), l.path("pipelines/wc.yaml")).unwrap();
    let serve = Serve::start(&l, &[]);
    let first = serve.wait_running("wc.yaml");
    // Edited where it lives, in place: no event in the pipeline directory itself.
    std::fs::write(l.path("elsewhere/wc.yaml"), l.wordcount("wc", Some(FILTER))).unwrap();
    serve.wait_replaced("wc.yaml", &first);
    assert_settled(&serve);
    assert_eq!(
        serve.jobs_of("wc.yaml").len(),
        2,
        "{:?}",
        serve.jobs_of("wc.yaml")
    );
}
