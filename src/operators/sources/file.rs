//! `type: file` without inputs: the lines of a file, of every regular file in a directory
//! (sorted by name, not recursive) or of every file a glob matches (sorted).
//!
//! Bounded by default: each file is read once, a last line without `\n` is emitted at the end,
//! and the source ends. With `follow: true` it tails: appended data and newly appearing files
//! (the directory or glob is listed again about every 500 ms) are picked up, a partial last line
//! waits for its newline, and `next` answers `Idle` when nothing is new.
//!
//! Sharing over `p` subtasks: bounded, file `i` of the sorted list goes to subtask `i % p`; in
//! follow mode, where files come and go while subtasks list them at different moments, a file
//! goes to subtask `fnv1a64(path) % p`, which every subtask computes alike whenever it looks.
//!
//! Lines end at `\n`; a `\r` before it is dropped. Files are read in 1 MiB chunks; the complete
//! lines of a chunk share one buffer and each batch holds spans into it (no copy per line).
//! Reads are plain blocking reads of local files (a chunk from the page cache takes well under
//! a millisecond), which keeps the hot path free of a thread hop per chunk.
//!
//! Position: per file, the byte offset of the first line not yet handed to the runtime
//! ([`FileSource::positions`]); [`FileSource::restore`] seeks there. This module must not
//! write or delete the files it reads.

use super::text::{SourceFormat, TextReader, TextSettings};
use super::SourcePosition;
use crate::operators::event_time::{EventTimeConfig, WatermarkEvent};
use crate::operators::transforms::parse::{FieldSpec, OnError};
use crate::operators::{BuildContext, OperatorError, OperatorSpec, Problem, Source, SourceEvent};
use crate::record::{Batch, Column, Schema, Span, StrColumn, BATCH_SIZE};
use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Bytes read from a file at once.
const CHUNK: usize = 1 << 20;
/// A line longer than this is not a text line (a binary file, say).
const MAX_LINE: usize = 64 << 20;
/// How often follow mode lists the directory or glob again.
const RESCAN: Duration = Duration::from_millis(500);
/// How long follow mode waits when nothing is new before answering `Idle`.
const IDLE_WAIT: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSourceConfig {
    /// A file, a directory or a glob; relative to the pipeline file's directory.
    pub path: String,
    /// Keep reading appended lines and new files instead of ending.
    #[serde(default)]
    pub follow: bool,
    /// How each line becomes a record: `raw` (`{line: str}`), `json` or `csv` with `fields`.
    #[serde(default)]
    pub format: SourceFormat,
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
    #[serde(default)]
    pub csv_delimiter: Option<String>,
    /// A line that does not parse: `fail` the job, or `drop` it (counted and logged).
    #[serde(default)]
    pub on_error: OnError,
    /// Records carry the time of a field, and the source emits watermarks.
    #[serde(default)]
    pub event_time: Option<EventTimeConfig>,
}

impl FileSourceConfig {
    /// Reading `path` as lines, with every other setting at its default.
    pub fn new(path: impl Into<String>) -> Self {
        FileSourceConfig {
            path: path.into(),
            follow: false,
            format: SourceFormat::Raw,
            fields: Vec::new(),
            csv_delimiter: None,
            on_error: OnError::Fail,
            event_time: None,
        }
    }

    fn text(&self) -> TextSettings<'_> {
        TextSettings {
            format: self.format,
            fields: &self.fields,
            csv_delimiter: self.csv_delimiter.as_deref(),
            on_error: self.on_error,
            event_time: self.event_time.as_ref(),
        }
    }
}

impl OperatorSpec for FileSourceConfig {
    fn makes_event_time(&self, _input: bool) -> bool {
        self.event_time.is_some()
    }

    fn output_schema(&self, _input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        let mut problems = Vec::new();
        if self.path.trim().is_empty() {
            problems.push(Problem::new(
                "path",
                "must name a file, a directory or a glob (like `logs/*.txt`)",
            ));
        }
        self.text().schema_after(problems)
    }

