//! `type: file` with inputs: records into a directory, as lines (the text `print` shows,
//! without prefix) or JSON lines (one object per record, field names as keys).
//!
//! Two ways of writing, chosen by the job's checkpointing ([`DeliveryGuarantee`]):
//!
//! - **Plain** (no checkpoints, or AT_LEAST_ONCE): one file per subtask, `part-<subtask>-0`,
//!   written through a buffer and flushed when the input ends.
//! - **Transactional** (EXACTLY_ONCE checkpoints; Flink's two-phase-commit `FileSink`):
//!   records go to a hidden in-progress file `.part-<subtask>-<n>.inprogress`. At a
//!   checkpoint's barrier it is flushed and renamed to `.part-<subtask>-<n>.pending` (the
//!   pre-commit), its name goes into the checkpoint, and the next record starts part `n + 1`.
//!   When the checkpoint completes (`_metadata` durable), every pending part of it and of
//!   older checkpoints is renamed to `part-<subtask>-<n>`: the commit, atomic for readers.
//!   On restore, the restored checkpoint's pending parts are committed (a part already
//!   committed is fine) and every in-progress or pending part it does not list (written
//!   after it) is deleted, so replayed records are written once. A bounded job commits
//!   everything at its end.
//!
//! **Readers must ignore files whose name starts with a dot** (as with Flink's `.inprogress`
//! files): only `part-*` files are committed output.
//!
//! Durability: the task only flushes and renames at a barrier; the fsync of the pending file
//! and of the directory runs on the checkpoint writer's blocking thread
//! ([`crate::state::OperatorSnapshot::Blob`]), before the subtask acks, so before `_metadata`.
//! A commit's rename is made durable by the next checkpoint, which lists the part again
//! (committing twice is a no-op) and fsyncs the directory; the end of a bounded job fsyncs
//! what it commits itself.
//!
//! Part numbers never go back over an existing file: a fresh start continues after the
//! highest part of the subtask found in the directory, a restore after the restored
//! checkpoint's counter (or after a committed part beyond it, left by a run restored from an
//! older checkpoint; its records are then written again: replaying an older checkpoint
//! repeats its output, as in Flink).

use super::state::{FileSinkState, PendingPart, SinkState};
use super::{sink_schema, write_record};
use crate::operators::{
    BuildContext, DeliveryGuarantee, EndOfInput, Operator, OperatorError, OperatorSpec, Problem,
    RestoredState,
};
use crate::record::{Batch, Schema};
use crate::runtime::message::CheckpointId;
use crate::state::OperatorSnapshot;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Bytes buffered before a write reaches the file.
const BUFFER: usize = 1 << 20;

/// How records are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// `print`'s text: the value, or `(a,b)` for several fields.
    #[default]
    Lines,
    /// One JSON object per line: `{"word":"w1","count":3}`.
    Json,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSinkConfig {
    /// The output directory; relative to the pipeline file's directory.
    pub path: String,
    #[serde(default)]
    pub format: FileFormat,
}

impl OperatorSpec for FileSinkConfig {
    fn output_schema(&self, input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        if self.path.trim().is_empty() {
            return Err(vec![Problem::new(
                "path",
                "must name the output directory (each subtask writes part-<subtask>-0 in it)",
            )]);
        }
        sink_schema(input)
    }
}

/// One running file sink subtask.
pub struct FileSink {
    dir: PathBuf,
    operator_id: String,
    subtask: u32,
    /// `part-<subtask>-0`, the file of plain mode.
    plain_path: PathBuf,
    format: FileFormat,
    /// JSON: `"name":` per field, escaped once.
    keys: Vec<Vec<u8>>,
    buf: Vec<u8>,
    mode: Mode,
    end: EndOfInput,
}

enum Mode {
    /// Built, not opened (used on its own, outside a job): the first write opens the plain
    /// file.
    Unopened,
    Plain(BufWriter<File>),
    Transactional(Parts),
}

/// The part files of a transactional subtask.
#[derive(Default)]
struct Parts {
    /// The restore ran, or the directory was scanned for a fresh start.
    started: bool,
    next_part: u64,
    /// The part records go to now.
    current: Option<(u64, BufWriter<File>)>,
    /// Pre-committed at a barrier, waiting for their checkpoint to complete, oldest first.
    pending: Vec<PendingPart>,
    /// Committed, with the first checkpoint that lists them again (whose writer fsyncs the
    /// directory, making the rename durable); dropped once such a checkpoint completed.
    committed: Vec<(PendingPart, Option<u64>)>,
}

