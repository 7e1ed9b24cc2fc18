//! `type: file` with inputs: records into a directory, one part file per subtask
//! (`part-<subtask>-0`), as lines (the text `print` shows, without prefix) or JSON lines (one
//! object per record, field names as keys).
//!
//! Writes go through a buffer and are flushed when the input ends; a failing write (disk full)
//! fails the operator with an error naming the file. The next issue makes this sink
//! transactional (in-progress, pending and committed part files); this module must not rename
//! or delete files until then.

use super::{sink_schema, write_record};
use crate::operators::{BuildContext, Operator, OperatorError, OperatorSpec, Problem};
use crate::record::{Batch, Schema, Value};
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
    path: PathBuf,
    writer: BufWriter<File>,
    format: FileFormat,
    /// JSON: `"name":` per field, escaped once.
    keys: Vec<Vec<u8>>,
    buf: Vec<u8>,
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
        let path = dir.join(format!("part-{}-0", ctx.subtask));
        let file = File::create(&path)
            .map_err(|e| OperatorError::io(format!("cannot create {}", path.display()), e))?;
        let keys = input
            .names()
            .map(|name| {
                let mut key = serde_json::to_vec(name).expect("a string always serializes");
                key.push(b':');
                key
            })
            .collect();
        Ok(FileSink {
            path,
            writer: BufWriter::with_capacity(BUFFER, file),
            format: c.format,
            keys,
            buf: Vec::new(),
        })
    }

    /// The part file this subtask writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_json(&mut self, batch: &Batch, row: usize) {
        self.buf.push(b'{');
        for (i, (key, column)) in self.keys.iter().zip(&batch.columns).enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.buf.extend_from_slice(key);
            // Serializing into a Vec cannot fail; NaN and infinities become null.
            let _ = match column.value(row) {
                Value::Str(s) => serde_json::to_writer(&mut self.buf, &String::from_utf8_lossy(s)),
                Value::Int(v) => serde_json::to_writer(&mut self.buf, &v),
                Value::Float(v) => serde_json::to_writer(&mut self.buf, &v),
                Value::Bool(v) => serde_json::to_writer(&mut self.buf, &v),
            };
        }
        self.buf.push(b'}');
    }

    fn io_error(&self, e: std::io::Error) -> OperatorError {
        OperatorError::io(format!("cannot write {}", self.path.display()), e)
    }
}

impl Operator for FileSink {
    fn process(&mut self, batch: Batch, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        self.buf.clear();
        for row in 0..batch.len() {
            match self.format {
                FileFormat::Lines => write_record(&mut self.buf, &batch, row),
                FileFormat::Json => self.write_json(&batch, row),
            }
            self.buf.push(b'\n');
        }
        self.writer
            .write_all(&self.buf)
            .map_err(|e| self.io_error(e))
    }

    fn finish(&mut self, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        self.writer.flush().map_err(|e| self.io_error(e))
    }
}