    /// The checks [`FileSource::restore`] makes before it reads: `path` names a file, a
    /// directory or a valid glob, and (unless followed) something to read.
    fn check_start(&self, base_dir: &Path) -> Result<Option<String>, String> {
        let target = self.target(base_dir).map_err(|e| e.to_string())?;
        let listed = list(&target, &self.path).map_err(|e| e.to_string())?;
        match (listed.is_empty(), self.follow) {
            (false, _) => Ok(None),
            (true, true) => Ok(Some(format!(
                "{}; follow mode reads files as they appear",
                nothing_to_read(&target, &self.path)
            ))),
            (true, false) => Err(nothing_to_read(&target, &self.path)),
        }
    }
}

impl FileSourceConfig {
    /// What `path` names, relative paths resolved against `base_dir`.
    fn target(&self, base_dir: &Path) -> Result<Target, OperatorError> {
        let shown = &self.path;
        let resolved = if Path::new(&self.path).is_absolute() {
            PathBuf::from(&self.path)
        } else {
            base_dir.join(&self.path)
        };
        if resolved.is_dir() {
            Ok(Target::Dir(resolved))
        } else if resolved.is_file() {
            Ok(Target::File(resolved))
        } else if self.path.contains(['*', '?', '[']) {
            let pattern = resolved.to_string_lossy().into_owned();
            glob::Pattern::new(&pattern).map_err(|e| {
                OperatorError::Config(format!("`path` {shown}: not a valid glob: {e}"))
            })?;
            Ok(Target::Glob(pattern))
        } else {
            Err(OperatorError::Config(format!(
                "`path` {shown}: no such file or directory (looked for {})",
                resolved.display()
            )))
        }
    }
}

/// Why a directory or glob gives nothing to read.
fn nothing_to_read(target: &Target, shown: &str) -> String {
    match target {
        Target::Dir(d) => format!(
            "`path` {shown}: the directory {} holds no files",
            d.display()
        ),
        Target::Glob(g) => format!("`path` {shown}: the glob {g} matches no files"),
        Target::File(f) => format!("`path` {shown}: {} lists nothing", f.display()),
    }
}

/// What `path` names.
#[derive(Debug, Clone)]
enum Target {
    File(PathBuf),
    Dir(PathBuf),
    Glob(String),
}

/// One file of this subtask and how far it has been read.
struct Tracked {
    path: PathBuf,
    file: Option<File>,
    /// Offset of the first line not yet handed over (the position).
    emitted: u64,
    /// Offset of `pending[0]`: the first line not yet cut into a batch.
    line_start: u64,
    /// Bytes read past the last complete line.
    pending: Vec<u8>,
    /// Bounded mode: fully read.
    done: bool,
}

impl Tracked {
    fn new(path: PathBuf, offset: u64) -> Tracked {
        Tracked {
            path,
            file: None,
            emitted: offset,
            line_start: offset,
            pending: Vec::new(),
            done: false,
        }
    }
}

/// One running file source subtask.
pub struct FileSource {
    target: Target,
    /// How the user named the files (boxed: rarely used, and it keeps the source runtime
    /// enum small).
    naming: Box<Naming>,
    follow: bool,
    subtask: u64,
    parallelism: u64,
    files: Vec<Tracked>,
    known: HashSet<PathBuf>,
    /// Bounded: the file being read. Follow: where the round-robin resumes.
    current: usize,
    /// Cut batches not yet handed over, each with its file, the offset after its last line
    /// and the file offset of its buffer's first byte.
    ready: VecDeque<(Batch, usize, u64, u64)>,
    last_scan: Option<Instant>,
    /// Lines to records (format, event time); boxed, as it is large and cold.
    reader: Box<TextReader>,
}

struct Naming {
    /// `path` as the user wrote it, for messages.
    shown: String,
    /// The directory a relative `path` resolved against (`None` for an absolute `path`):
    /// positions name files relative to it, so a restore from another working directory
    /// finds them.
    base_dir: Option<PathBuf>,
}

impl FileSource {
    pub fn new(c: &FileSourceConfig, ctx: &BuildContext) -> Result<Self, OperatorError> {
        Self::restore(c, ctx, &[])
    }

