//! What the verbs that act on a running job share: the `-m`/`-D`/`--json` options, finding the
//! REST API (`-m host:port`, else `rest.address`:`rest.port`) and its token, job ids parsed as
//! Flink parses them, waiting for an asynchronous savepoint, and printing failures.

use super::client::{Client, ClientError, Endpoint};
use super::{parse_dynamic, GlobalArgs, EXIT_CONFIG, EXIT_FAILURE};
use crate::checkpoint::JobId;
use crate::service::rest::RestOptions;
use clap::Args;
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// The REST API of the running floe, host:port (default: rest.address:rest.port from the
    /// configuration, localhost:8081).
    #[arg(short = 'm', long = "jobmanager", value_name = "HOST:PORT")]
    pub jobmanager: Option<String>,
    /// A configuration key=value, e.g. -D rest.port=8082 or -D rest.auth.token-file=F
    /// (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = parse_dynamic)]
    pub dynamic: Vec<String>,
    /// Print JSON instead of Flink's lines.
    #[arg(long)]
    pub json: bool,
}

/// The client for the API the arguments name, with the configured token. On a configuration
/// error, prints it and returns the exit code.
pub fn client(global: &GlobalArgs, args: &RemoteArgs) -> Result<Client, u8> {
    let loaded = super::load_conf(global, &args.dynamic)?;
    let c = &loaded.config;
    let endpoint = match &args.jobmanager {
        Some(m) => Endpoint::parse(m).map_err(|e| format!("-m/--jobmanager {e}")),
        None => Endpoint::parse(&format!("{}:{}", c.rest.address, c.rest.port)).map_err(|e| {
            format!("rest.address/rest.port {e}; fix the configuration or pass -m host:port")
        }),
    }
    .map_err(|e| {
        crate::errln!("error: {e}");
        EXIT_CONFIG
    })?;
    let token = RestOptions::from_config(c).resolve_token().map_err(|e| {
        crate::errln!("error: {e}");
        EXIT_CONFIG
    })?;
    Ok(Client::new(endpoint, token))
}

/// A job id as Flink's `JobID.fromHexString` takes it; on failure prints Flink's message.
pub fn job_id(given: &str) -> Result<JobId, u8> {
    let lower = given.trim().to_ascii_lowercase();
    if JobId::is_valid(&lower) {
        return Ok(JobId(lower));
    }
    crate::errln!(
        "Cannot parse JobID from \"{given}\". The expected format is [0-9a-fA-F]{{32}}, e.g. \
         fd72014d4c864993a2e5a9287b4a9c5d."
    );
    crate::errln!();
    crate::errln!("Use the help option (-h or --help) to get help on the command.");
    Err(EXIT_FAILURE)
}

/// Prints a usage problem as Flink does (the message, then the hint) and returns 1.
pub fn usage(message: &str) -> u8 {
    crate::errln!("{message}");
    crate::errln!();
    crate::errln!("Use the help option (-h or --help) to get help on the command.");
    EXIT_FAILURE
}

/// Prints `what` failed and why, and returns 1.
pub fn failed(what: &str, cause: &dyn std::fmt::Display) -> u8 {
    use crate::secrets::redact;
    crate::errln!("error: {}", redact(what));
    crate::errln!("  caused by: {}", redact(&cause.to_string()));
    EXIT_FAILURE
}

/// Prints JSON on stdout.
pub fn print_json(v: &Value) {
    crate::outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Why an asynchronous savepoint did not complete.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The operation completed with a `failure-cause`.
    #[error("{0}")]
    Failed(String),
    #[error(
        "the savepoint (trigger id {trigger}) was still in progress after {waited:?}; it may \
         still complete: look at `floe list` or the dashboard, or wait longer with --timeout"
    )]
    TimedOut { trigger: String, waited: Duration },
    #[error(
        "the floe at {addr} stopped answering while savepoint {trigger} was in progress \
         ({reason}); a stopped job's floe exits when the job ends, so the savepoint may well \
         have completed: look for the newest savepoint-* directory in the target directory \
         (`floe inspect` shows it)"
    )]
    Lost {
        addr: String,
        trigger: String,
        reason: String,
    },
    #[error("the API answered {path} with an unexpected document: {body}")]
    Unexpected { path: String, body: String },
}

/// The message of an operation's `failure-cause`, without Flink's exception class prefix.
pub fn failure_message(cause: &Value) -> String {
    let class = cause["class"].as_str().unwrap_or("");
    let trace = cause["stack-trace"].as_str().unwrap_or("");
    let first = trace.lines().next().unwrap_or("").trim();
    let message = first
        .strip_prefix(class)
        .and_then(|r| r.strip_prefix(": "))
        .unwrap_or(first);
    if message.is_empty() {
        "the operation failed without a message".into()
    } else {
        message.to_owned()
    }
}

