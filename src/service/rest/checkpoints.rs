//! `/jobs/:id/checkpoints` and `/jobs/:id/checkpoints/config`: Flink's
//! `CheckpointingStatistics` and `CheckpointConfigInfo`, built as pure functions of a job's
//! view and statistics (docs/architecture.md#rest-api-shapes).
//!
//! Where floe keeps less than Flink, the gap is filled the way Flink would show it for a
//! full, aligned checkpoint: `state_size` equals `checkpointed_size`, the unaligned-data sizes
//! are 0, and percentiles come from the completed checkpoints in the recent history.

use crate::checkpoint::coordinator::{CheckpointStats, HistoryEntry, MinMaxSum};
use crate::config::{CheckpointStorageKind, CheckpointingMode, ExternalizedRetention};
use crate::service::registry::{JobView, SavepointRecord};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Flink's `CheckpointStatistics`, fields in the order Flink emits them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckpointStatistics {
    #[serde(rename = "className")]
    pub class_name: &'static str,
    pub id: u64,
    pub status: &'static str,
    pub is_savepoint: bool,
    #[serde(rename = "savepointFormat")]
    pub savepoint_format: Option<&'static str>,
    pub trigger_timestamp: i64,
    pub latest_ack_timestamp: i64,
    pub checkpointed_size: u64,
    pub state_size: u64,
    pub end_to_end_duration: u64,
    pub alignment_buffered: u64,
    pub processed_data: u64,
    pub persisted_data: u64,
    pub num_subtasks: u32,
    pub num_acknowledged_subtasks: u32,
    pub checkpoint_type: &'static str,
    pub tasks: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discarded: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_timestamp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
}

/// A checkpoint path as Flink reports it: `file:/abs/path`.
pub fn external_path(path: &std::path::Path) -> String {
    if crate::checkpoint::storage::is_object_path(path) {
        return path.display().to_string(); // s3://bucket/... as it is
    }
    format!("file:{}", path.display())
}

fn completed_entry(
    c: &crate::checkpoint::coordinator::CompletedStats,
    subtasks: u32,
    discarded: bool,
) -> CheckpointStatistics {
    CheckpointStatistics {
        class_name: "completed",
        id: c.id.0,
        status: "COMPLETED",
        is_savepoint: false,
        savepoint_format: None,
        trigger_timestamp: c.trigger_timestamp_ms as i64,
        latest_ack_timestamp: c.completion_timestamp_ms as i64,
        checkpointed_size: c.size,
        state_size: c.size,
        end_to_end_duration: c.duration_ms,
        alignment_buffered: 0,
        processed_data: 0,
        persisted_data: 0,
        num_subtasks: subtasks,
        num_acknowledged_subtasks: subtasks,
        checkpoint_type: "CHECKPOINT",
        tasks: Map::new(),
        external_path: Some(external_path(&c.path)),
        discarded: Some(discarded),
        failure_timestamp: None,
        failure_message: None,
    }
}

fn failed_entry(
    f: &crate::checkpoint::coordinator::FailedStats,
    subtasks: u32,
) -> CheckpointStatistics {
    CheckpointStatistics {
        class_name: "failed",
        id: f.id.0,
        status: "FAILED",
        is_savepoint: false,
        savepoint_format: None,
        // floe's statistics keep no trigger time for a failed checkpoint.
        trigger_timestamp: f.failure_timestamp_ms as i64,
        latest_ack_timestamp: -1,
        checkpointed_size: 0,
        state_size: 0,
        end_to_end_duration: 0,
        alignment_buffered: 0,
        processed_data: 0,
        persisted_data: 0,
        num_subtasks: subtasks,
        num_acknowledged_subtasks: 0,
        checkpoint_type: "CHECKPOINT",
        tasks: Map::new(),
        external_path: None,
        discarded: None,
        failure_timestamp: Some(f.failure_timestamp_ms),
        failure_message: Some(f.reason.clone()),
    }
}