    /// Resume at `positions` taken earlier by [`FileSource::positions`]; files not listed
    /// start at 0.
    pub fn restore(
        c: &FileSourceConfig,
        ctx: &BuildContext,
        positions: &[(PathBuf, u64)],
    ) -> Result<Self, OperatorError> {
        let shown = c.path.clone();
        let target = c.target(&ctx.base_dir)?;
        let mut src = FileSource {
            target,
            naming: Box::new(Naming {
                shown,
                base_dir: (!Path::new(&c.path).is_absolute()).then(|| ctx.base_dir.clone()),
            }),
            follow: c.follow,
            subtask: ctx.subtask as u64,
            parallelism: ctx.parallelism.max(1) as u64,
            files: Vec::new(),
            known: HashSet::new(),
            current: 0,
            ready: VecDeque::new(),
            last_scan: None,
            reader: Box::new(c.text().reader("file", ctx)?),
        };
        let listed = list(&src.target, &src.naming.shown)?;
        if listed.is_empty() && !src.follow {
            return Err(OperatorError::Config(nothing_to_read(
                &src.target,
                &src.naming.shown,
            )));
        }
        for (i, path) in listed.into_iter().enumerate() {
            let mine = if src.follow {
                src.owns_by_hash(&path)
            } else {
                i as u64 % src.parallelism == src.subtask
            };
            if mine {
                let offset = positions
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map_or(0, |(_, o)| *o);
                src.files.push(Tracked::new(path.clone(), offset));
            }
            src.known.insert(path);
        }
        Ok(src)
    }

    /// For every file of this subtask, the offset of the first line not yet handed over.
    pub fn positions(&self) -> Vec<(PathBuf, u64)> {
        self.files
            .iter()
            .map(|f| (f.path.clone(), f.emitted))
            .collect()
    }

    /// [`FileSource::positions`] as a snapshot holds them: paths as the pipeline wrote them
    /// (relative to the pipeline's directory when `path` is relative).
    pub fn source_position(&self) -> SourcePosition {
        SourcePosition::Files(
            self.files
                .iter()
                .map(|f| {
                    (
                        position_name(self.naming.base_dir.as_deref(), &f.path),
                        f.emitted,
                    )
                })
                .collect(),
        )
    }

    fn owns_by_hash(&self, path: &Path) -> bool {
        fnv1a64(path.as_os_str().as_encoded_bytes()) % self.parallelism == self.subtask
    }

    /// The regular files `path` names now, sorted.
    fn list(&self) -> Result<Vec<PathBuf>, OperatorError> {
        list(&self.target, &self.naming.shown)
    }

    /// Follow mode: take in files that appeared since the last listing.
    fn rescan(&mut self) -> Result<(), OperatorError> {
        self.last_scan = Some(Instant::now());
        for path in self.list()? {
            if self.known.insert(path.clone()) && self.owns_by_hash(&path) {
                tracing::info!(file = %path.display(), "file source picked up a new file");
                self.files.push(Tracked::new(path, 0));
            }
        }
        Ok(())
    }

