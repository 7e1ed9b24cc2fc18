//! `floe serve` with its state on S3 (issue 7 with issue 6): checkpoints and the service's
//! savepoints go to a real SeaweedFS (`s3_support`); SIGTERM leaves the final savepoint on
//! S3, and the next start finds it there and resumes from it, with exact counts.

mod s3_support;
mod serve_support;

use s3_support::{ACCESS_KEY, SECRET_KEY};
use serve_support::*;
use std::path::Path;

#[test]
fn sigterm_leaves_the_final_savepoint_on_s3_and_the_next_start_resumes_from_it() {
    let Some(s3) = s3_support::server() else {
        return;
    };
    s3.configure_library();
    let root = s3.prefix("serve");
    let env = [
        ("FLOE_STATE_CHECKPOINTS_DIR", root.as_str()),
        ("FLOE_S3_ENDPOINT", s3.endpoint.as_str()),
        ("FLOE_S3_PATH_STYLE_ACCESS", "true"),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_REGION", "us-east-1"),
    ];
    let l = Layout::new("");
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    let serve = Serve::start(&l, &env);
    serve.wait_running("wc.yaml");
    let a = lines(300, 31);
    l.input("part-1", &a);
    wait_committed(&l, updates(&counts(&[&a])));
    let (status, log) = serve.terminate();
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}\n{log}");
    let managed = format!("{root}/floe-savepoints");
    let savepoints = floe::checkpoint::storage::list_savepoints(Path::new(&managed)).unwrap();
    assert_eq!(
        savepoints.len(),
        1,
        "one final savepoint under {managed}: {savepoints:?}\n{log}"
    );
    assert!(
        !l.path("ck").exists(),
        "nothing went to the local disk: {}",
        l.path("ck").display()
    );

    let b = lines(200, 32);
    l.input("part-2", &b);
    let serve = Serve::start(&l, &env);
    let id = serve.wait_running("wc.yaml");
    let ck = serve.get(&format!("/jobs/{id}/checkpoints"));
    let restored = ck["latest"]["restored"]["external_path"]
        .as_str()
        .unwrap_or("");
    let name = savepoints[0].file_name().unwrap().to_str().unwrap();
    assert!(
        restored.starts_with("s3://") && restored.ends_with(name),
        "resumed from the final savepoint {name} on S3: {ck}\n{}",
        serve.log_text()
    );
    assert_eq!(ck["latest"]["restored"]["is_savepoint"], true);
    let expected = counts(&[&a, &b]);
    wait_committed(&l, updates(&expected));
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    assert_exactly_once(&l.committed(), &expected);
}