fn savepoint_entry(s: &SavepointRecord, subtasks: u32) -> CheckpointStatistics {
    CheckpointStatistics {
        class_name: "completed",
        id: s.id,
        status: "COMPLETED",
        is_savepoint: true,
        savepoint_format: Some("CANONICAL"),
        trigger_timestamp: s.trigger_timestamp as i64,
        latest_ack_timestamp: s.completion_timestamp as i64,
        checkpointed_size: s.size,
        state_size: s.size,
        end_to_end_duration: s.completion_timestamp.saturating_sub(s.trigger_timestamp),
        alignment_buffered: 0,
        processed_data: 0,
        persisted_data: 0,
        num_subtasks: subtasks,
        num_acknowledged_subtasks: subtasks,
        checkpoint_type: if s.synchronous {
            "SYNC_SAVEPOINT"
        } else {
            "SAVEPOINT"
        },
        tasks: Map::new(),
        external_path: Some(s.location.clone()),
        // Savepoints are never subsumed or deleted by retention.
        discarded: Some(false),
        failure_timestamp: None,
        failure_message: None,
    }
}

/// A completed savepoint of the job's statistics as the API's record of it.
fn savepoint_record(s: &crate::checkpoint::coordinator::SavepointStats) -> Option<SavepointRecord> {
    let c = s.outcome.as_ref().ok()?;
    Some(SavepointRecord {
        id: c.id.0,
        location: external_path(&c.path),
        size: c.size,
        trigger_timestamp: c.trigger_timestamp_ms,
        completion_timestamp: c.completion_timestamp_ms,
        synchronous: s.kind == crate::checkpoint::coordinator::SnapshotStatsKind::SyncSavepoint,
    })
}

/// The history, newest first: the statistics' entries and the savepoints taken through the
/// API, at most `limit`. A completed checkpoint older than the newest `num_retained`
/// completed checkpoints has been subsumed: `discarded: true`.
pub fn history(
    stats: &CheckpointStats,
    savepoints: &[SavepointRecord],
    subtasks: u32,
    num_retained: u32,
    limit: usize,
) -> Vec<CheckpointStatistics> {
    let mut out: Vec<CheckpointStatistics> = Vec::new();
    let mut retained_seen = 0u32;
    let savepoint_of = |id: u64| savepoints.iter().find(|s| s.id == id);
    for e in stats.history.iter().rev() {
        match e {
            HistoryEntry::Completed(c) => match savepoint_of(c.id.0) {
                Some(s) => out.push(savepoint_entry(s, subtasks)),
                None => {
                    let discarded = retained_seen >= num_retained;
                    retained_seen += 1;
                    out.push(completed_entry(c, subtasks, discarded));
                }
            },
            HistoryEntry::Failed(f) => out.push(failed_entry(f, subtasks)),
            HistoryEntry::Savepoint(sp) => match (&sp.outcome, savepoint_of(sp.id().0)) {
                (_, Some(s)) => out.push(savepoint_entry(s, subtasks)),
                (Ok(_), None) => {
                    if let Some(r) = savepoint_record(sp) {
                        out.push(savepoint_entry(&r, subtasks));
                    }
                }
                (Err(f), None) => {
                    let mut e = failed_entry(f, subtasks);
                    e.is_savepoint = true;
                    e.savepoint_format = Some("CANONICAL");
                    e.checkpoint_type = sp.kind.flink_type();
                    out.push(e);
                }
            },
        }
    }
    for s in savepoints {
        if !out.iter().any(|e| e.id == s.id) {
            out.push(savepoint_entry(s, subtasks));
        }
    }
    // Stable: a failed and a completed entry never share an id, and equal ids keep the
    // statistics' order.
    out.sort_by_key(|e| std::cmp::Reverse(e.id));
    out.truncate(limit);
    out
}

/// Percentile with commons-math's default estimation (Flink's `DescriptiveStatisticsHistogram`):
/// position `p * (n + 1)`, interpolated between the neighbouring sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let pos = p * (n as f64 + 1.0);
    if pos < 1.0 {
        return sorted[0] as f64;
    }
    if pos >= n as f64 {
        return sorted[n - 1] as f64;
    }
    let lower = sorted[pos.floor() as usize - 1] as f64;
    let upper = sorted[pos.floor() as usize] as f64;
    lower + (pos - pos.floor()) * (upper - lower)
}

