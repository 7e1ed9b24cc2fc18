//! `/metrics`: the jobs' counters in Prometheus' text format (version 0.0.4), written by hand
//! from job views. Pure: the caller passes the views and the time.
//!
//! Families per job (labels `job_id`, `job_name`, plus `operator` or `state`): records in
//! and out per operator; the job's state, uptime, restarts and records per second;
//! checkpoints completed, failed and in progress; the last completed checkpoint's id,
//! duration, size and (while the job runs) age; the last restore's checkpoint id, time and
//! whether it was a savepoint.
//!
//! With `floe serve`, a pipeline's job is shown only while it is the pipeline's current
//! version, labelled `pipeline` (the file) and `job_name` instead of `job_id`, so its series
//! go on across reloads; the `floe_pipeline_*` families give each pipeline's readiness,
//! status, versions, reload errors, rollbacks, restarts and records per second. The
//! `process_*` families (Prometheus' standard names) give memory, CPU and open files.

use crate::checkpoint::JobId;
use crate::service::pipelines::PipelineEntry;
use crate::service::process::ProcessStats;
use crate::service::registry::{JobState, JobView};
use std::fmt::Write;

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        self.samples.push((labels.join(","), value));
    }

    fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{} {value}", self.name);
            } else {
                let _ = writeln!(out, "{}{{{labels}}} {value}", self.name);
            }
        }
    }
}

/// What `/metrics` shows: the jobs, `floe serve`'s pipelines (when serving), this process.
pub struct Sources<'a> {
    pub jobs: &'a [JobView],
    /// `None` for `floe run`.
    pub pipelines: Option<&'a [PipelineEntry]>,
    pub process: Option<ProcessStats>,
    pub now_ms: u64,
}

/// The text of `/metrics` for these jobs at `now_ms` (no pipelines, no process figures).
pub fn render(jobs: &[JobView], now_ms: u64) -> String {
    render_all(&Sources {
        jobs,
        pipelines: None,
        process: None,
        now_ms,
    })
}

/// The labels a job's series carry, or `None` when it is not shown: a pipeline's job is
/// shown only while it is the pipeline's current version, labelled by the pipeline file and
/// name (stable across reloads, unlike job ids); another job by its id and name.
fn job_labels<'a>(
    j: &'a JobView,
    pipelines: Option<&'a [PipelineEntry]>,
) -> Option<[(&'static str, &'a str); 2]> {
    match (pipelines, &j.notes.file) {
        (Some(ps), Some(file)) => {
            let current = ps
                .iter()
                .any(|p| &p.file == file && p.job.as_ref() == Some(&j.id));
            current.then_some([("pipeline", file.as_str()), ("job_name", j.name.as_str())])
        }
        _ => Some([("job_id", j.id.0.as_str()), ("job_name", j.name.as_str())]),
    }
}

/// The text of `/metrics`.
pub fn render_all(src: &Sources<'_>) -> String {
    let mut f = JobFamilies::new();
    for j in src.jobs {
        if let Some(base) = job_labels(j, src.pipelines) {
            f.add(j, &base, src.now_ms);
        }
    }
    let mut out = String::new();
    f.write(&mut out);
    if let Some(ps) = src.pipelines {
        pipeline_families(ps, src.jobs, &mut out);
    }
    if let Some(p) = &src.process {
        process_families(p, &mut out);
    }
    out
}

/// The per-job families.
struct JobFamilies {
    all: Vec<Family>,
}

// Indices into `JobFamilies::all`, in output order.
const RECORDS_IN: usize = 0;
const RECORDS_OUT: usize = 1;
const RECORDS_DISCARDED: usize = 2;
const STATE: usize = 3;
const UPTIME: usize = 4;
const RESTARTS: usize = 5;
const RESTORED: usize = 6;
const RATE: usize = 7;
const COMPLETED: usize = 8;
const FAILED: usize = 9;
const IN_PROGRESS: usize = 10;
const LAST_ID: usize = 11;
const LAST_DURATION: usize = 12;
const LAST_SIZE: usize = 13;
const LAST_AGE: usize = 14;
const RESTORE_ID: usize = 15;
const RESTORE_TS: usize = 16;
const RESTORE_SP: usize = 17;