/// What a file in the output directory is, for one subtask's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    InProgress,
    Pending,
    Committed,
}

/// The file name of part `part` of `subtask` in state `kind`.
pub fn part_name(subtask: u32, part: u64, kind: PartKind) -> String {
    match kind {
        PartKind::InProgress => format!(".part-{subtask}-{part}.inprogress"),
        PartKind::Pending => format!(".part-{subtask}-{part}.pending"),
        PartKind::Committed => format!("part-{subtask}-{part}"),
    }
}

/// The part number and state of `name` if it is a part file of `subtask`.
pub fn parse_part_name(name: &str, subtask: u32) -> Option<(u64, PartKind)> {
    let (hidden, rest) = match name.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let rest = rest.strip_prefix("part-")?;
    let (s, rest) = rest.split_once('-')?;
    if s.parse::<u32>().ok()? != subtask || s.starts_with('+') {
        return None;
    }
    let (n, kind) = match (hidden, rest.split_once('.')) {
        (false, None) => (rest, PartKind::Committed),
        (true, Some((n, "inprogress"))) => (n, PartKind::InProgress),
        (true, Some((n, "pending"))) => (n, PartKind::Pending),
        _ => return None,
    };
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((n.parse().ok()?, kind))
}

impl FileSink {
    pub fn new(
        c: &FileSinkConfig,
        input: &Schema,
        ctx: &BuildContext,
    ) -> Result<Self, OperatorError> {
        // `.` components dropped so messages show `out/part-0-0`, not `out/./part-0-0`.
        let dir: PathBuf = ctx
            .base_dir
            .join(&c.path)
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        std::fs::create_dir_all(&dir).map_err(|e| {
            OperatorError::io(
                format!(
                    "cannot create the output directory {} (`path`)",
                    dir.display()
                ),
                e,
            )
        })?;
        let keys = super::json_keys(input);
        Ok(FileSink {
            plain_path: dir.join(part_name(ctx.subtask, 0, PartKind::Committed)),
            dir,
            operator_id: ctx.operator_id.clone(),
            subtask: ctx.subtask,
            format: c.format,
            keys,
            buf: Vec::new(),
            mode: Mode::Unopened,
            end: EndOfInput::Finished,
        })
    }

    /// The part file this subtask writes in plain mode (no EXACTLY_ONCE checkpoints).
    pub fn path(&self) -> &Path {
        &self.plain_path
    }

    /// Whether this subtask writes transactionally.
    pub fn is_transactional(&self) -> bool {
        matches!(self.mode, Mode::Transactional(_))
    }

    fn part_path(&self, part: u64, kind: PartKind) -> PathBuf {
        self.dir.join(part_name(self.subtask, part, kind))
    }

    fn open_plain(&mut self) -> Result<(), OperatorError> {
        let file = File::create(&self.plain_path).map_err(|e| {
            OperatorError::io(format!("cannot create {}", self.plain_path.display()), e)
        })?;
        self.mode = Mode::Plain(BufWriter::with_capacity(BUFFER, file));
        Ok(())
    }

    /// A fresh transactional start (nothing restored): part numbers continue after every
    /// part file of this subtask already in the directory, so nothing a restore of an
    /// earlier run could need is overwritten.
    fn start_fresh(&mut self) -> Result<(), OperatorError> {
        let highest = self
            .scan(self.subtask)?
            .into_iter()
            .map(|(n, _)| n + 1)
            .max()
            .unwrap_or(0);
        if let Mode::Transactional(parts) = &mut self.mode {
            parts.next_part = parts.next_part.max(highest);
            parts.started = true;
        }
        Ok(())
    }

