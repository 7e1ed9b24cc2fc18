//! `floe reload [-m host:port] [--json]`: make a running `floe serve` apply every change of
//! its pipeline directory and configuration now (`POST /floe/reload`), as SIGHUP does, and
//! wait until each change is applied or rolled back. Exit 0 when every change applied (or
//! there was none), 1 otherwise, with one line per pipeline.

use super::remote::{self, RemoteArgs};
use super::{GlobalArgs, EXIT_FAILURE};
use clap::Args;
use serde_json::Value;

#[derive(Args, Debug)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn reload(global: &GlobalArgs, args: ReloadArgs) -> u8 {
    let client = match remote::client(global, &args.remote) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let report = match client.post("/floe/reload", &Value::Object(Default::default())) {
        Ok(v) => v,
        Err(e) => return remote::failed("Could not reload.", &e),
    };
    let ok = report["ok"].as_bool() == Some(true);
    if args.remote.json {
        remote::print_json(&report);
    } else {
        crate::stdio::out(&render(&report));
    }
    if ok {
        0
    } else {
        EXIT_FAILURE
    }
}

/// The report as lines: one per pipeline, then the configuration's keys.
pub(super) fn render(report: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let pipelines = report["pipelines"].as_array().unwrap_or(&empty);
    if pipelines.is_empty() {
        out.push_str("No pipeline changed.\n");
    }
    for p in pipelines {
        let s = |k: &str| p[k].as_str().unwrap_or("").to_string();
        let mut line = format!("{}: {} -> {}", s("file"), s("change"), s("result"));
        if let Some(id) = p["job-id"].as_str() {
            line.push_str(&format!(" (job {id})"));
        }
        if let Some(sp) = p["savepoint"].as_str() {
            line.push_str(&format!(" from {sp}"));
        }
        if let Some(e) = p["error"].as_str() {
            line.push_str(&format!("\n  {e}"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    let keys = |k: &str| {
        report["config"][k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    if !keys("live").is_empty() {
        out.push_str(&format!("Configuration applied live: {}\n", keys("live")));
    }
    if !keys("restart").is_empty() {
        out.push_str(&format!(
            "Configuration keys that apply at the next restart: {}\n",
            keys("restart")
        ));
    }
    if let Some(e) = report["config"]["error"].as_str() {
        out.push_str(&format!("Configuration not applied: {e}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_one_line_per_pipeline_with_errors_indented() {
        let r = json!({"ok": false, "pipelines": [
            {"file": "a.yaml", "change": "changed", "result": "applied", "job-id": "ab", "savepoint": "/sp/x"},
            {"file": "b.yaml", "change": "changed", "result": "rejected", "error": "b.yaml: bad"}
        ], "config": {"live": [], "restart": ["parallelism.default"], "error": null}});
        assert_eq!(
            render(&r),
            "a.yaml: changed -> applied (job ab) from /sp/x\nb.yaml: changed -> rejected\n  \
             b.yaml: bad\nConfiguration keys that apply at the next restart: parallelism.default\n"
        );
    }
}
