//! `floe start NAME [-m host:port] [--json]`: make a running `floe serve` run again a
//! pipeline that was stopped or cancelled through the API (`floe stop`, `floe cancel`),
//! which it otherwise keeps down, also across its restarts. NAME is the pipeline file's name
//! (`wc.yaml`) or its `name:`. The job resumes from the pipeline's newest state. Through
//! `POST /pipelines/:name/start`; printed as `floe reload` prints a pipeline. Exit 0 when it
//! runs.

use super::remote::{self, RemoteArgs};
use super::{GlobalArgs, EXIT_FAILURE};
use clap::Args;
use serde_json::Value;

#[derive(Args, Debug)]
pub struct StartArgs {
    /// The pipeline: its file name in the pipeline directory, or its `name:`.
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn start(global: &GlobalArgs, args: StartArgs) -> u8 {
    let client = match remote::client(global, &args.remote) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let path = format!("/pipelines/{}/start", encode(&args.name));
    let report = match client.post(&path, &Value::Object(Default::default())) {
        Ok(v) => v,
        Err(e) => return remote::failed(&format!("Could not start {}.", args.name), &e),
    };
    if args.remote.json {
        remote::print_json(&report);
    } else {
        crate::stdio::out(&super::reload::render(&report));
    }
    if report["ok"].as_bool() == Some(true) {
        0
    } else {
        EXIT_FAILURE
    }
}

/// A path segment with everything but unreserved characters percent-encoded.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(super::encode("wc.yaml"), "wc.yaml");
        assert_eq!(super::encode("a/b c"), "a%2Fb%20c");
    }
}