    /// Read one chunk of file `idx`, queueing the complete lines. Returns whether it read
    /// anything (false: at the end of the file for now).
    fn read_chunk(&mut self, idx: usize) -> Result<bool, OperatorError> {
        let follow = self.follow;
        let f = &mut self.files[idx];
        if f.file.is_none() {
            let mut file = File::open(&f.path)
                .map_err(|e| OperatorError::io(format!("cannot open {}", f.path.display()), e))?;
            if f.line_start > 0 {
                file.seek(SeekFrom::Start(f.line_start)).map_err(|e| {
                    OperatorError::io(format!("cannot seek in {}", f.path.display()), e)
                })?;
            }
            f.file = Some(file);
        }
        let file = f.file.as_mut().expect("opened above");
        if follow {
            // A file that shrank was truncated or replaced (log rotation): start it over.
            let read_to = f.line_start + f.pending.len() as u64;
            if let Ok(meta) = file.metadata() {
                if meta.len() < read_to {
                    tracing::warn!(file = %f.path.display(), "file shrank; reading it again from the start");
                    file.seek(SeekFrom::Start(0)).map_err(|e| {
                        OperatorError::io(format!("cannot seek in {}", f.path.display()), e)
                    })?;
                    f.pending.clear();
                    f.line_start = 0;
                    f.emitted = 0;
                }
            }
        }
        f.pending.reserve(CHUNK);
        let n = file
            .by_ref()
            .take(CHUNK as u64)
            .read_to_end(&mut f.pending)
            .map_err(|e| OperatorError::io(format!("cannot read {}", f.path.display()), e))?;
        if n == 0 {
            if !follow {
                f.done = true;
                f.file = None;
                if !f.pending.is_empty() {
                    // The last line has no newline: it is still a line.
                    let len = f.pending.len();
                    let buf: Arc<[u8]> = Arc::from(std::mem::take(&mut f.pending));
                    let base = f.line_start;
                    let end = base + len as u64;
                    let span = line_span(&buf, 0, len);
                    f.line_start = end;
                    let batch = Batch::new(vec![Column::Str(StrColumn {
                        buf,
                        spans: vec![span],
                    })]);
                    self.ready.push_back((batch, idx, end, base));
                }
            }
            return Ok(false);
        }
        let Some(last_nl) = memchr::memrchr(b'\n', &f.pending) else {
            if f.pending.len() > MAX_LINE {
                return Err(OperatorError::Data(format!(
                    "{}: no newline in more than {} MiB from byte {}; is it a text file?",
                    f.path.display(),
                    MAX_LINE >> 20,
                    f.line_start
                )));
            }
            return Ok(true);
        };
        let cut = last_nl + 1;
        let buf: Arc<[u8]> = Arc::from(&f.pending[..cut]);
        f.pending.drain(..cut);
        let base = f.line_start;
        f.line_start += cut as u64;
        let mut spans = Vec::with_capacity(BATCH_SIZE);
        let mut start = 0usize;
        for nl in memchr::memchr_iter(b'\n', &buf) {
            spans.push(line_span(&buf, start, nl));
            start = nl + 1;
            if spans.len() == BATCH_SIZE {
                let batch = Batch::new(vec![Column::Str(StrColumn {
                    buf: buf.clone(),
                    spans: std::mem::replace(&mut spans, Vec::with_capacity(BATCH_SIZE)),
                })]);
                self.ready
                    .push_back((batch, idx, base + start as u64, base));
            }
        }
        if !spans.is_empty() {
            let batch = Batch::new(vec![Column::Str(StrColumn { buf, spans })]);
            self.ready
                .push_back((batch, idx, base + start as u64, base));
        }
        Ok(true)
    }

    /// The next cut batch as records; `Idle` when every line of it was dropped.
    fn pop_ready(&mut self) -> Result<Option<SourceEvent>, OperatorError> {
        let Some((lines, idx, end, base)) = self.ready.pop_front() else {
            return Ok(None);
        };
        self.files[idx].emitted = end;
        let path = &self.files[idx].path;
        let starts: Vec<u32> = match lines.columns.first() {
            Some(Column::Str(c)) => c.spans.iter().map(|s| s.start).collect(),
            _ => Vec::new(),
        };
        let position = |row: usize| {
            let offset = base + starts.get(row).copied().unwrap_or(0) as u64;
            format!("{} byte {offset}", path.display())
        };
        Ok(Some(match self.reader.read(lines, &position)? {
            Some(records) => SourceEvent::Batch(records),
            None => SourceEvent::Idle,
        }))
    }

    fn next_bounded(&mut self) -> Result<SourceEvent, OperatorError> {
        loop {
            if let Some(event) = self.pop_ready()? {
                return Ok(event);
            }
            while self.current < self.files.len() && self.files[self.current].done {
                self.current += 1;
            }
            if self.current == self.files.len() {
                return Ok(SourceEvent::End);
            }
            self.read_chunk(self.current)?;
        }
    }