impl JobFamilies {
    fn new() -> Self {
        let f = Family::new;
        JobFamilies {
            all: vec![
                f("floe_operator_records_in_total", "counter", "Records an operator received, over all its subtasks."),
                f("floe_operator_records_out_total", "counter", "Records an operator emitted, over all its subtasks."),
                f("floe_operator_records_discarded_total", "counter", "Records an operator discarded: input that did not parse (on-error: drop), records too late for their window."),
                f("floe_job_state", "gauge", "1 for the job's current state (Flink's JobStatus names)."),
                f("floe_job_uptime_seconds", "gauge", "Seconds since the job started (until it ended)."),
                f("floe_job_restarts_total", "counter", "Failovers of the job (Flink's numRestarts)."),
                f("floe_restores_total", "counter", "Restores of the job (at start and on failover)."),
                f("floe_job_records_per_second", "gauge", "Records the job's sources emitted per second, over the last second."),
                f("floe_checkpoints_completed_total", "counter", "Completed checkpoints (Flink's numberOfCompletedCheckpoints)."),
                f("floe_checkpoints_failed_total", "counter", "Failed checkpoints (Flink's numberOfFailedCheckpoints)."),
                f("floe_checkpoints_in_progress", "gauge", "Checkpoints triggered and not yet completed or failed."),
                f("floe_checkpoint_last_id", "gauge", "Id of the last completed checkpoint."),
                f("floe_checkpoint_last_duration_seconds", "gauge", "End-to-end duration of the last completed checkpoint."),
                f("floe_checkpoint_last_size_bytes", "gauge", "Size of the last completed checkpoint."),
                f("floe_checkpoint_last_age_seconds", "gauge", "Seconds since the last checkpoint completed (running jobs only)."),
                f("floe_restore_checkpoint_id", "gauge", "Id of the checkpoint or savepoint the job last restored from."),
                f("floe_restore_timestamp_seconds", "gauge", "When the job last restored (Unix time; Flink's lastCheckpointRestoreTimestamp)."),
                f("floe_restore_is_savepoint", "gauge", "1 when the job last restored from a savepoint, 0 from a checkpoint."),
            ],
        }
    }

    fn add(&mut self, j: &JobView, base: &[(&str, &str); 2], now_ms: u64) {
        let a = &mut self.all;
        for op in &j.metrics.operators {
            let labels = [base[0], base[1], ("operator", op.id.0.as_str())];
            a[RECORDS_IN].add(&labels, op.records_in() as f64);
            a[RECORDS_OUT].add(&labels, op.records_out() as f64);
            a[RECORDS_DISCARDED].add(&labels, op.records_discarded() as f64);
        }
        for s in JobState::ALL {
            let labels = [base[0], base[1], ("state", s.flink_name())];
            a[STATE].add(&labels, if s == j.state { 1.0 } else { 0.0 });
        }
        let end = j.end_time.unwrap_or(now_ms);
        a[UPTIME].add(base, end.saturating_sub(j.start_time) as f64 / 1000.0);
        a[RESTARTS].add(base, j.restarts as f64);
        a[RESTORED].add(base, j.restored_count as f64);
        a[RATE].add(base, j.records_per_second);
        if let Some(stats) = j.checkpoint_stats() {
            a[COMPLETED].add(base, stats.completed as f64);
            a[FAILED].add(base, (stats.failed + stats.skipped) as f64);
            a[IN_PROGRESS].add(base, stats.in_progress as f64);
            if let Some(c) = &stats.latest_completed {
                a[LAST_ID].add(base, c.id.0 as f64);
                a[LAST_DURATION].add(base, c.duration_ms as f64 / 1000.0);
                a[LAST_SIZE].add(base, c.size as f64);
                // An ended job takes no more checkpoints: an ever-rising age would alarm.
                if !j.state.is_terminal() {
                    let age = now_ms.saturating_sub(c.completion_timestamp_ms);
                    a[LAST_AGE].add(base, age as f64 / 1000.0);
                }
            }
        }
        if let Some(r) = &j.restore {
            a[RESTORE_ID].add(base, r.id as f64);
            a[RESTORE_TS].add(base, r.restore_timestamp as f64 / 1000.0);
            a[RESTORE_SP].add(base, if r.is_savepoint { 1.0 } else { 0.0 });
        }
    }