    /// Every part file of `subtask` in the directory.
    fn scan(&self, subtask: u32) -> Result<Vec<(u64, PartKind)>, OperatorError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| {
            OperatorError::io(
                format!("cannot list the output directory {}", self.dir.display()),
                e,
            )
        })?;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            if let Some(part) = entry
                .file_name()
                .to_str()
                .and_then(|n| parse_part_name(n, subtask))
            {
                found.push(part);
            }
        }
        Ok(found)
    }

    /// Renames pending part `part` of `subtask` to its committed name. Idempotent: a part
    /// already committed is fine. Both names gone is an error: that output is lost.
    fn commit(&self, subtask: u32, part: u64) -> Result<(), OperatorError> {
        let from = self.dir.join(part_name(subtask, part, PartKind::Pending));
        let to = self.dir.join(part_name(subtask, part, PartKind::Committed));
        match std::fs::rename(&from, &to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && to.exists() => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(OperatorError::io(
                format!(
                    "cannot commit {} to {}: neither exists; the output directory was changed \
                     outside floe, and the records of that part are lost",
                    from.display(),
                    to.display()
                ),
                e,
            )),
            Err(e) => Err(OperatorError::io(
                format!("cannot commit {} to {}", from.display(), to.display()),
                e,
            )),
        }
    }

    fn sync_dir(&self) -> Result<(), OperatorError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| {
                OperatorError::io(
                    format!("cannot fsync the output directory {}", self.dir.display()),
                    e,
                )
            })
    }

    /// Restores one old subtask's state: commits what it left pending, deletes its in-progress
    /// and pending parts the checkpoint does not list (written after it).
    fn restore_files(&mut self, state: &FileSinkState) -> Result<(), OperatorError> {
        for p in &state.pending {
            self.commit(state.subtask, p.part)?;
        }
        for (n, kind) in self.scan(state.subtask)? {
            let listed = state.pending.iter().any(|p| p.part == n);
            if kind != PartKind::Committed && !listed {
                let path = self.dir.join(part_name(state.subtask, n, kind));
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(OperatorError::io(
                            format!(
                                "cannot delete {}, written after the restored checkpoint",
                                path.display()
                            ),
                            e,
                        ))
                    }
                }
            }
        }
        tracing::info!(
            operator = %self.operator_id,
            subtask = self.subtask,
            restored_subtask = state.subtask,
            committed = state.pending.len(),
            "file sink restored: pending parts of the checkpoint committed, later parts discarded"
        );
        Ok(())
    }

    fn transactional_write(&mut self) -> Result<(), OperatorError> {
        if matches!(&self.mode, Mode::Transactional(p) if !p.started) {
            self.start_fresh()?;
        }
        let Mode::Transactional(parts) = &mut self.mode else {
            return Ok(());
        };
        if parts.current.is_none() {
            let n = parts.next_part;
            let path = self
                .dir
                .join(part_name(self.subtask, n, PartKind::InProgress));
            let file = File::create(&path)
                .map_err(|e| OperatorError::io(format!("cannot create {}", path.display()), e))?;
            parts.next_part += 1;
            parts.current = Some((n, BufWriter::with_capacity(BUFFER, file)));
        }
        let Some((n, writer)) = &mut parts.current else {
            return Ok(());
        };
        let n = *n;
        if let Err(e) = writer.write_all(&self.buf) {
            let path = self
                .dir
                .join(part_name(self.subtask, n, PartKind::InProgress));
            return Err(OperatorError::io(
                format!("cannot write {}", path.display()),
                e,
            ));
        }
        Ok(())
    }

    /// Flushes the in-progress part and renames it to `kind` (pending at a barrier,
    /// committed at the end of a bounded job); its number, if there was one.
    fn close_current(&mut self, kind: PartKind, fsync: bool) -> Result<Option<u64>, OperatorError> {
        let Mode::Transactional(parts) = &mut self.mode else {
            return Ok(None);
        };
        let Some((n, mut writer)) = parts.current.take() else {
            return Ok(None);
        };
        let from = self
            .dir
            .join(part_name(self.subtask, n, PartKind::InProgress));
        writer
            .flush()
            .map_err(|e| OperatorError::io(format!("cannot write {}", from.display()), e))?;
        if fsync {
            writer
                .get_ref()
                .sync_all()
                .map_err(|e| OperatorError::io(format!("cannot fsync {}", from.display()), e))?;
        }
        drop(writer);
        let to = self.dir.join(part_name(self.subtask, n, kind));
        std::fs::rename(&from, &to).map_err(|e| {
            OperatorError::io(
                format!("cannot rename {} to {}", from.display(), to.display()),
                e,
            )
        })?;
        Ok(Some(n))
    }

    fn io_error(&self, e: std::io::Error) -> OperatorError {
        OperatorError::io(format!("cannot write {}", self.plain_path.display()), e)
    }
}

impl Operator for FileSink {
    fn open(&mut self, guarantee: DeliveryGuarantee) -> Result<(), OperatorError> {
        match guarantee {
            DeliveryGuarantee::ExactlyOnce => {
                self.mode = Mode::Transactional(Parts::default());
                Ok(())
            }
            DeliveryGuarantee::None | DeliveryGuarantee::AtLeastOnce => self.open_plain(),
        }
    }