    async fn next_follow(&mut self) -> Result<SourceEvent, OperatorError> {
        if let Some(event) = self.pop_ready()? {
            return Ok(event);
        }
        if self.last_scan.is_none_or(|t| t.elapsed() >= RESCAN) {
            self.rescan()?;
        }
        // One round over the files, starting where the last one stopped, so a busy file does
        // not starve the others.
        for _ in 0..self.files.len() {
            let idx = self.current % self.files.len();
            self.current = idx + 1;
            match self.read_chunk(idx) {
                Ok(_) => {}
                // A followed file may be deleted (rotated away): stop following it.
                Err(OperatorError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound =>
                {
                    tracing::warn!(file = %self.files[idx].path.display(), "followed file disappeared");
                    self.files[idx].file = None;
                    continue;
                }
                Err(e) => return Err(e),
            }
            if let Some(event) = self.pop_ready()? {
                return Ok(event);
            }
        }
        tokio::time::sleep(IDLE_WAIT).await;
        Ok(SourceEvent::Idle)
    }
}

/// The regular files `target` names now, sorted (`shown`: `path` as written, for messages).
fn list(target: &Target, shown: &str) -> Result<Vec<PathBuf>, OperatorError> {
    let mut out = match target {
        Target::File(f) => vec![f.clone()],
        Target::Dir(d) => {
            let entries = std::fs::read_dir(d).map_err(|e| {
                OperatorError::io(format!("cannot list the directory {}", d.display()), e)
            })?;
            let mut files = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| {
                    OperatorError::io(format!("cannot list the directory {}", d.display()), e)
                })?;
                let path = entry.path();
                if path.is_file() {
                    files.push(path);
                }
            }
            files
        }
        Target::Glob(g) => glob::glob(g)
            .map_err(|e| OperatorError::Config(format!("`path` {}: not a valid glob: {e}", shown)))?
            // Entries that cannot be read (permissions) are skipped, as a shell would.
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect(),
    };
    out.sort();
    Ok(out)
}

/// How a position names `path`: relative to `base_dir` if it lies below it.
fn position_name(base_dir: Option<&Path>, path: &Path) -> String {
    base_dir
        .and_then(|base| path.strip_prefix(base).ok())
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// The positions of a [`SourcePosition::Files`] as [`FileSource::restore`] takes them: names
/// relative to the pipeline's directory resolved against `ctx.base_dir` (for a `path` the
/// pipeline wrote relative), absolute ones as they are.
pub fn restore_positions(
    c: &FileSourceConfig,
    ctx: &BuildContext,
    files: &[(String, u64)],
) -> Vec<(PathBuf, u64)> {
    let relative = !Path::new(&c.path).is_absolute();
    files
        .iter()
        .map(|(name, offset)| {
            let p = Path::new(name);
            let path = if relative && p.is_relative() {
                ctx.base_dir.join(p)
            } else {
                p.to_path_buf()
            };
            (path, *offset)
        })
        .collect()
}

/// The span of the line `buf[start..end]`, without a `\r` just before the `\n`.
fn line_span(buf: &[u8], start: usize, mut end: usize) -> Span {
    if end > start && buf[end - 1] == b'\r' {
        end -= 1;
    }
    Span {
        start: start as u32,
        len: (end - start) as u32,
    }
}

/// FNV-1a, 64 bit: a fixed hash every subtask computes alike (never std's seeded one).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Source for FileSource {
    async fn next(&mut self) -> Result<SourceEvent, OperatorError> {
        if self.follow {
            self.next_follow().await
        } else {
            self.next_bounded()
        }
    }

    /// Per file, the offset of the first line not yet handed over.
    fn position(&self) -> Option<SourcePosition> {
        Some(self.source_position())
    }

    fn watermark(&mut self) -> Option<WatermarkEvent> {
        self.reader.watermark()
    }

    fn records_discarded(&self) -> u64 {
        self.reader.discarded()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_test_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn crlf_is_one_line_end() {
        let buf = b"ab\r\n";
        assert_eq!(line_span(buf, 0, 3), Span { start: 0, len: 2 });
        assert_eq!(line_span(b"\n", 0, 0), Span { start: 0, len: 0 });
    }

    #[test]
    fn empty_path_is_a_problem() {
        let c = FileSourceConfig::new(" ");
        assert_eq!(c.output_schema(None).unwrap_err()[0].field, "path");
    }
}
