//! The offline view behind `floe inspect PATH [--json]`: what a checkpoint or savepoint holds
//! (id, kind, times, job, operators with parallelism and max parallelism, per subtask the
//! key-group range, state size, inline or which files, entries, source positions), or, for a
//! job directory, the retained checkpoints with id, time and size.
//!
//! Reads `_metadata` only (it holds the key-group index and sizes), never the state files:
//! inspecting a large checkpoint is instant, and a missing state file shows up in a restore,
//! as in Flink. Must not write anything.

use crate::checkpoint::metadata::{
    BlobLocation, CheckpointMetadata, KeyedStateHandle, SnapshotKind, StateBlob,
};
use crate::checkpoint::storage::{self, LoadedSnapshot};
use crate::checkpoint::CheckpointError;
use crate::operators::sinks::state::SinkState;
use crate::operators::sources::{KafkaOffset, SourcePosition};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// What `floe inspect` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InspectReport {
    /// A checkpoint or savepoint (its directory or its `_metadata`).
    Snapshot(SnapshotReport),
    /// A job directory (`<dir>/<job-id>`) and its retained checkpoints.
    JobDir(JobDirReport),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotReport {
    /// The checkpoint or savepoint directory.
    pub path: String,
    pub checkpoint_id: u64,
    /// `checkpoint` or `savepoint`.
    pub kind: &'static str,
    pub job_id: String,
    pub job_name: String,
    pub trigger_timestamp_ms: u64,
    pub completion_timestamp_ms: u64,
    pub metadata_bytes: u64,
    /// Bytes of all state blobs referenced (inline and files).
    pub state_size: u64,
    pub operators: Vec<OperatorReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperatorReport {
    pub operator_id: String,
    pub parallelism: u32,
    pub max_parallelism: u32,
    pub state_size: u64,
    pub subtasks: Vec<SubtaskReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubtaskReport {
    pub subtask: u32,
    /// Inclusive key-group range of keyed state.
    pub key_groups: Option<[u32; 2]>,
    pub state_size: u64,
    /// Entries over all blobs (in a chain, deltas count their changes and deletions).
    pub entries: u64,
    /// `full` or `incremental` for keyed state; `None` without keyed state.
    pub keyed: Option<&'static str>,
    /// The blobs, a chain's in order (full first).
    pub blobs: Vec<BlobReport>,
    pub source: Option<SourceReport>,
    /// A transactional sink's parts to commit on restore (the `file` sink's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkReport>,
    /// Operator state of another kind: its format and size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other: Option<String>,
}

/// A transactional sink's state: what a restore commits, where numbering continues.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkReport {
    /// The part numbers a restore commits (`part-<subtask>-<n>`).
    pub pending_parts: Vec<u64>,
    pub next_part: u64,
    /// The `file` sink's part in progress at the barrier and the bytes of it the snapshot
    /// covers: `[part, length]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<[u64; 2]>,
    /// The `kafka` sink (`None` for the `file` sink): the transactional ids a restore
    /// commits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_transactions: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlobReport {
    /// `inline`, `exclusive` (a file in the checkpoint's directory) or `shared` (in the
    /// job's `shared/`).
    pub location: &'static str,
    /// The file's name relative to the checkpoint directory (`<uuid>` or `../shared/<uuid>`).
    pub file: Option<String>,
    pub size: u64,
    pub key_groups: usize,
    pub entries: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceReport {
    Datagen {
        next_line: u64,
    },
    Files {
        files: Vec<FileOffset>,
    },
    /// The `kafka` source: the next offset per partition.
    Kafka {
        partitions: Vec<KafkaOffset>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileOffset {
    pub path: String,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDirReport {
    pub path: String,
    /// Retained checkpoints, newest first.
    pub checkpoints: Vec<CheckpointSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointSummary {
    pub checkpoint_id: u64,
    pub path: String,
    /// `None` when the `_metadata` could not be read (see `error`).
    pub completion_timestamp_ms: Option<u64>,
    /// `_metadata` plus the state files it references.
    pub size: Option<u64>,
    pub error: Option<String>,
}

/// Inspects a checkpoint or savepoint directory, a `_metadata` file, or a job directory.
pub fn inspect(given: impl AsRef<Path>) -> Result<InspectReport, CheckpointError> {
    let given = given.as_ref();
    let dir = storage::Location::parse(given)?;
    // A directory that is not itself a checkpoint but holds some: a job directory. Anything
    // else goes to `load`, which gives Flink's messages.
    if storage::looks_like_job_dir(&dir)? {
        return job_dir_report(&dir).map(InspectReport::JobDir);
    }
    let loaded = storage::load(given)?;
    Ok(InspectReport::Snapshot(snapshot_report(&loaded)))
}

fn job_dir_report(dir: &storage::Location) -> Result<JobDirReport, CheckpointError> {
    let mut checkpoints = Vec::new();
    for (id, chk) in storage::list_checkpoints(dir)? {
        let summary = match storage::load_at(&chk) {
            Ok(l) => CheckpointSummary {
                checkpoint_id: id,
                path: chk.to_string(),
                completion_timestamp_ms: Some(l.metadata.completion_timestamp_ms),
                size: Some(l.metadata_len + file_bytes(&l.metadata)),
                error: None,
            },
            Err(e) => CheckpointSummary {
                checkpoint_id: id,
                path: chk.to_string(),
                completion_timestamp_ms: None,
                size: None,
                error: Some(e.to_string()),
            },
        };
        checkpoints.push(summary);
    }
    Ok(JobDirReport {
        path: dir.to_string(),
        checkpoints,
    })
}

/// Bytes of the state files (not inline blobs) a checkpoint references.
fn file_bytes(m: &CheckpointMetadata) -> u64 {
    m.blobs()
        .filter(|(_, _, b)| !matches!(b.location, BlobLocation::Inline(_)))
        .map(|(_, _, b)| b.size)
        .sum()
}

/// What a restore does with a transactional sink's state.
fn sink_report(s: &SinkState) -> SinkReport {
    match s {
        SinkState::Files(f) => SinkReport {
            pending_parts: f.pending.iter().map(|p| p.part).collect(),
            next_part: f.next_part,
            in_progress: f.in_progress.map(|p| [p.part, p.length]),
            pending_transactions: None,
        },
        SinkState::Kafka(k) | SinkState::KafkaPooled { state: k, .. } => SinkReport {
            pending_parts: Vec::new(),
            next_part: 0,
            in_progress: None,
            pending_transactions: Some(
                k.pending
                    .iter()
                    .map(|t| t.transactional_id.clone())
                    .collect(),
            ),
        },
    }
}

/// The report of a loaded checkpoint or savepoint.
pub fn snapshot_report(loaded: &LoadedSnapshot) -> SnapshotReport {
    let m = &loaded.metadata;
    let operators: Vec<OperatorReport> = m
        .operators
        .iter()
        .map(|op| {
            let subtasks: Vec<SubtaskReport> = op
                .subtasks
                .iter()
                .map(|st| {
                    let (keyed, blobs): (Option<&'static str>, &[StateBlob]) = match &st.keyed {
                        None => (None, &[]),
                        Some(KeyedStateHandle::Full(b)) => (Some("full"), std::slice::from_ref(b)),
                        Some(KeyedStateHandle::Incremental { chain }) => {
                            (Some("incremental"), chain)
                        }
                    };
                    let blobs: Vec<BlobReport> = blobs.iter().map(blob_report).collect();
                    let op_state = st.operator.as_ref();
                    let source = op_state.and_then(|b| SourcePosition::from_blob(b).ok());
                    let sink = op_state.and_then(|b| SinkState::from_blob(b).ok());
                    let other = op_state
                        .filter(|_| source.is_none() && sink.is_none())
                        .map(|b| format!("{}, {} bytes", b.format, b.bytes.len()));
                    SubtaskReport {
                        subtask: st.subtask,
                        key_groups: st.key_groups.map(|(a, b)| [a, b]),
                        state_size: blobs.iter().map(|b| b.size).sum(),
                        entries: blobs.iter().map(|b| b.entries).sum(),
                        keyed,
                        blobs,
                        source: source.as_ref().map(source_report),
                        other,
                        sink: sink.as_ref().map(sink_report),
                    }
                })
                .collect();
            OperatorReport {
                operator_id: op.operator_id.clone(),
                parallelism: op.parallelism,
                max_parallelism: op.max_parallelism,
                state_size: subtasks.iter().map(|s| s.state_size).sum(),
                subtasks,
            }
        })
        .collect();
    SnapshotReport {
        path: loaded.dir.to_string(),
        checkpoint_id: m.checkpoint_id,
        kind: match m.kind {
            SnapshotKind::Checkpoint => "checkpoint",
            SnapshotKind::Savepoint => "savepoint",
        },
        job_id: m.job_id.0.clone(),
        job_name: m.job_name.clone(),
        trigger_timestamp_ms: m.trigger_timestamp_ms,
        completion_timestamp_ms: m.completion_timestamp_ms,
        metadata_bytes: loaded.metadata_len,
        state_size: operators.iter().map(|o| o.state_size).sum(),
        operators,
    }
}

fn blob_report(b: &StateBlob) -> BlobReport {
    let (location, file) = match &b.location {
        BlobLocation::Inline(_) => ("inline", None),
        BlobLocation::Exclusive(n) => ("exclusive", Some(n.clone())),
        BlobLocation::Shared(n) => ("shared", Some(format!("../shared/{n}"))),
    };
    BlobReport {
        location,
        file,
        size: b.size,
        key_groups: b.groups.len(),
        entries: b.groups.iter().map(|g| g.entries).sum(),
    }
}

fn source_report(p: &SourcePosition) -> SourceReport {
    match p {
        SourcePosition::Datagen { next_line }
        | SourcePosition::DatagenRescaled { next_line, .. } => SourceReport::Datagen {
            next_line: *next_line,
        },
        SourcePosition::Files(files) => SourceReport::Files {
            files: files
                .iter()
                .map(|(path, offset)| FileOffset {
                    path: path.clone(),
                    offset: *offset,
                })
                .collect(),
        },
        SourcePosition::Kafka(offsets) => SourceReport::Kafka {
            partitions: offsets.clone(),
        },
    }
}

/// The report as JSON (the same fields as the structs above).
pub fn render_json(report: &InspectReport) -> serde_json::Value {
    serde_json::to_value(report).unwrap_or_else(
        |e| serde_json::json!({ "error": format!("bug: inspect report does not serialize: {e}") }),
    )
}

/// RFC 3339 UTC with milliseconds.
fn time(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The report for a terminal.
pub fn render_text(report: &InspectReport) -> String {
    match report {
        InspectReport::Snapshot(s) => render_snapshot(s),
        InspectReport::JobDir(j) => render_job_dir(j),
    }
}

fn render_snapshot(s: &SnapshotReport) -> String {
    let mut out = String::new();
    let kind = if s.kind == "savepoint" {
        "Savepoint"
    } else {
        "Checkpoint"
    };
    let _ = writeln!(out, "{kind} {} at {}", s.checkpoint_id, s.path);
    let _ = writeln!(out, "  job:        {} ({})", s.job_name, s.job_id);
    let _ = writeln!(out, "  triggered:  {}", time(s.trigger_timestamp_ms));
    let _ = writeln!(
        out,
        "  completed:  {} ({} ms after trigger)",
        time(s.completion_timestamp_ms),
        s.completion_timestamp_ms
            .saturating_sub(s.trigger_timestamp_ms)
    );
    let _ = writeln!(
        out,
        "  size:       {} bytes of state, _metadata {} bytes",
        s.state_size, s.metadata_bytes
    );
    for op in &s.operators {
        let _ = writeln!(
            out,
            "operator {}: parallelism {}, max parallelism {}, state {} bytes",
            op.operator_id, op.parallelism, op.max_parallelism, op.state_size
        );
        for st in &op.subtasks {
            let _ = write!(out, "  subtask {}:", st.subtask);
            if let Some([a, b]) = st.key_groups {
                let _ = write!(out, " key groups [{a}, {b}],");
            }
            if let Some(keyed) = st.keyed {
                let _ = write!(
                    out,
                    " {} bytes, {}, {keyed}",
                    st.state_size,
                    count(st.entries, "entry", "entries")
                );
            }
            if let Some(src) = &st.source {
                let _ = write!(out, " source position {}", source_text(src));
            }
            if let Some(txns) = st
                .sink
                .as_ref()
                .and_then(|s| s.pending_transactions.as_ref())
            {
                let _ = write!(
                    out,
                    " kafka sink: {} to commit on restore{}",
                    count(txns.len() as u64, "transaction", "transactions"),
                    if txns.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", txns.join(", "))
                    }
                );
            } else if let Some(sink) = &st.sink {
                let _ = write!(
                    out,
                    " sink: {} to commit on restore, next part {}",
                    count(sink.pending_parts.len() as u64, "part", "parts"),
                    sink.next_part
                );
            }
            if let Some(other) = &st.other {
                let _ = write!(out, " operator state {other}");
            }
            if st.keyed.is_none() && st.source.is_none() && st.sink.is_none() && st.other.is_none()
            {
                let _ = write!(out, " no state");
            }
            let _ = writeln!(out);
            for b in &st.blobs {
                let place = match &b.file {
                    Some(f) => format!("file {f}"),
                    None => "inline".to_string(),
                };
                let _ = writeln!(
                    out,
                    "    {place}: {} bytes, {}, {}",
                    b.size,
                    count(b.key_groups as u64, "key group", "key groups"),
                    count(b.entries, "entry", "entries")
                );
            }
        }
    }
    out
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn source_text(s: &SourceReport) -> String {
    match s {
        SourceReport::Datagen { next_line } => format!("datagen next line {next_line}"),
        SourceReport::Files { files } if files.is_empty() => "file source, no files".into(),
        SourceReport::Files { files } => files
            .iter()
            .map(|f| format!("{} @ byte {}", f.path, f.offset))
            .collect::<Vec<_>>()
            .join(", "),
        SourceReport::Kafka { partitions } if partitions.is_empty() => {
            "kafka source, no partitions".into()
        }
        SourceReport::Kafka { partitions } => partitions
            .iter()
            .map(|p| format!("{}-{} @ offset {}", p.topic, p.partition, p.offset))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn render_job_dir(j: &JobDirReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Job directory {}: {} retained checkpoint{}",
        j.path,
        j.checkpoints.len(),
        if j.checkpoints.len() == 1 { "" } else { "s" }
    );
    for c in &j.checkpoints {
        match (&c.error, c.completion_timestamp_ms, c.size) {
            (None, Some(t), Some(size)) => {
                let _ = writeln!(
                    out,
                    "  chk-{}  completed {}  {} bytes",
                    c.checkpoint_id,
                    time(t),
                    size
                );
            }
            (e, _, _) => {
                let _ = writeln!(
                    out,
                    "  chk-{}  unreadable: {}",
                    c.checkpoint_id,
                    e.as_deref().unwrap_or("unknown error")
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_dir_lists_unreadable_checkpoints_with_their_error() {
        let tmp = tempfile::tempdir().unwrap();
        let job = tmp.path();
        std::fs::create_dir_all(job.join("shared")).unwrap();
        std::fs::create_dir_all(job.join("chk-4")).unwrap();
        std::fs::write(job.join("chk-4/_metadata"), b"garbage").unwrap();
        std::fs::create_dir_all(job.join("chk-5")).unwrap(); // never completed
        let report = inspect(job).unwrap();
        let InspectReport::JobDir(j) = &report else {
            panic!("expected a job dir report: {report:?}")
        };
        assert_eq!(j.checkpoints.len(), 1);
        assert_eq!(j.checkpoints[0].checkpoint_id, 4);
        let e = j.checkpoints[0].error.as_deref().unwrap();
        assert!(
            e.contains("not a floe checkpoint/savepoint _metadata file"),
            "{e}"
        );
        let text = render_text(&report);
        assert!(text.contains("1 retained checkpoint\n"), "{text}");
        assert!(text.contains("chk-4  unreadable:"), "{text}");
        assert_eq!(render_json(&report)["type"], "job_dir");
    }

    #[test]
    fn missing_path_and_empty_dir_give_flinks_messages() {
        let tmp = tempfile::tempdir().unwrap();
        let e = inspect(tmp.path().join("nope")).unwrap_err().to_string();
        assert!(
            e.starts_with("Cannot find checkpoint or savepoint file/directory"),
            "{e}"
        );
        let e = inspect(tmp.path()).unwrap_err().to_string();
        assert!(
            e.starts_with("Cannot find meta data file '_metadata' in directory"),
            "{e}"
        );
    }
}
