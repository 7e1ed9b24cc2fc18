//! The records of a text source (`socket`, `file`): each line as `{line: str}`, or read as
//! JSON or CSV with declared fields (`format:`); with `event-time:`, stamped with their time,
//! and the subtask's watermarks.
//!
//! A line that does not parse, or whose time cannot be read, is a bad record: counted,
//! logged with where it came from (the file and byte offset, the socket's line number), then
//! dropped or the job fails, as `on-error` says.

use crate::operators::event_time::{
    EventTimeConfig, Timestamper, WatermarkEvent, WatermarkGenerator,
};
use crate::operators::transforms::parse::{
    BadRecords, FieldSpec, OnError, ParseFormat, TextFormat, TextParser,
};
use crate::operators::{BuildContext, OperatorError, Problem};
use crate::record::{Batch, Column, DataType, Schema};
use tokio::time::Instant;

/// How each line of a text source becomes a record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// The line as `{line: str}`.
    #[default]
    Raw,
    /// A JSON object per line; `fields` are taken from it.
    Json,
    /// Delimited values per line, `fields` in column order.
    Csv,
}

/// The record settings of a text source, as its config holds them.
#[derive(Debug, Clone, Copy)]
pub struct TextSettings<'a> {
    pub format: SourceFormat,
    pub fields: &'a [FieldSpec],
    pub csv_delimiter: Option<&'a str>,
    pub on_error: OnError,
    pub event_time: Option<&'a EventTimeConfig>,
}

impl TextSettings<'_> {
    fn text_format(&self) -> Option<TextFormat> {
        let format = match self.format {
            SourceFormat::Raw => return None,
            SourceFormat::Json => ParseFormat::Json,
            SourceFormat::Csv => ParseFormat::Csv,
        };
        Some(TextFormat {
            format,
            fields: self.fields.to_vec(),
            regex: None,
            csv_delimiter: self.csv_delimiter.map(str::to_owned),
        })
    }

    /// The records' schema, or every problem: the source's own `problems` (its other
    /// settings), then those of the text settings.
    pub fn schema_after(&self, mut problems: Vec<Problem>) -> Result<Schema, Vec<Problem>> {
        match self.schema() {
            Ok(schema) if problems.is_empty() => Ok(schema),
            Ok(_) => Err(problems),
            Err(ps) => {
                problems.extend(ps);
                Err(problems)
            }
        }
    }

    /// The records' schema, or every problem with the settings.
    pub fn schema(&self) -> Result<Schema, Vec<Problem>> {
        let mut problems = Vec::new();
        let schema = match self.text_format() {
            None => {
                if !self.fields.is_empty() {
                    problems.push(Problem::new(
                        "fields",
                        "are read with `format: json` or `format: csv` only; set one",
                    ));
                }
                if self.csv_delimiter.is_some() {
                    problems.push(Problem::new(
                        "csv-delimiter",
                        "is read with `format: csv` only",
                    ));
                }
                Some(Schema::new([("line", DataType::Str)]))
            }
            Some(f) => match f.compile() {
                Ok(p) => Some(p.schema().clone()),
                Err(ps) => {
                    problems.extend(ps);
                    None
                }
            },
        };
        if let (Some(schema), Some(et)) = (&schema, self.event_time) {
            if let Err(p) = et.check(schema, "event-time.") {
                problems.push(p);
            }
        }
        match schema {
            Some(s) if problems.is_empty() => Ok(s),
            _ => Err(problems),
        }
    }

    /// The reader of one subtask of source `what` (`file`, `socket`) with `splits` splits.
    pub fn reader(&self, what: &str, ctx: &BuildContext) -> Result<TextReader, OperatorError> {
        let config = |ps: Vec<Problem>| {
            let msgs: Vec<String> = ps
                .into_iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            OperatorError::Config(msgs.join("; "))
        };
        let schema = self.schema().map_err(config)?;
        let parser = self
            .text_format()
            .map(|f| f.compile())
            .transpose()
            .map_err(config)?;
        let stamp = match self.event_time {
            None => None,
            Some(et) => Some((
                et.check(&schema, "event-time.")
                    .map_err(|p| config(vec![p]))?,
                et.generator(1),
            )),
        };
        Ok(TextReader {
            parser,
            bad: BadRecords::new(&format!("{what} source"), ctx, self.on_error),
            stamp,
        })
    }
}

/// Turns one subtask's lines into records.
#[derive(Debug)]
pub struct TextReader {
    parser: Option<TextParser>,
    bad: BadRecords,
    stamp: Option<(Timestamper, WatermarkGenerator)>,
}

impl TextReader {
    /// The records of `lines` (a batch of `{line: str}`): parsed and stamped; `None` when no
    /// line gave a record. `position(row)` says where line `row` came from.
    pub fn read(
        &mut self,
        lines: Batch,
        position: &dyn Fn(usize) -> String,
    ) -> Result<Option<Batch>, OperatorError> {
        let TextReader { parser, bad, stamp } = self;
        let (mut batch, kept) = match parser {
            None => (lines, None),
            Some(p) => {
                let Some(Column::Str(col)) = lines.columns.first() else {
                    return Err(OperatorError::Config(
                        "bug: a text source without lines".into(),
                    ));
                };
                p.parse_column(col, &mut |row, why| {
                    bad.report(&position(row), col.get(row), why)
                })?
            }
        };
        let line_of = |row: usize| kept.as_ref().map_or(row, |k| k[row] as usize);
        if let Some((stamper, generator)) = stamp {
            let mut dropped = Vec::new();
            let ts = stamper.timestamps(&batch.columns, &mut |row, why| {
                bad.report(&position(line_of(row)), b"", why)?;
                dropped.push(row);
                Ok(())
            })?;
            generator.observe(
                0,
                ts.iter().copied().filter(|&t| t != i64::MIN),
                Instant::now(),
            );
            batch.set_timestamps(Some(ts));
            if !dropped.is_empty() {
                let rows: Vec<u32> = (0..batch.len() as u32)
                    .filter(|r| !dropped.contains(&(*r as usize)))
                    .collect();
                batch = batch.take(&rows);
            }
        }
        Ok((!batch.is_empty()).then_some(batch))
    }

    /// What the subtask's watermark says now, with event time.
    pub fn watermark(&mut self) -> Option<WatermarkEvent> {
        self.stamp.as_mut()?.1.poll(Instant::now())
    }

    /// Lines dropped (`on-error: drop`).
    pub fn discarded(&self) -> u64 {
        self.bad.count()
    }
}