    fn process(&mut self, batch: Batch, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        self.buf.clear();
        for row in 0..batch.len() {
            match self.format {
                FileFormat::Lines => write_record(&mut self.buf, &batch, row),
                FileFormat::Json => super::write_json(&mut self.buf, &self.keys, &batch, row),
            }
            self.buf.push(b'\n');
        }
        if matches!(self.mode, Mode::Unopened) {
            self.open_plain()?;
        }
        match &mut self.mode {
            Mode::Plain(writer) => {
                let r = writer.write_all(&self.buf);
                r.map_err(|e| self.io_error(e))
            }
            Mode::Transactional(_) => self.transactional_write(),
            Mode::Unopened => Ok(()),
        }
    }

    /// The pre-commit: the in-progress part becomes pending (flushed and renamed here; its
    /// fsync runs on the checkpoint writer's thread, see the module docs).
    fn snapshot_state_at(
        &mut self,
        checkpoint: CheckpointId,
    ) -> Result<Option<OperatorSnapshot>, OperatorError> {
        if matches!(&self.mode, Mode::Transactional(p) if !p.started) {
            self.start_fresh()?;
        }
        let closed = self.close_current(PartKind::Pending, false)?;
        let dir = self.dir.clone();
        let subtask = self.subtask;
        let Mode::Transactional(parts) = &mut self.mode else {
            return Ok(None);
        };
        if let Some(part) = closed {
            parts.pending.push(PendingPart {
                checkpoint_id: checkpoint.0,
                part,
            });
        }
        let mut listed: Vec<PendingPart> = parts.pending.clone();
        for (p, first_listed) in &mut parts.committed {
            first_listed.get_or_insert(checkpoint.0);
            listed.push(*p);
        }
        listed.sort_by_key(|p| p.part);
        // Every pending file (one whose first checkpoint was dropped before its writer ran is
        // fsynced now; fsync of a clean file is cheap), then the directory for the renames.
        let mut fsync: Vec<PathBuf> = parts
            .pending
            .iter()
            .map(|p| dir.join(part_name(subtask, p.part, PartKind::Pending)))
            .collect();
        fsync.push(dir);
        Ok(Some(
            SinkState::Files(FileSinkState {
                subtask,
                next_part: parts.next_part,
                pending: listed,
            })
            .into_snapshot(fsync),
        ))
    }

    /// The commit: every part pending for `checkpoint` or an older one becomes visible.
    fn notify_checkpoint_complete(
        &mut self,
        checkpoint: CheckpointId,
    ) -> Result<(), OperatorError> {
        let Mode::Transactional(parts) = &mut self.mode else {
            return Ok(());
        };
        // Renames made durable by a completed checkpoint that listed them: forget them.
        parts
            .committed
            .retain(|(_, listed)| listed.is_none_or(|l| l > checkpoint.0));
        let due: Vec<PendingPart> = parts
            .pending
            .iter()
            .filter(|p| p.checkpoint_id <= checkpoint.0)
            .copied()
            .collect();
        for p in &due {
            self.commit(self.subtask, p.part)?;
            if let Mode::Transactional(parts) = &mut self.mode {
                parts.pending.retain(|q| q.part != p.part);
                parts.committed.push((*p, None));
            }
        }
        if !due.is_empty() {
            tracing::debug!(
                operator = %self.operator_id,
                subtask = self.subtask,
                checkpoint_id = checkpoint.0,
                parts = due.len(),
                "file sink committed"
            );
        }
        Ok(())
    }

    fn notify_checkpoint_aborted(&mut self, checkpoint: CheckpointId) -> Result<(), OperatorError> {
        // Its pending parts stay pending: the next completed checkpoint commits them (its
        // completion implies this one's pre-commit, as the later barrier came after it).
        tracing::debug!(
            operator = %self.operator_id,
            subtask = self.subtask,
            checkpoint_id = checkpoint.0,
            "file sink: checkpoint aborted, its parts wait for the next one"
        );
        Ok(())
    }

    fn restore_state(&mut self, state: RestoredState) -> Result<(), OperatorError> {
        let states = super::restored_sink_states("file", &self.operator_id, state)?;
        let mut next_part = 0;
        // Another sink's state under this id (the `type:` changed) is refused by its own
        // operator; the file sink only reads its own.
        for s in states.iter().filter_map(|s| match s {
            SinkState::Files(f) => Some(f),
            SinkState::Kafka(_) => None,
        }) {
            self.restore_files(s)?;
            if s.subtask == self.subtask {
                next_part = s.next_part;
            }
        }
        self.sync_dir()?;
        // Never back over a committed part (one a later checkpoint committed, when restoring
        // an older one): see the module docs.
        let highest = self
            .scan(self.subtask)?
            .into_iter()
            .map(|(n, _)| n + 1)
            .max()
            .unwrap_or(0);
        if let Mode::Transactional(parts) = &mut self.mode {
            parts.next_part = next_part.max(highest);
            parts.started = true;
        }
        Ok(())
    }

