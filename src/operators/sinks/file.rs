//! `type: file` with inputs: records into a directory, as lines (the text `print` shows,
//! without prefix) or JSON lines (one object per record, field names as keys).
//!
//! Two ways of writing, chosen by the job's checkpointing ([`DeliveryGuarantee`]):
//!
//! - **Plain** (no checkpoints, or AT_LEAST_ONCE): one file per subtask, `part-<subtask>-0`,
//!   written through a buffer and flushed when the input ends.
//! - **Transactional** (EXACTLY_ONCE checkpoints; Flink's two-phase-commit `FileSink`):
//!   records go to a hidden in-progress file `.part-<subtask>-<n>.inprogress`. The
//!   `rolling:` policy ([`super::rolling`]: size, age, inactivity) decides when a part is
//!   finished: it is flushed and renamed to `.part-<subtask>-<n>.pending` (the pre-commit),
//!   its name goes into the next checkpoint, and the next record starts part `n + 1`. When
//!   that checkpoint completes (`_metadata` durable), every pending part of it and of older
//!   checkpoints is renamed to `part-<subtask>-<n>`: the commit, atomic for readers. A part
//!   not finished at a barrier stays open: the checkpoint records its length (flushed, and
//!   fsynced by the checkpoint writer), and writing goes on after it.
//!   On restore, the restored checkpoint's pending parts are committed (a part already
//!   committed is fine), its open part is cut back to the recorded length and written on (by
//!   its own subtask; after a rescale that moved it, it is committed as it is), and every
//!   in-progress or pending part it does not list (written after it) is deleted, so replayed
//!   records are written once. A bounded job commits everything at its end.
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

use super::rolling::{PartClock, RollingConfig};
use super::state::{FileSinkState, InProgressPart, PendingPart, SinkState};
use super::{sink_schema, write_record};
use crate::ids::CheckpointId;
use crate::operators::{
    BuildContext, DeliveryGuarantee, EndOfInput, Operator, OperatorError, OperatorSpec, Problem,
    RestoredState,
};
use crate::record::{Batch, Schema};
use crate::state::OperatorSnapshot;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// When a part file is finished (with EXACTLY_ONCE checkpoints): Flink's rolling policy.
    #[serde(default)]
    pub rolling: RollingConfig,
}