/// Flink's `StatsSummaryDto`: min, max, avg over all completed checkpoints; percentiles over
/// `sample` (the recent ones).
pub fn summary(all: &MinMaxSum, sample: &[u64]) -> Value {
    let mut sorted = sample.to_vec();
    sorted.sort_unstable();
    json!({
        "min": all.min,
        "max": all.max,
        "avg": all.avg(),
        "p50": percentile(&sorted, 0.5),
        "p90": percentile(&sorted, 0.9),
        "p95": percentile(&sorted, 0.95),
        "p99": percentile(&sorted, 0.99),
        "p999": percentile(&sorted, 0.999),
    })
}

/// `GET /jobs/:id/checkpoints`.
pub fn checkpoints_json(v: &JobView, stats: &CheckpointStats) -> Value {
    let subtasks = v.total_subtasks();
    let limit = v.config.checkpointing.history as usize;
    let completed: Vec<&crate::checkpoint::coordinator::CompletedStats> = stats
        .history
        .iter()
        .filter_map(|e| match e {
            HistoryEntry::Completed(c) => Some(c),
            HistoryEntry::Failed(_) | HistoryEntry::Savepoint(_) => None,
        })
        .collect();
    let sizes: Vec<u64> = completed.iter().map(|c| c.size).collect();
    let durations: Vec<u64> = completed.iter().map(|c| c.duration_ms).collect();
    let zero = summary(&MinMaxSum::default(), &[]);
    // The latest completed checkpoint is always retained (num-retained >= 1).
    let latest_completed = stats
        .latest_completed
        .as_ref()
        .map(|c| completed_entry(c, subtasks, false));
    let from_stats = stats.latest_savepoint.as_ref().and_then(savepoint_record);
    let latest_savepoint = match (v.savepoints.last(), from_stats) {
        (Some(a), Some(b)) if b.id > a.id => Some(savepoint_entry(&b, subtasks)),
        (Some(a), _) => Some(savepoint_entry(a, subtasks)),
        (None, b) => b.map(|b| savepoint_entry(&b, subtasks)),
    };
    let latest_failed = stats
        .latest_failed
        .as_ref()
        .map(|f| failed_entry(f, subtasks));
    let restored = v.restore.as_ref().map(|r| {
        json!({
            "id": r.id,
            "restore_timestamp": r.restore_timestamp,
            "is_savepoint": r.is_savepoint,
            "external_path": r.external_path,
        })
    });
    json!({
        "counts": {
            "restored": v.restored_count,
            // Triggers skipped because a task had finished count as failed in Flink's
            // counts, though not towards the tolerable-failure limit.
            "total": stats.triggered + stats.skipped,
            "in_progress": stats.in_progress,
            "completed": stats.completed,
            "failed": stats.failed + stats.skipped,
        },
        "summary": {
            "checkpointed_size": summary(&stats.size_bytes, &sizes),
            "state_size": summary(&stats.size_bytes, &sizes),
            "end_to_end_duration": summary(&stats.duration_ms, &durations),
            "alignment_buffered": zero,
            "processed_data": zero,
            "persisted_data": zero,
        },
        "latest": {
            "completed": latest_completed,
            "savepoint": latest_savepoint,
            "failed": latest_failed,
            "restored": restored,
        },
        "history": history(stats, &v.savepoints, subtasks, v.config.state.num_retained, limit),
    })
}

/// `GET /jobs/:id/checkpoints/details/:checkpointid`: one entry of the history (or the
/// latest completed or failed one); `None` when it aged out or never existed.
pub fn checkpoint_details_json(v: &JobView, stats: &CheckpointStats, id: u64) -> Option<Value> {
    let subtasks = v.total_subtasks();
    let all = history(
        stats,
        &v.savepoints,
        subtasks,
        v.config.state.num_retained,
        usize::MAX,
    );
    let found = all.into_iter().find(|e| e.id == id).or_else(|| {
        stats
            .latest_completed
            .as_ref()
            .filter(|c| c.id.0 == id)
            .map(|c| completed_entry(c, subtasks, false))
            .or_else(|| {
                stats
                    .latest_failed
                    .as_ref()
                    .filter(|f| f.id.0 == id)
                    .map(|f| failed_entry(f, subtasks))
            })
    })?;
    serde_json::to_value(found).ok()
}