    fn end_of_input(&mut self, why: EndOfInput) {
        self.end = why;
    }

    fn finish(&mut self, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        if matches!(self.mode, Mode::Unopened) {
            self.open_plain()?;
        }
        match &mut self.mode {
            Mode::Plain(writer) => {
                let r = writer.flush();
                r.map_err(|e| self.io_error(e))
            }
            Mode::Unopened => Ok(()),
            Mode::Transactional(_) => match self.end {
                // A bounded job: nothing will be replayed, so everything written is final.
                EndOfInput::Finished => self.commit_all(),
                // Stopped: a later restore replays what follows the last completed
                // checkpoint; the in-progress part is flushed and left for it to discard.
                EndOfInput::Stopped => {
                    if let Mode::Transactional(parts) = &mut self.mode {
                        if let Some((n, writer)) = &mut parts.current {
                            let n = *n;
                            if let Err(e) = writer.flush() {
                                let p =
                                    self.dir
                                        .join(part_name(self.subtask, n, PartKind::InProgress));
                                return Err(OperatorError::io(
                                    format!("cannot write {}", p.display()),
                                    e,
                                ));
                            }
                        }
                    }
                    Ok(())
                }
            },
        }
    }
}

impl FileSink {
    /// The end of a bounded job: the in-progress part and every pending part are committed
    /// and made durable (fsync of each file, then of the directory).
    fn commit_all(&mut self) -> Result<(), OperatorError> {
        self.close_current(PartKind::Committed, true)?;
        let pending = match &mut self.mode {
            Mode::Transactional(parts) => std::mem::take(&mut parts.pending),
            _ => Vec::new(),
        };
        for p in &pending {
            let path = self.part_path(p.part, PartKind::Pending);
            if let Ok(f) = File::open(&path) {
                f.sync_all().map_err(|e| {
                    OperatorError::io(format!("cannot fsync {}", path.display()), e)
                })?;
            }
            self.commit(self.subtask, p.part)?;
        }
        self.sync_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Column, DataType, StrColumnBuilder};

    #[test]
    fn part_names_round_trip_and_other_files_are_not_parts() {
        for kind in [PartKind::InProgress, PartKind::Pending, PartKind::Committed] {
            let name = part_name(3, 17, kind);
            assert_eq!(parse_part_name(&name, 3), Some((17, kind)), "{name}");
            assert_eq!(parse_part_name(&name, 2), None, "another subtask: {name}");
        }
        for other in [
            "part-3-",
            "part-3-x",
            "part-3-1.pending",
            ".part-3-1",
            ".part-3-1.tmp",
            "part-+3-1",
            "part-3--1",
            "readme",
            ".part-31-1.pending",
        ] {
            assert_eq!(parse_part_name(other, 3), None, "{other}");
        }
    }