impl OperatorSpec for FileSinkConfig {
    fn output_schema(&self, input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        if self.path.trim().is_empty() {
            return Err(vec![Problem::new(
                "path",
                "must name the output directory (each subtask writes part-<subtask>-0 in it)",
            )]);
        }
        let problems: Vec<Problem> = self
            .rolling
            .problems()
            .into_iter()
            .map(|(field, message)| Problem::new(field, message))
            .collect();
        if !problems.is_empty() {
            return Err(problems);
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
    rolling: RollingConfig,
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
    current: Option<Current>,
    /// Parts finished (full) since the last barrier: pending files the next checkpoint lists.
    rolled: Vec<u64>,
    /// Pre-committed at a barrier, waiting for their checkpoint to complete, oldest first.
    pending: Vec<PendingPart>,
    /// Committed, with the first checkpoint that lists them again (whose writer fsyncs the
    /// directory, making the rename durable); dropped once such a checkpoint completed.
    committed: Vec<(PendingPart, Option<u64>)>,
}

/// The part being written.
struct Current {
    part: u64,
    writer: BufWriter<File>,
    /// Bytes written to it (flushed or not).
    size: u64,
    opened: Instant,
    written: Instant,
}

impl Current {
    fn new(part: u64, writer: BufWriter<File>, size: u64) -> Current {
        let now = Instant::now();
        Current {
            part,
            writer,
            size,
            opened: now,
            written: now,
        }
    }

    fn clock(&self, now: Instant) -> PartClock {
        PartClock {
            size: self.size,
            age: now.saturating_duration_since(self.opened),
            idle: now.saturating_duration_since(self.written),
        }
    }
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
            rolling: c.rolling,
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

    /// Restores one old subtask's state: commits what it left pending, cuts its open part back
    /// to what the checkpoint covers, deletes its in-progress and pending parts the checkpoint
    /// does not list (written after it). The open part to write on, when it is this
    /// subtask's own.
    fn restore_files(&mut self, state: &FileSinkState) -> Result<Option<Current>, OperatorError> {
        for p in &state.pending {
            self.commit(state.subtask, p.part)?;
        }
        let resumed = match state.in_progress {
            Some(ip) => self.recover_open_part(state.subtask, ip)?,
            None => None,
        };
        let open = state.in_progress.map(|ip| ip.part);
        for (n, kind) in self.scan(state.subtask)? {
            let listed = state.pending.iter().any(|p| p.part == n) || open == Some(n);
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
            open_part = ?state.in_progress,
            "file sink restored: pending parts of the checkpoint committed, later parts discarded"
        );
        Ok(resumed)
    }

    /// The part `ip` of `subtask` that was open at the checkpoint: cut back to its checkpointed
    /// length; written on when it is this subtask's (returned), else committed as it is (its
    /// bytes are the checkpoint's output; another subtask writes this subtask's parts now).
    /// Already committed (a later run went further, and this restore goes back): left as it is,
    /// as the module docs say. Gone: an error, that output is lost.
    fn recover_open_part(
        &self,
        subtask: u32,
        ip: InProgressPart,
    ) -> Result<Option<Current>, OperatorError> {
        let at = |kind| self.dir.join(part_name(subtask, ip.part, kind));
        let (open, pending, committed) = (
            at(PartKind::InProgress),
            at(PartKind::Pending),
            at(PartKind::Committed),
        );
        if !open.exists() && pending.exists() {
            // Finished after the checkpoint: what came after is cut, it is open again.
            std::fs::rename(&pending, &open).map_err(|e| {
                OperatorError::io(
                    format!("cannot rename {} to {}", pending.display(), open.display()),
                    e,
                )
            })?;
        } else if !open.exists() && committed.exists() {
            return Ok(None);
        } else if !open.exists() {
            return Err(OperatorError::Config(format!(
                "cannot restore the part in progress at the checkpoint: none of {}, {}, {} \
                 exists; the output directory was changed outside floe, and the records of that \
                 part are lost",
                open.display(),
                pending.display(),
                committed.display()
            )));
        }
        let io = |what: &str, e| OperatorError::io(format!("cannot {what} {}", open.display()), e);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&open)
            .map_err(|e| io("open the part in progress at the restored checkpoint", e))?;
        let len = file.metadata().map_err(|e| io("read", e))?.len();
        if len < ip.length {
            return Err(OperatorError::Config(format!(
                "{} holds {len} bytes, fewer than the {} the restored checkpoint covers: the \
                 output directory was changed outside floe, and records of that part are lost",
                open.display(),
                ip.length
            )));
        }
        file.set_len(ip.length).map_err(|e| io("truncate", e))?;
        file.sync_all().map_err(|e| io("fsync", e))?;
        drop(file);
        if subtask != self.subtask {
            std::fs::rename(&open, &committed).map_err(|e| {
                OperatorError::io(
                    format!(
                        "cannot commit {} to {}",
                        open.display(),
                        committed.display()
                    ),
                    e,
                )
            })?;
            return Ok(None);
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&open)
            .map_err(|e| io("open", e))?;
        let writer = BufWriter::with_capacity(BUFFER, file);
        Ok(Some(Current::new(ip.part, writer, ip.length)))
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
            parts.current = Some(Current::new(n, BufWriter::with_capacity(BUFFER, file), 0));
        }
        let Some(current) = &mut parts.current else {
            return Ok(());
        };
        if let Err(e) = current.writer.write_all(&self.buf) {
            let path = self
                .dir
                .join(part_name(self.subtask, current.part, PartKind::InProgress));
            return Err(OperatorError::io(
                format!("cannot write {}", path.display()),
                e,
            ));
        }
        current.size += self.buf.len() as u64;
        current.written = Instant::now();
        if self.rolling.roll_on_write(current.size) {
            // Full: finished now, listed (and fsynced) by the next checkpoint.
            if let Some(n) = self.close_current(PartKind::Pending, false)? {
                if let Mode::Transactional(parts) = &mut self.mode {
                    parts.rolled.push(n);
                }
            }
        }
        Ok(())
    }