/// `GET /jobs/:id/checkpoints/config` (Flink's `CheckpointConfigInfo`).
pub fn checkpoint_config_json(v: &JobView) -> Value {
    let c = &v.config.checkpointing;
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let checkpoint_storage = match v.config.state.effective_storage() {
        CheckpointStorageKind::FileSystem => "FileSystemCheckpointStorage",
        CheckpointStorageKind::JobManager => "JobManagerCheckpointStorage",
    };
    json!({
        "mode": match c.mode {
            CheckpointingMode::ExactlyOnce => "exactly_once",
            CheckpointingMode::AtLeastOnce => "at_least_once",
        },
        "interval": c.interval.map_or(i64::MAX as u64, ms),
        "timeout": ms(c.timeout),
        "min_pause": ms(c.min_pause),
        "max_concurrent": c.max_concurrent,
        "externalization": {
            "enabled": c.externalized_retention != ExternalizedRetention::NoExternalizedCheckpoints,
            "delete_on_cancellation":
                c.externalized_retention == ExternalizedRetention::DeleteOnCancellation,
        },
        // floe keeps keyed state on the heap, as Flink's hashmap backend.
        "state_backend": "HashMapStateBackend",
        "checkpoint_storage": checkpoint_storage,
        "unaligned_checkpoints": c.unaligned,
        "tolerable_failed_checkpoints": c.tolerable_failed,
        "aligned_checkpoint_timeout": ms(c.aligned_checkpoint_timeout),
        "checkpoints_after_tasks_finish": c.checkpoints_after_tasks_finish,
        "state_changelog_enabled": false,
        "changelog_periodic_materialization_interval": 600000,
        "changelog_storage": "memory",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::coordinator::{CompletedStats, FailedStats};
    use crate::checkpoint::CheckpointId;

    fn done(id: u64) -> CompletedStats {
        CompletedStats {
            id: CheckpointId(id),
            path: format!("/ck/j/chk-{id}").into(),
            size: 100 * id,
            duration_ms: 10 * id,
            trigger_timestamp_ms: 1000 * id,
            completion_timestamp_ms: 1000 * id + 10 * id,
        }
    }

    #[test]
    fn percentiles_follow_commons_math() {
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[7], 0.5), 7.0);
        let v = [1, 2, 3, 4];
        assert_eq!(percentile(&v, 0.5), 2.5);
        assert_eq!(percentile(&v, 0.9), 4.0);
        assert_eq!(percentile(&v, 0.1), 1.0);
    }

    #[test]
    fn history_is_newest_first_with_subsumed_and_savepoints_marked() {
        let mut s = CheckpointStats::default();
        for id in 1..=3 {
            s.on_triggered();
            s.on_completed(done(id));
        }
        s.on_triggered();
        s.on_failed(
            FailedStats {
                id: CheckpointId(4),
                reason: "Checkpoint expired before completing.".into(),
                failure_timestamp_ms: 5000,
            },
            1,
        );
        let sp = SavepointRecord {
            id: 5,
            location: "file:/sp/savepoint-aaaaaa-bbbbbbbbbbbb".into(),
            size: 42,
            trigger_timestamp: 6000,
            completion_timestamp: 6050,
            synchronous: false,
        };
        let h = history(&s, &[sp], 4, 1, 10);
        let ids: Vec<u64> = h.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![5, 4, 3, 2, 1]);
        assert!(h[0].is_savepoint);
        assert_eq!(h[0].checkpoint_type, "SAVEPOINT");
        assert_eq!(h[1].status, "FAILED");
        assert_eq!(h[1].latest_ack_timestamp, -1);
        assert_eq!(h[2].discarded, Some(false), "newest retained");
        assert_eq!(h[3].discarded, Some(true), "subsumed");
        assert_eq!(history(&s, &[], 4, 1, 2).len(), 2);
    }
}