    fn sink(dir: &Path) -> FileSink {
        let schema = Schema::new([("word", DataType::Str)]);
        let cfg = FileSinkConfig {
            path: "out".into(),
            format: FileFormat::Lines,
        };
        let ctx = BuildContext {
            operator_id: "out".into(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            base_dir: dir.to_path_buf(),
        };
        let mut s = FileSink::new(&cfg, &schema, &ctx).unwrap();
        s.open(DeliveryGuarantee::ExactlyOnce).unwrap();
        s
    }

    fn batch(words: &[&str]) -> Batch {
        let mut b = StrColumnBuilder::default();
        for w in words {
            b.push(w.as_bytes());
        }
        Batch::new(vec![Column::Str(b.finish())])
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join("out"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn state(s: &mut FileSink, id: u64) -> SinkState {
        match s.snapshot_state_at(CheckpointId(id)).unwrap() {
            Some(OperatorSnapshot::Blob { blob, .. }) => SinkState::from_blob(&blob).unwrap(),
            other => panic!("expected sink state, got {other:?}"),
        }
    }

    #[test]
    fn parts_go_in_progress_pending_committed_and_a_restore_undoes_what_came_after() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = sink(tmp.path());
        assert!(s.is_transactional());
        s.process(batch(&["a", "b"]), &mut Vec::new()).unwrap();
        assert_eq!(files(tmp.path()), [".part-0-0.inprogress"]);
        let at_1 = state(&mut s, 1);
        assert_eq!(files(tmp.path()), [".part-0-0.pending"]);
        s.process(batch(&["c"]), &mut Vec::new()).unwrap();
        let at_2 = state(&mut s, 2);
        // Aborted 2 keeps its part pending; completing 1 commits only 1's.
        s.notify_checkpoint_aborted(CheckpointId(2)).unwrap();
        s.notify_checkpoint_complete(CheckpointId(1)).unwrap();
        assert_eq!(files(tmp.path()), [".part-0-1.pending", "part-0-0"]);
        s.process(batch(&["d"]), &mut Vec::new()).unwrap();
        assert_eq!(
            at_1,
            SinkState::Files(FileSinkState {
                subtask: 0,
                next_part: 1,
                pending: vec![PendingPart {
                    checkpoint_id: 1,
                    part: 0
                }],
            })
        );
        // 2 lists its own part and (until a completed checkpoint lists it) nothing else.
        let SinkState::Files(f2) = &at_2 else {
            panic!("expected the file sink's state");
        };
        assert_eq!(f2.next_part, 2);
        assert_eq!(
            f2.pending.iter().map(|p| p.part).collect::<Vec<_>>(),
            [0, 1]
        );

        // A crash, then a restore from checkpoint 1: part 0 committed (again: a no-op),
        // parts 1 (pending of 2) and 2 (in progress) discarded, numbering from 1.
        drop(s);
        let mut r = sink(tmp.path());
        r.restore_state(RestoredState::sink(vec![at_1])).unwrap();
        assert_eq!(files(tmp.path()), ["part-0-0"]);
        r.process(batch(&["x"]), &mut Vec::new()).unwrap();
        assert_eq!(files(tmp.path()), [".part-0-1.inprogress", "part-0-0"]);
        r.finish(&mut Vec::new()).unwrap();
        assert_eq!(files(tmp.path()), ["part-0-0", "part-0-1"]);
        let text = std::fs::read_to_string(tmp.path().join("out/part-0-0")).unwrap();
        assert_eq!(text, "a\nb\n");
        let text = std::fs::read_to_string(tmp.path().join("out/part-0-1")).unwrap();
        assert_eq!(text, "x\n");
    }

    #[test]
    fn a_restore_from_checkpoint_2_commits_both_pending_parts() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = sink(tmp.path());
        s.process(batch(&["a"]), &mut Vec::new()).unwrap();
        state(&mut s, 1);
        s.process(batch(&["b"]), &mut Vec::new()).unwrap();
        let at_2 = state(&mut s, 2);
        drop(s);
        let mut r = sink(tmp.path());
        r.restore_state(RestoredState::sink(vec![at_2])).unwrap();
        assert_eq!(files(tmp.path()), ["part-0-0", "part-0-1"]);
    }

    #[test]
    fn a_missing_pending_part_is_an_error_naming_both_files() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = sink(tmp.path());
        s.process(batch(&["a"]), &mut Vec::new()).unwrap();
        let at_1 = state(&mut s, 1);
        drop(s);
        std::fs::remove_file(tmp.path().join("out/.part-0-0.pending")).unwrap();
        let mut r = sink(tmp.path());
        let err = r
            .restore_state(RestoredState::sink(vec![at_1]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(".part-0-0.pending"), "{err}");
        assert!(err.contains("part-0-0: neither exists"), "{err}");
    }

    #[test]
    fn a_fresh_start_never_reuses_a_part_number_in_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("out")).unwrap();
        std::fs::write(tmp.path().join("out/part-0-4"), "old\n").unwrap();
        std::fs::write(tmp.path().join("out/.part-0-6.pending"), "old\n").unwrap();
        let mut s = sink(tmp.path());
        s.process(batch(&["new"]), &mut Vec::new()).unwrap();
        s.finish(&mut Vec::new()).unwrap();
        assert_eq!(
            files(tmp.path()),
            [".part-0-6.pending", "part-0-4", "part-0-7"]
        );
    }

    #[test]
    fn stopped_leaves_the_tail_uncommitted() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = sink(tmp.path());
        s.process(batch(&["a"]), &mut Vec::new()).unwrap();
        s.end_of_input(EndOfInput::Stopped);
        s.finish(&mut Vec::new()).unwrap();
        assert_eq!(files(tmp.path()), [".part-0-0.inprogress"]);
    }
}
