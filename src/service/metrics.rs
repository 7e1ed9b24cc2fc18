//! `/metrics`: the jobs' counters in Prometheus' text format (version 0.0.4), written by hand
//! from job views. Pure: the caller passes the views and the time.
//!
//! Families (labels `job_id`, `job_name`, plus `operator` or `state`):
//! records in and out per operator; the job's state, uptime and restarts; checkpoints
//! completed, failed and in progress; the last completed checkpoint's id, duration, size and
//! age; the last restore's checkpoint id, time and whether it was a savepoint.

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
            let _ = writeln!(out, "{}{{{labels}}} {value}", self.name);
        }
    }
}

/// The text of `/metrics` for these jobs at `now_ms`.
pub fn render(jobs: &[JobView], now_ms: u64) -> String {
    let mut records_in = Family::new(
        "floe_operator_records_in_total",
        "counter",
        "Records an operator received, over all its subtasks.",
    );
    let mut records_out = Family::new(
        "floe_operator_records_out_total",
        "counter",
        "Records an operator emitted, over all its subtasks.",
    );
    let mut records_discarded = Family::new(
        "floe_operator_records_discarded_total",
        "counter",
        "Records an operator discarded: input that did not parse (on-error: drop), records too late for their window.",
    );
    let mut state = Family::new(
        "floe_job_state",
        "gauge",
        "1 for the job's current state (Flink's JobStatus names).",
    );
    let mut uptime = Family::new(
        "floe_job_uptime_seconds",
        "gauge",
        "Seconds since the job started (until it ended).",
    );
    let mut restarts = Family::new(
        "floe_job_restarts_total",
        "counter",
        "Failovers of the job (Flink's numRestarts).",
    );
    let mut completed = Family::new(
        "floe_checkpoints_completed_total",
        "counter",
        "Completed checkpoints (Flink's numberOfCompletedCheckpoints).",
    );
    let mut failed = Family::new(
        "floe_checkpoints_failed_total",
        "counter",
        "Failed checkpoints (Flink's numberOfFailedCheckpoints).",
    );
    let mut in_progress = Family::new(
        "floe_checkpoints_in_progress",
        "gauge",
        "Checkpoints triggered and not yet completed or failed.",
    );
    let mut last_id = Family::new(
        "floe_checkpoint_last_id",
        "gauge",
        "Id of the last completed checkpoint.",
    );
    let mut last_duration = Family::new(
        "floe_checkpoint_last_duration_seconds",
        "gauge",
        "End-to-end duration of the last completed checkpoint.",
    );
    let mut last_size = Family::new(
        "floe_checkpoint_last_size_bytes",
        "gauge",
        "Size of the last completed checkpoint.",
    );
    let mut last_age = Family::new(
        "floe_checkpoint_last_age_seconds",
        "gauge",
        "Seconds since the last checkpoint completed.",
    );
    let mut restore_id = Family::new(
        "floe_restore_checkpoint_id",
        "gauge",
        "Id of the checkpoint or savepoint the job last restored from.",
    );
    let mut restore_ts = Family::new(
        "floe_restore_timestamp_seconds",
        "gauge",
        "When the job last restored (Unix time; Flink's lastCheckpointRestoreTimestamp).",
    );
    let mut restore_sp = Family::new(
        "floe_restore_is_savepoint",
        "gauge",
        "1 when the job last restored from a savepoint, 0 from a checkpoint.",
    );
    let mut restored = Family::new(
        "floe_restores_total",
        "counter",
        "Restores of the job (at start and on failover).",
    );

    for j in jobs {
        let base = [("job_id", j.id.0.as_str()), ("job_name", j.name.as_str())];
        for op in &j.metrics.operators {
            let labels = [base[0], base[1], ("operator", op.id.0.as_str())];
            records_in.add(&labels, op.records_in() as f64);
            records_out.add(&labels, op.records_out() as f64);
            records_discarded.add(&labels, op.records_discarded() as f64);
        }
        for s in JobState::ALL {
            let labels = [base[0], base[1], ("state", s.flink_name())];
            state.add(&labels, if s == j.state { 1.0 } else { 0.0 });
        }
        let end = j.end_time.unwrap_or(now_ms);
        uptime.add(&base, end.saturating_sub(j.start_time) as f64 / 1000.0);
        restarts.add(&base, j.restarts as f64);
        restored.add(&base, j.restored_count as f64);
        if let Some(stats) = j.checkpoint_stats() {
            completed.add(&base, stats.completed as f64);
            failed.add(&base, (stats.failed + stats.skipped) as f64);
            in_progress.add(&base, stats.in_progress as f64);
            if let Some(c) = &stats.latest_completed {
                last_id.add(&base, c.id.0 as f64);
                last_duration.add(&base, c.duration_ms as f64 / 1000.0);
                last_size.add(&base, c.size as f64);
                let age = now_ms.saturating_sub(c.completion_timestamp_ms);
                last_age.add(&base, age as f64 / 1000.0);
            }
        }
        if let Some(r) = &j.restore {
            restore_id.add(&base, r.id as f64);
            restore_ts.add(&base, r.restore_timestamp as f64 / 1000.0);
            restore_sp.add(&base, if r.is_savepoint { 1.0 } else { 0.0 });
        }
    }

    let mut out = String::new();
    for f in [
        &records_in,
        &records_out,
        &records_discarded,
        &state,
        &uptime,
        &restarts,
        &restored,
        &completed,
        &failed,
        &in_progress,
        &last_id,
        &last_duration,
        &last_size,
        &last_age,
        &restore_id,
        &restore_ts,
        &restore_sp,
    ] {
        f.write(&mut out);
    }
    out
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
