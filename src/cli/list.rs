//! `floe list [-r] [-s] [-a] [-m host:port]`: the jobs of a running floe, from
//! `GET /jobs/overview`, printed as `flink list` prints them.

use super::client::Client;
use super::remote::{self, RemoteArgs};
use super::{GlobalArgs, EXIT_FAILURE};
use clap::Args;
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Show only running and restarting jobs.
    #[arg(short = 'r', long = "running")]
    pub running: bool,
    /// Show only scheduled (created, initializing) jobs.
    #[arg(short = 's', long = "scheduled")]
    pub scheduled: bool,
    /// Show all jobs, the finished, cancelled and failed ones too.
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

const RUNNING_HEADER: &str = "------------------ Running/Restarting Jobs -------------------";
const SCHEDULED_HEADER: &str = "----------------------- Scheduled Jobs -----------------------";
const TERMINATED_HEADER: &str = "---------------------- Terminated Jobs -----------------------";
const FOOTER: &str = "--------------------------------------------------------------";

/// Where `flink list` puts a job of `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Running,
    Scheduled,
    Terminated,
}

fn group(state: &str) -> Group {
    match state {
        "CREATED" | "INITIALIZING" => Group::Scheduled,
        "FINISHED" | "CANCELED" | "FAILED" | "SUSPENDED" => Group::Terminated,
        _ => Group::Running,
    }
}

/// Which groups the flags select, as `flink list`: none given is running and scheduled.
fn selected(args: &ListArgs) -> Vec<Group> {
    if args.all {
        return vec![Group::Running, Group::Scheduled, Group::Terminated];
    }
    let mut g = Vec::new();
    if args.running || !args.scheduled {
        g.push(Group::Running);
    }
    if args.scheduled || !args.running {
        g.push(Group::Scheduled);
    }
    g
}

/// The lines `flink list` prints for the jobs of `/jobs/overview` (after `Waiting for
/// response...`). Jobs in a group are ordered by start time.
fn render(jobs: &[Value], groups: &[Group]) -> String {
    let mut out = String::new();
    for g in groups {
        let mut in_group: Vec<&Value> = jobs
            .iter()
            .filter(|j| group(j["state"].as_str().unwrap_or("")) == *g)
            .collect();
        in_group.sort_by_key(|j| j["start-time"].as_u64().unwrap_or(0));
        let (header, none) = match g {
            Group::Running => (RUNNING_HEADER, "No running jobs."),
            Group::Scheduled => (SCHEDULED_HEADER, "No scheduled jobs."),
            Group::Terminated => (TERMINATED_HEADER, "No terminated jobs."),
        };
        if in_group.is_empty() {
            out.push_str(none);
            out.push('\n');
            continue;
        }
        out.push_str(header);
        out.push('\n');
        for j in in_group {
            out.push_str(&format!(
                "{} : {} : {} ({})\n",
                remote::format_time(j["start-time"].as_u64().unwrap_or(0)),
                j["jid"].as_str().unwrap_or("?"),
                j["name"].as_str().unwrap_or(""),
                j["state"].as_str().unwrap_or("?"),
            ));
        }
        out.push_str(FOOTER);
        out.push('\n');
    }
    out
}

pub fn list(global: &GlobalArgs, args: ListArgs) -> u8 {
    let client = match remote::client(global, &args.remote) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !args.remote.json {
        crate::outln!("Waiting for response...");
    }
    match fetch(&client) {
        Ok(jobs) => {
            let groups = selected(&args);
            if args.remote.json {
                let chosen: Vec<&Value> = jobs
                    .iter()
                    .filter(|j| groups.contains(&group(j["state"].as_str().unwrap_or(""))))
                    .collect();
                remote::print_json(&json!({ "jobs": chosen }));
            } else {
                crate::stdio::out(&render(&jobs, &groups));
            }
            0
        }
        Err(e) => {
            remote::failed("Failed to retrieve the job list.", &e);
            EXIT_FAILURE
        }
    }
}

fn fetch(client: &Client) -> Result<Vec<Value>, String> {
    let v = client.get("/jobs/overview").map_err(|e| e.to_string())?;
    v["jobs"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("/jobs/overview has no \"jobs\" list: {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: char, name: &str, state: &str, start: u64) -> Value {
        json!({"jid": id.to_string().repeat(32), "name": name, "state": state, "start-time": start})
    }

    #[test]
    fn renders_as_flink_list() {
        let jobs = vec![
            job('b', "later", "RUNNING", 1_795_515_515_000),
            job('a', "counter-job-counter", "RUNNING", 1_795_515_514_183),
            job('c', "done", "FINISHED", 1),
        ];
        let groups = [Group::Running, Group::Scheduled];
        assert_eq!(
            render(&jobs, &groups),
            format!(
                "{RUNNING_HEADER}\n\
                 24.11.2026 10:18:34 : {} : counter-job-counter (RUNNING)\n\
                 24.11.2026 10:18:35 : {} : later (RUNNING)\n\
                 {FOOTER}\n\
                 No scheduled jobs.\n",
                "a".repeat(32),
                "b".repeat(32)
            )
        );
        assert_eq!(
            render(&[], &[Group::Running, Group::Scheduled, Group::Terminated]),
            "No running jobs.\nNo scheduled jobs.\nNo terminated jobs.\n"
        );
        let all = render(&jobs, &[Group::Terminated]);
        assert!(all.starts_with(TERMINATED_HEADER), "{all}");
        assert!(all.contains(": done (FINISHED)"), "{all}");
    }

    #[test]
    fn headers_are_as_wide_as_flinks() {
        for h in [RUNNING_HEADER, SCHEDULED_HEADER, TERMINATED_HEADER, FOOTER] {
            assert_eq!(h.len(), 62, "{h}");
        }
    }

    #[test]
    fn flags_select_groups_as_flink() {
        let args = |r, s, a| ListArgs {
            running: r,
            scheduled: s,
            all: a,
            remote: RemoteArgs {
                jobmanager: None,
                dynamic: Vec::new(),
                json: false,
            },
        };
        assert_eq!(
            selected(&args(false, false, false)),
            [Group::Running, Group::Scheduled]
        );
        assert_eq!(selected(&args(true, false, false)), [Group::Running]);
        assert_eq!(selected(&args(false, true, false)), [Group::Scheduled]);
        assert_eq!(selected(&args(false, false, true)).len(), 3);
        assert_eq!(group("RESTARTING"), Group::Running);
        assert_eq!(group("CANCELLING"), Group::Running);
    }
}