    /// Flushes the in-progress part and renames it to `kind` (pending when finished, committed
    /// at the end of a bounded job); its number, if there was one.
    fn close_current(&mut self, kind: PartKind, fsync: bool) -> Result<Option<u64>, OperatorError> {
        let Mode::Transactional(parts) = &mut self.mode else {
            return Ok(None);
        };
        let Some(Current {
            part: n,
            mut writer,
            ..
        }) = parts.current.take()
        else {
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

    /// At a barrier: finishes the open part if the rolling policy says so, else flushes it
    /// and says how many of its bytes the checkpoint covers.
    fn settle_current(&mut self) -> Result<Option<InProgressPart>, OperatorError> {
        let Mode::Transactional(parts) = &mut self.mode else {
            return Ok(None);
        };
        let Some(current) = &mut parts.current else {
            return Ok(None);
        };
        if self
            .rolling
            .roll_at_checkpoint(current.clock(Instant::now()))
        {
            if let Some(n) = self.close_current(PartKind::Pending, false)? {
                if let Mode::Transactional(parts) = &mut self.mode {
                    parts.rolled.push(n);
                }
            }
            return Ok(None);
        }
        current.writer.flush().map_err(|e| {
            let path = self
                .dir
                .join(part_name(self.subtask, current.part, PartKind::InProgress));
            OperatorError::io(format!("cannot write {}", path.display()), e)
        })?;
        Ok(Some(InProgressPart {
            part: current.part,
            length: current.size,
        }))
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
        let in_progress = self.settle_current()?;
        let dir = self.dir.clone();
        let subtask = self.subtask;
        let Mode::Transactional(parts) = &mut self.mode else {
            return Ok(None);
        };
        for part in parts.rolled.drain(..) {
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
        // fsynced now; fsync of a clean file is cheap), the open part (under each name it may
        // have by the time the writer runs: it may be finished meanwhile), then the directory
        // for the renames.
        let mut fsync: Vec<PathBuf> = parts
            .pending
            .iter()
            .map(|p| dir.join(part_name(subtask, p.part, PartKind::Pending)))
            .collect();
        if let Some(ip) = in_progress {
            for kind in [PartKind::InProgress, PartKind::Pending, PartKind::Committed] {
                fsync.push(dir.join(part_name(subtask, ip.part, kind)));
            }
        }
        fsync.push(dir);
        Ok(Some(
            SinkState::Files(FileSinkState {
                subtask,
                next_part: parts.next_part,
                pending: listed,
                in_progress,
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
        let mut resumed = None;
        // Another sink's state under this id (the `type:` changed) is refused by its own
        // operator; the file sink only reads its own.
        for s in states.into_iter().filter_map(|s| match s {
            SinkState::Files(f) => Some(f),
            SinkState::Kafka(_) | SinkState::KafkaPooled { .. } => None,
        }) {
            let open = self.restore_files(&s)?;
            if s.subtask == self.subtask {
                next_part = s.next_part;
                resumed = open;
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
            parts.current = resumed;
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
                        if let Some(c) = &mut parts.current {
                            if let Err(e) = c.writer.flush() {
                                let p = self.dir.join(part_name(
                                    self.subtask,
                                    c.part,
                                    PartKind::InProgress,
                                ));
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
        let pending: Vec<u64> = match &mut self.mode {
            Mode::Transactional(parts) => {
                let mut all: Vec<u64> = parts.pending.drain(..).map(|p| p.part).collect();
                all.append(&mut parts.rolled);
                all
            }
            _ => Vec::new(),
        };
        for part in pending {
            let path = self.part_path(part, PartKind::Pending);
            if let Ok(f) = File::open(&path) {
                f.sync_all().map_err(|e| {
                    OperatorError::io(format!("cannot fsync {}", path.display()), e)
                })?;
            }
            self.commit(self.subtask, part)?;
        }
        self.sync_dir()
    }
}

#[cfg(test)]
mod tests;