/// Polls `GET /jobs/:id/savepoints/:trigger` until the operation completes; returns the
/// savepoint's location. The interval grows from 20 ms to 500 ms: quick savepoints answer
/// quickly, long ones do not make the CLI hammer the API. `timeout` None waits as long as the
/// API keeps answering (the job's checkpoint timeout bounds the savepoint itself).
pub fn wait_for_savepoint(
    client: &Client,
    job: &JobId,
    trigger: &str,
    timeout: Option<Duration>,
) -> Result<String, OperationError> {
    let path = format!("/jobs/{job}/savepoints/{trigger}");
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        let v = client.get(&path).map_err(|e| match e {
            // The trigger was accepted, so the API was there: it went away since.
            ClientError::Unreachable { addr, reason }
            | ClientError::Transport { addr, reason, .. } => OperationError::Lost {
                addr,
                trigger: trigger.to_owned(),
                reason,
            },
            other => OperationError::Client(other),
        })?;
        match v["status"]["id"].as_str() {
            Some("COMPLETED") => {
                let op = &v["operation"];
                if let Some(location) = op["location"].as_str() {
                    return Ok(location.to_owned());
                }
                if !op["failure-cause"].is_null() {
                    return Err(OperationError::Failed(failure_message(
                        &op["failure-cause"],
                    )));
                }
                return Err(OperationError::Unexpected {
                    path,
                    body: v.to_string(),
                });
            }
            Some("IN_PROGRESS") => {}
            _ => {
                return Err(OperationError::Unexpected {
                    path,
                    body: v.to_string(),
                })
            }
        }
        if let Some(limit) = timeout {
            if started.elapsed() >= limit {
                return Err(OperationError::TimedOut {
                    trigger: trigger.to_owned(),
                    waited: limit,
                });
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// The trigger id of a `202 {"request-id": …}` answer.
/// POSTs `body` to an operation that answers with a request id (a savepoint, a stop) and
/// returns the id; on failure prints `what` with the cause and returns the exit code.
pub fn post_trigger(client: &Client, path: &str, body: Value, what: &str) -> Result<String, u8> {
    client
        .post(path, &body)
        .map_err(OperationError::from)
        .and_then(|v| request_id(&v, path))
        .map_err(|e| failed(what, &e))
}

pub fn request_id(v: &Value, path: &str) -> Result<String, OperationError> {
    v["request-id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| OperationError::Unexpected {
            path: path.to_owned(),
            body: v.to_string(),
        })
}

/// A savepoint directory argument as the API should get it: a plain relative path is made
/// absolute from this shell's working directory (what a user means by `sp/`), not the
/// server's; URIs and absolute paths pass unchanged.
pub fn target_dir(given: &str) -> String {
    let p = std::path::Path::new(given);
    if given.contains(':') || p.is_absolute() {
        return given.to_owned();
    }
    std::path::absolute(p).map_or_else(|_| given.to_owned(), |a| a.display().to_string())
}

/// `dd.MM.yyyy HH:mm:ss` in UTC, the format of `flink list` (Flink uses the local zone; floe
/// has no time zone database and says UTC, as its `/config` does).
pub fn format_time(epoch_ms: u64) -> String {
    let secs = epoch_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{d:02}.{mo:02}.{y:04} {h:02}:{m:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_format_as_flink_list() {
        assert_eq!(format_time(0), "01.01.1970 00:00:00");
        // 2026-11-24 10:18:34.183 UTC
        assert_eq!(format_time(1_795_515_514_183), "24.11.2026 10:18:34");
        assert_eq!(format_time(951_782_400_000), "29.02.2000 00:00:00");
    }

    #[test]
    fn failure_messages_drop_the_exception_class() {
        let c = json!({"class": "org.apache.flink.util.FlinkException",
                       "stack-trace": "org.apache.flink.util.FlinkException: disk full\n\tat x"});
        assert_eq!(failure_message(&c), "disk full");
        let c = json!({"class": "X", "stack-trace": "something else"});
        assert_eq!(failure_message(&c), "something else");
        assert_eq!(
            failure_message(&json!({})),
            "the operation failed without a message"
        );
    }

    #[test]
    fn relative_targets_become_absolute_here() {
        assert_eq!(target_dir("file:///sp"), "file:///sp");
        assert_eq!(target_dir("/sp"), "/sp");
        let t = target_dir("sp");
        assert!(std::path::Path::new(&t).is_absolute(), "{t}");
        assert!(t.ends_with("sp"), "{t}");
    }
}
