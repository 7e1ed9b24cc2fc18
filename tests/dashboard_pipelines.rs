//! The dashboard of a `floe serve` shows its pipelines (issue 14, points 1 and 4), in
//! headless Chromium: an invalid file as INVALID with its error, a running one as ready, one
//! cancelled through the API as CANCELED and ready (as intended) with a Start button, which
//! starts it again (`POST /pipelines/:name/start`). Real binary, real browser (skipped
//! without one outside CI, as `dashboard_browser`).

mod browser_support;
mod serve_support;
use serve_support::*;

#[test]
fn the_dashboard_lists_each_pipeline_and_starts_a_cancelled_one() {
    let Some(browser) = browser_support::browser() else {
        return;
    };
    let l = Layout::new("");
    std::fs::write(l.path("pipelines/wc.yaml"), l.wordcount("wc", None)).unwrap();
    std::fs::write(
        l.path("pipelines/bad.yaml"),
        "name: bad\noperators:\n  - id: src\n    type: sockett\n",
    )
    .unwrap();
    let serve = Serve::start(&l, &[]);
    let id = serve.wait_running("wc.yaml");
    let out = serve.cli(&["cancel", &id]);
    assert!(out.status.success());
    wait_for("wc.yaml cancelled", || {
        serve.pipeline("wc.yaml")["status"] == "CANCELED"
    });
    let shot = browser_support::screenshot_path(l.root.path(), "dashboard-pipelines.png");
    let r = browser_support::run_script(
        &browser,
        "pipelines.mjs",
        &[
            ("FLOE_URL", &format!("http://{}/", serve.addr)),
            ("FLOE_SCREENSHOT", shot.to_str().unwrap()),
            ("FLOE_EXPECT_STATUS", "bad.yaml=INVALID,wc.yaml=CANCELED"),
            ("FLOE_START_FILE", "wc.yaml"),
        ],
    );
    let before = r["before"].to_string();
    assert!(
        before.contains("sockett"),
        "the error of bad.yaml is shown: {before}"
    );
    let after = r["after"].as_array().unwrap();
    let wc = after.iter().find(|row| row["file"] == "wc.yaml").unwrap();
    assert_eq!(wc["ready"], "true", "{wc}");
    // Its versions: the cancelled one, kept in the history, and the one Start began.
    assert!(
        wc["cells"].to_string().contains("2 listed, 2 started"),
        "{wc}"
    );
    serve.wait_running("wc.yaml");
}