    fn write(&self, out: &mut String) {
        for f in &self.all {
            f.write(out);
        }
    }
}

/// The statuses `floe_pipeline_status` lists (see `pipelines::status`).
const PIPELINE_STATUSES: [&str; 9] = [
    "INITIALIZING",
    "RUNNING",
    "RESTARTING",
    "FAILED",
    "FINISHED",
    "CANCELED",
    "STOPPED",
    "INVALID",
    "SUSPENDED",
];

fn pipeline_families(ps: &[PipelineEntry], jobs: &[JobView], out: &mut String) {
    let f = Family::new;
    let mut ready = f("floe_pipeline_ready", "gauge", "1 when the pipeline runs its file's current content, or a user stopped or cancelled it (what /readyz checks).");
    let mut status = f("floe_pipeline_status", "gauge", "1 for the pipeline's status: its current version's state, STOPPED or CANCELED by a user, INVALID.");
    let mut versions = f(
        "floe_pipeline_versions_total",
        "counter",
        "Versions (jobs) of the pipeline started: the first, each reload, each rollback.",
    );
    let mut reload_errors = f(
        "floe_pipeline_reload_errors_total",
        "counter",
        "Edits of the pipeline's file refused or rolled back.",
    );
    let mut rollbacks = f(
        "floe_pipeline_rollbacks_total",
        "counter",
        "New versions that failed within their probation, the version before brought back.",
    );
    let mut restarts = f(
        "floe_pipeline_restarts_total",
        "counter",
        "Failovers of the pipeline's versions, over every version listed.",
    );
    let mut rate = f(
        "floe_pipeline_records_per_second",
        "gauge",
        "Records the pipeline's sources emit per second (current version).",
    );
    for p in ps {
        let job = p
            .job
            .as_ref()
            .and_then(|id| jobs.iter().find(|j| &j.id == id));
        let name = p.name.as_deref().unwrap_or("");
        let base = [("pipeline", p.file.as_str()), ("name", name)];
        let ok = crate::service::pipelines::readiness(p, job).is_ok();
        ready.add(&base, if ok { 1.0 } else { 0.0 });
        let now = crate::service::pipelines::status(p, job);
        for s in PIPELINE_STATUSES {
            let labels = [base[0], base[1], ("status", s)];
            status.add(&labels, if s == now { 1.0 } else { 0.0 });
        }
        versions.add(&base, p.versions_started as f64);
        reload_errors.add(&base, p.reload_errors as f64);
        rollbacks.add(&base, p.rollbacks as f64);
        let restarts_of = |id: &JobId| jobs.iter().find(|j| &j.id == id).map_or(0, |j| j.restarts);
        restarts.add(
            &base,
            crate::service::pipelines::restarts_total(p, restarts_of) as f64,
        );
        rate.add(&base, job.map_or(0.0, |j| j.records_per_second));
    }
    for fam in [
        &ready,
        &status,
        &versions,
        &reload_errors,
        &rollbacks,
        &restarts,
        &rate,
    ] {
        fam.write(out);
    }
}

fn process_families(p: &ProcessStats, out: &mut String) {
    let f = Family::new;
    let one = |mut fam: Family, v: f64, out: &mut String| {
        fam.add(&[], v);
        fam.write(out);
    };
    one(
        f(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        ),
        p.resident_bytes as f64,
        out,
    );
    one(
        f(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
        ),
        p.virtual_bytes as f64,
        out,
    );
    one(
        f(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        ),
        p.cpu_seconds,
        out,
    );
    one(
        f(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        ),
        p.open_fds as f64,
        out,
    );
    if let Some(m) = p.max_fds {
        one(
            f(
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
            ),
            m as f64,
            out,
        );
    }
    one(
        f(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        ),
        p.start_time,
        out,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
    }

    #[test]
    fn no_jobs_no_samples() {
        assert_eq!(render(&[], 0), "");
    }
}
