//! `type: parse`: typed fields out of a text field, read as JSON, CSV or a regex with named
//! groups; and [`TextParser`], which also reads the `format:` of the text sources (`socket`,
//! `file`).
//!
//! Bad records (text that is not of the format, a missing field, a value of the wrong type)
//! are counted, logged with where they came from, and dropped or fail the job as `on-error`
//! says ([`BadRecords`]). It must not guess: a field declared `int` takes an integer only.

use crate::operators::{typed_field, BuildContext, Operator, OperatorError, OperatorSpec, Problem};
use crate::record::{Batch, Column, DataType, Schema, StrColumn, StrColumnBuilder};
use std::fmt;

/// How text becomes fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParseFormat {
    /// A JSON object per record; the declared `fields` are taken from it by name.
    Json,
    /// Delimited values; the declared `fields` in column order.
    Csv,
    /// A regex with named groups; each group is a field (`str` unless `fields` types it).
    Regex,
}

impl ParseFormat {
    fn name(self) -> &'static str {
        match self {
            ParseFormat::Json => "json",
            ParseFormat::Csv => "csv",
            ParseFormat::Regex => "regex",
        }
    }
}

/// What happens to a record that does not parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The job fails, naming the record (as Flink's formats without `ignore-parse-errors`).
    #[default]
    Fail,
    /// The record is dropped, counted and logged.
    Drop,
}

/// One declared field: `{name: user, type: str}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: DataType,
}

/// What a user writes under `type: parse`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ParseConfig {
    /// The text field to parse; default: the input's only text field.
    #[serde(default)]
    pub field: Option<String>,
    pub format: ParseFormat,
    /// The fields to produce, in order (json, csv); for regex, types of named groups.
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
    /// For `format: regex`: the pattern, with named groups (`(?P<user>\w+)`).
    #[serde(default)]
    pub regex: Option<String>,
    /// For `format: csv`: the one-character delimiter (default `,`).
    #[serde(default)]
    pub csv_delimiter: Option<String>,
    #[serde(default)]
    pub on_error: OnError,
}

/// The format settings shared by `parse` and the text sources: enough to build a parser.
#[derive(Debug, Clone, PartialEq)]
pub struct TextFormat {
    pub format: ParseFormat,
    pub fields: Vec<FieldSpec>,
    pub regex: Option<String>,
    pub csv_delimiter: Option<String>,
}

impl TextFormat {
    /// The parser, or every problem with the settings (paths relative to the operator).
    pub fn compile(&self) -> Result<TextParser, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, f) in self.fields.iter().enumerate() {
            if f.name.is_empty() {
                problems.push(Problem::new(format!("fields[{i}].name"), "is empty"));
            } else if !seen.insert(f.name.as_str()) {
                problems.push(Problem::new(
                    format!("fields[{i}].name"),
                    format!("field \"{}\" is declared twice", f.name),
                ));
            }
        }
        if self.format != ParseFormat::Regex && self.regex.is_some() {
            problems.push(Problem::new(
                "regex",
                format!(
                    "is read with `format: regex` only, not `{}`",
                    self.format.name()
                ),
            ));
        }
        if self.format != ParseFormat::Csv && self.csv_delimiter.is_some() {
            problems.push(Problem::new(
                "csv-delimiter",
                format!(
                    "is read with `format: csv` only, not `{}`",
                    self.format.name()
                ),
            ));
        }
        let kind = match self.format {
            ParseFormat::Json | ParseFormat::Csv if self.fields.is_empty() => {
                problems.push(Problem::new(
                    "fields",
                    format!(
                        "`format: {}` needs the fields to produce: `fields: [{{name: user, type: str}}, {{name: n, type: int}}]`",
                        self.format.name()
                    ),
                ));
                None
            }
            ParseFormat::Json => Some(Kind::Json),
            ParseFormat::Csv => self.csv_kind().map_err(|p| problems.push(p)).ok(),
            ParseFormat::Regex => self.regex_kind().map_err(|p| problems.extend(p)).ok(),
        };
        match kind {
            Some(kind) if problems.is_empty() => {
                let fields: Vec<(String, DataType)> = match &kind {
                    Kind::Regex { groups, .. } => groups
                        .iter()
                        .map(|(name, _)| {
                            let ty = self.fields.iter().find(|f| &f.name == name);
                            (name.clone(), ty.map_or(DataType::Str, |f| f.ty))
                        })
                        .collect(),
                    _ => self.fields.iter().map(|f| (f.name.clone(), f.ty)).collect(),
                };
                Ok(TextParser {
                    kind,
                    schema: Schema::new(fields),
                    scratch: Vec::new(),
                    cells: Vec::new(),
                })
            }
            _ => Err(problems),
        }
    }

    fn csv_kind(&self) -> Result<Kind, Problem> {
        let delimiter = match self.csv_delimiter.as_deref().unwrap_or(",").as_bytes() {
            [b] if *b != b'"' && *b != b'\n' && *b != b'\r' => *b,
            _ => {
                return Err(Problem::new(
                    "csv-delimiter",
                    "must be one character (an ASCII one other than `\"` and a line break), like `,`, `;` or `\"\\t\"`",
                ))
            }
        };
        Ok(Kind::Csv {
            reader: Box::new(csv_core::ReaderBuilder::new().delimiter(delimiter).build()),
            ends: Vec::new(),
        })
    }

    fn regex_kind(&self) -> Result<Kind, Vec<Problem>> {
        let Some(pattern) = &self.regex else {
            return Err(vec![Problem::new(
                "regex",
                "`format: regex` needs `regex:`, a pattern with named groups such as \"(?P<user>\\\\w+) (?P<n>\\\\d+)\"",
            )]);
        };
        let re = regex::bytes::Regex::new(pattern).map_err(|e| {
            let text = e.to_string();
            vec![Problem::new(
                "regex",
                format!("invalid regex: {}", text.lines().last().unwrap_or("")),
            )]
        })?;
        let groups: Vec<(String, usize)> = re
            .capture_names()
            .enumerate()
            .filter_map(|(i, n)| n.map(|n| (n.to_string(), i)))
            .collect();
        let mut problems = Vec::new();
        if groups.is_empty() {
            problems.push(Problem::new(
                "regex",
                "has no named group; name each field's group: (?P<user>\\w+)",
            ));
        }
        for (i, f) in self.fields.iter().enumerate() {
            if !groups.iter().any(|(n, _)| n == &f.name) {
                let names = groups.iter().map(|(n, _)| n.as_str());
                problems.push(Problem::new(
                    format!("fields[{i}].name"),
                    format!(
                        "the regex has no group named \"{}\"{}",
                        f.name,
                        crate::operators::did_you_mean_suffix(&f.name, names)
                    ),
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let locations = re.capture_locations();
        Ok(Kind::Regex {
            re,
            groups,
            locations,
        })
    }
}

impl ParseConfig {
    fn text_format(&self) -> TextFormat {
        TextFormat {
            format: self.format,
            fields: self.fields.clone(),
            regex: self.regex.clone(),
            csv_delimiter: self.csv_delimiter.clone(),
        }
    }

    /// The input column to parse, or the problem with `field`.
    fn input_column(&self, input: &Schema) -> Result<usize, Problem> {
        if let Some(name) = &self.field {
            return typed_field("field", name, input, &[DataType::Str]).map(|(i, _)| i);
        }
        let text: Vec<usize> = (0..input.len())
            .filter(|&i| input.fields[i].ty == DataType::Str)
            .collect();
        match text.as_slice() {
            [only] => Ok(*only),
            [] => Err(Problem::new(
                "",
                format!("the input {input} has no text field to parse"),
            )),
            _ => Err(Problem::new(
                "field",
                format!(
                    "the input {input} has several text fields; say which to parse with `field:`"
                ),
            )),
        }
    }
}

impl OperatorSpec for ParseConfig {
    fn output_schema(&self, input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        let mut problems = Vec::new();
        if let Some(input) = input {
            if let Err(p) = self.input_column(input) {
                problems.push(p);
            }
        }
        match self.text_format().compile() {
            Ok(parser) if problems.is_empty() => Ok(parser.schema().clone()),
            Ok(_) => Err(problems),
            Err(ps) => {
                problems.extend(ps);
                Err(problems)
            }
        }
    }
}

/// A compiled format.
enum Kind {
    Json,
    Csv {
        reader: Box<csv_core::Reader>,
        /// Field ends of the record being read, reused.
        ends: Vec<usize>,
    },
    Regex {
        re: regex::bytes::Regex,
        /// Output field name → capture group index, in group order.
        groups: Vec<(String, usize)>,
        locations: regex::bytes::CaptureLocations,
    },
}

/// One parsed value of the record being read; text lives in the parser's scratch buffer.
#[derive(Debug, Clone, Copy)]
enum Cell {
    Str(usize, usize),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Reads text records into the fields of a [`TextFormat`].
pub struct TextParser {
    kind: Kind,
    schema: Schema,
    /// Bytes of the text cells of the record being read.
    scratch: Vec<u8>,
    cells: Vec<Cell>,
}

impl fmt::Debug for TextParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextParser")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// The columns of one batch being built.
enum Builder {
    Str(StrColumnBuilder),
    Int(Vec<i64>),
    Float(Vec<f64>),
    Bool(Vec<bool>),
}

impl TextParser {
    /// The fields it produces.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Parses every record of `col`. A record that does not parse goes to `bad` with its row
    /// and why (which fails the whole call or drops the record). Returns the records that
    /// parsed, and, when some did not, the rows they came from.
    pub fn parse_column(
        &mut self,
        col: &StrColumn,
        bad: &mut dyn FnMut(usize, &str) -> Result<(), OperatorError>,
    ) -> Result<(Batch, Option<Vec<u32>>), OperatorError> {
        let n = col.len();
        let mut builders: Vec<Builder> = self
            .schema
            .fields
            .iter()
            .map(|f| match f.ty {
                DataType::Str => Builder::Str(StrColumnBuilder::with_capacity(n, col.buf.len())),
                DataType::Int => Builder::Int(Vec::with_capacity(n)),
                DataType::Float => Builder::Float(Vec::with_capacity(n)),
                DataType::Bool => Builder::Bool(Vec::with_capacity(n)),
            })
            .collect();
        let mut kept: Option<Vec<u32>> = None;
        for row in 0..n {
            match self.parse_record(col.get(row)) {
                Ok(()) => {
                    for (b, cell) in builders.iter_mut().zip(&self.cells) {
                        match (b, *cell) {
                            (Builder::Str(b), Cell::Str(s, e)) => b.push(&self.scratch[s..e]),
                            (Builder::Int(v), Cell::Int(x)) => v.push(x),
                            (Builder::Float(v), Cell::Float(x)) => v.push(x),
                            (Builder::Bool(v), Cell::Bool(x)) => v.push(x),
                            _ => {
                                return Err(OperatorError::Config(
                                    "bug: a parsed value does not match its column".into(),
                                ))
                            }
                        }
                    }
                    if let Some(k) = &mut kept {
                        k.push(row as u32);
                    }
                }
                Err(reason) => {
                    bad(row, &reason)?;
                    kept.get_or_insert_with(|| (0..row as u32).collect());
                }
            }
        }
        let columns = builders
            .into_iter()
            .map(|b| match b {
                Builder::Str(b) => Column::Str(b.finish()),
                Builder::Int(v) => Column::Int(v),
                Builder::Float(v) => Column::Float(v),
                Builder::Bool(v) => Column::Bool(v),
            })
            .collect();
        let len = kept.as_ref().map_or(n, Vec::len);
        let batch = if self.schema.is_empty() {
            Batch::empty_with_len(len)
        } else {
            Batch::new(columns)
        };
        Ok((batch, kept))
    }

    /// Parses one record into `self.cells`, or says why it does not parse.
    fn parse_record(&mut self, text: &[u8]) -> Result<(), String> {
        self.scratch.clear();
        self.cells.clear();
        let TextParser {
            kind,
            schema,
            scratch,
            cells,
        } = self;
        match kind {
            Kind::Json => parse_json(text, schema, scratch, cells),
            Kind::Csv { reader, ends } => {
                read_csv(reader, text, scratch, ends)?;
                if ends.len() != schema.len() {
                    return Err(format!(
                        "{} values, but {} fields are declared",
                        ends.len(),
                        schema.len()
                    ));
                }
                let mut start = 0;
                for (f, &end) in schema.fields.iter().zip(ends.iter()) {
                    cells.push(text_cell(&f.name, f.ty, start, end, scratch)?);
                    start = end;
                }
                Ok(())
            }
            Kind::Regex {
                re,
                groups,
                locations,
            } => {
                if re.captures_read(locations, text).is_none() {
                    return Err("the regex does not match".into());
                }
                for ((name, group), f) in groups.iter().zip(&schema.fields) {
                    let Some((s, e)) = locations.get(*group) else {
                        return Err(format!("group \"{name}\" matched nothing"));
                    };
                    let start = scratch.len();
                    scratch.extend_from_slice(&text[s..e]);
                    cells.push(text_cell(name, f.ty, start, scratch.len(), scratch)?);
                }
                Ok(())
            }
        }
    }
}

/// The fields of a JSON object, by the declared types.
fn parse_json(
    text: &[u8],
    schema: &Schema,
    scratch: &mut Vec<u8>,
    cells: &mut Vec<Cell>,
) -> Result<(), String> {
    let obj: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(text).map_err(|e| format!("not a JSON object: {e}"))?;
    for f in &schema.fields {
        let v = obj.get(&f.name);
        let wrong = || {
            format!(
                "field \"{}\" is {}, which is not {}",
                f.name,
                v.map_or("missing".to_string(), |v| format!("`{v}`")),
                f.ty
            )
        };
        let cell = match (f.ty, v) {
            (_, None | Some(serde_json::Value::Null)) => return Err(wrong()),
            (DataType::Str, Some(serde_json::Value::String(s))) => {
                let start = scratch.len();
                scratch.extend_from_slice(s.as_bytes());
                Cell::Str(start, scratch.len())
            }
            // Any other JSON value as its JSON text (an object kept as text, say).
            (DataType::Str, Some(other)) => {
                let start = scratch.len();
                scratch.extend_from_slice(other.to_string().as_bytes());
                Cell::Str(start, scratch.len())
            }
            (DataType::Int, Some(n)) => Cell::Int(n.as_i64().ok_or_else(wrong)?),
            (DataType::Float, Some(n)) => Cell::Float(n.as_f64().ok_or_else(wrong)?),
            (DataType::Bool, Some(b)) => Cell::Bool(b.as_bool().ok_or_else(wrong)?),
        };
        cells.push(cell);
    }
    Ok(())
}

/// Reads one CSV record (the whole of `text`) into `out` with the field ends in `ends`.
fn read_csv(
    reader: &mut csv_core::Reader,
    text: &[u8],
    out: &mut Vec<u8>,
    ends: &mut Vec<usize>,
) -> Result<(), String> {
    use csv_core::ReadRecordResult as R;
    reader.reset();
    ends.clear();
    out.resize(text.len() + 1, 0);
    ends.resize(text.len() + 2, 0);
    let (mut pos, mut o, mut e) = (0, 0, 0);
    loop {
        // After the text, an empty input tells the reader the record ends there.
        let (res, nin, nout, nend) =
            reader.read_record(&text[pos..], &mut out[o..], &mut ends[e..]);
        pos += nin;
        o += nout;
        e += nend;
        match res {
            R::InputEmpty if pos < text.len() => {}
            R::InputEmpty => {
                let (res, _, nout, nend) = reader.read_record(&[], &mut out[o..], &mut ends[e..]);
                o += nout;
                e += nend;
                if matches!(res, R::Record) {
                    break;
                }
                return Err("an empty record".into());
            }
            R::Record => break,
            R::OutputFull => out.resize(out.len() * 2 + 16, 0),
            R::OutputEndsFull => ends.resize(ends.len() * 2 + 4, 0),
            R::End => return Err("an empty record".into()),
        }
    }
    out.truncate(o);
    ends.truncate(e);
    Ok(())
}

/// A value given as text (CSV, regex), read as `ty`; text cells stay where they are.
fn text_cell(
    name: &str,
    ty: DataType,
    start: usize,
    end: usize,
    buf: &[u8],
) -> Result<Cell, String> {
    if ty == DataType::Str {
        return Ok(Cell::Str(start, end));
    }
    let raw = &buf[start..end];
    let text = std::str::from_utf8(raw).unwrap_or("").trim();
    let parsed = match ty {
        DataType::Int => text.parse().ok().map(Cell::Int),
        DataType::Float => text.parse().ok().map(Cell::Float),
        DataType::Bool => match text.to_ascii_lowercase().as_str() {
            "true" => Some(Cell::Bool(true)),
            "false" => Some(Cell::Bool(false)),
            _ => None,
        },
        DataType::Str => None,
    };
    parsed.ok_or_else(|| {
        format!(
            "field \"{name}\" is \"{}\", which is not {ty}",
            crate::text::escape(&String::from_utf8_lossy(raw))
        )
    })
}

/// Records that did not parse, for one operator subtask: counted, logged with their position
/// (each of the first [`BadRecords::LOGGED`], then every power of ten), then dropped or the
/// job fails, as `on-error` says.
#[derive(Debug)]
pub struct BadRecords {
    /// `parse "p" (subtask 1/2)`.
    who: String,
    on_error: OnError,
    count: u64,
}

impl BadRecords {
    /// Bad records logged one by one; after that, one line at every power of ten.
    pub const LOGGED: u64 = 100;

    pub fn new(what: &str, ctx: &BuildContext, on_error: OnError) -> Self {
        BadRecords {
            who: format!(
                "{what} \"{}\" (subtask {}/{})",
                ctx.operator_id,
                ctx.subtask + 1,
                ctx.parallelism
            ),
            on_error,
            count: 0,
        }
    }

    /// Records dropped so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// One record at `position` (`line 12 of data/a.json`) did not parse, for `reason`.
    pub fn report(
        &mut self,
        position: &dyn fmt::Display,
        text: &[u8],
        reason: &str,
    ) -> Result<(), OperatorError> {
        let shown = snippet(text);
        if self.on_error == OnError::Fail {
            return Err(OperatorError::Data(format!(
                "{}: the record at {position} does not parse: {reason} (record: {shown}); set \
                 `on-error: drop` to drop such records instead",
                self.who
            )));
        }
        self.count += 1;
        if self.count <= Self::LOGGED || self.count.is_power_of_two() {
            tracing::warn!(
                operator = %self.who,
                dropped = self.count,
                "dropped a record that does not parse, at {position}: {reason} (record: {shown})"
            );
        }
        Ok(())
    }
}

/// The start of a record for a message: escaped, at most 100 characters.
fn snippet(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(text);
    let mut cut: String = s.chars().take(100).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    format!("\"{}\"", crate::text::escape(&cut))
}

/// A running `parse` subtask.
pub struct Parse {
    column: usize,
    parser: TextParser,
    bad: BadRecords,
    /// Records this subtask has read, for positions.
    seen: u64,
}

impl Parse {
    pub fn new(c: &ParseConfig, input: &Schema, ctx: &BuildContext) -> Result<Self, OperatorError> {
        let column = c
            .input_column(input)
            .map_err(|p| OperatorError::Config(p.message))?;
        let parser = c.text_format().compile().map_err(|ps| {
            let msgs: Vec<String> = ps
                .into_iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            OperatorError::Config(msgs.join("; "))
        })?;
        Ok(Parse {
            column,
            parser,
            bad: BadRecords::new("parse", ctx, c.on_error),
            seen: 0,
        })
    }
}

/// Where a record read by a `parse` subtask was: the how-manieth it read.
struct RecordNumber(u64);

impl fmt::Display for RecordNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {} of this subtask", self.0)
    }
}

impl Operator for Parse {
    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        let timestamps = batch.take_timestamps();
        let Some(Column::Str(col)) = batch.columns.get(self.column) else {
            return Err(OperatorError::Config(format!(
                "bug: parse expected text in column {}",
                self.column
            )));
        };
        let first = self.seen;
        self.seen += col.len() as u64;
        let bad = &mut self.bad;
        let (parsed, kept) = self.parser.parse_column(col, &mut |row, reason| {
            bad.report(&RecordNumber(first + row as u64 + 1), col.get(row), reason)
        })?;
        let timestamps = match (timestamps, &kept) {
            (Some(t), Some(rows)) => Some(rows.iter().map(|&r| t[r as usize]).collect()),
            (t, _) => t,
        };
        if !parsed.is_empty() {
            out.push(parsed.with_timestamps(timestamps));
        }
        Ok(())
    }

    fn records_discarded(&self) -> u64 {
        self.bad.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Value;

    fn ctx() -> BuildContext {
        BuildContext::single("p")
    }

    fn cfg(yaml: &str) -> ParseConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn lines(ls: &[&str]) -> Batch {
        Batch::of_strs(ls)
    }

    fn run(c: &str, input: &[&str]) -> Result<(Vec<Vec<String>>, u64), OperatorError> {
        let c = cfg(c);
        let schema = Schema::new([("line", DataType::Str)]);
        let mut op = Parse::new(&c, &schema, &ctx())?;
        let mut out = Vec::new();
        op.process(lines(input), &mut out)?;
        let rows = out
            .iter()
            .flat_map(|b| {
                (0..b.len()).map(move |i| b.row(i).iter().map(Value::to_string).collect())
            })
            .collect();
        Ok((rows, op.records_discarded()))
    }

    #[test]
    fn json_fields_by_declared_type() {
        let (rows, dropped) = run(
            "{format: json, on-error: drop, fields: [{name: user, type: str}, {name: n, type: int}, {name: x, type: float}, {name: ok, type: bool}]}",
            &[
                r#"{"user": "ann", "n": 3, "x": 1.5, "ok": true, "extra": 1}"#,
                r#"{"user": {"a": 1}, "n": -2, "x": 2, "ok": false}"#,
                r#"{"user": "bob", "n": "3", "x": 1, "ok": true}"#,
                r#"not json"#,
                r#"{"user": "cy", "x": 1, "ok": true}"#,
            ],
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                vec!["ann", "3", "1.5", "true"],
                vec![r#"{"a":1}"#, "-2", "2.0", "false"],
            ]
        );
        assert_eq!(dropped, 3);
    }

    #[test]
    fn csv_with_quotes_and_a_delimiter() {
        let (rows, dropped) = run(
            "{format: csv, csv-delimiter: ';', on-error: drop, fields: [{name: a, type: str}, {name: b, type: int}]}",
            &["x;1", "\"y;z\";2", "\"he said \"\"hi\"\"\"; 3 ", "only-one", "a;b", ""],
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                vec!["x", "1"],
                vec!["y;z", "2"],
                vec!["he said \"hi\"", "3"]
            ]
        );
        assert_eq!(dropped, 3);
    }

    #[test]
    fn regex_groups_typed_by_fields() {
        let (rows, dropped) = run(
            r#"{format: regex, on-error: drop, regex: '^(?P<user>\w+) (?P<n>\d+)$', fields: [{name: n, type: int}]}"#,
            &["ann 3", "bob x", "cy 12"],
        )
        .unwrap();
        assert_eq!(rows, vec![vec!["ann", "3"], vec!["cy", "12"]]);
        assert_eq!(dropped, 1);
    }

    #[test]
    fn a_bad_record_fails_the_job_by_default_naming_it() {
        let err = run(
            "{format: json, fields: [{name: n, type: int}]}",
            &[r#"{"n": 1}"#, r#"{"n": "one"}"#],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("parse \"p\" (subtask 1/1)"), "{err}");
        assert!(err.contains("record 2 of this subtask"), "{err}");
        assert!(
            err.contains("field \"n\" is `\"one\"`, which is not int"),
            "{err}"
        );
        assert!(err.contains("on-error: drop"), "{err}");
    }

    #[test]
    fn timestamps_follow_the_records_kept() {
        let c = cfg("{format: csv, on-error: drop, fields: [{name: n, type: int}]}");
        let schema = Schema::new([("line", DataType::Str)]);
        let mut op = Parse::new(&c, &schema, &ctx()).unwrap();
        let mut out = Vec::new();
        let input = lines(&["1", "x", "3"]).with_timestamps(Some(vec![10, 20, 30]));
        op.process(input, &mut out).unwrap();
        assert_eq!(out[0].timestamps(), Some(&[10, 30][..]));
    }

    #[test]
    fn settings_are_checked() {
        let problems = |y: &str| -> Vec<String> {
            let schema = Schema::new([("line", DataType::Str)]);
            cfg(y)
                .output_schema(Some(&schema))
                .unwrap_err()
                .into_iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect()
        };
        let p = problems("{format: json}");
        assert!(
            p[0].starts_with("fields: `format: json` needs the fields"),
            "{p:?}"
        );
        let p = problems("{format: regex, regex: '(\\w+)'}");
        assert!(p[0].contains("no named group"), "{p:?}");
        let p =
            problems("{format: regex, regex: '(?P<user>\\w+)', fields: [{name: usr, type: int}]}");
        assert!(p[0].contains("did you mean \"user\""), "{p:?}");
        let p = problems("{format: csv, csv-delimiter: ab, fields: [{name: a, type: int}, {name: a, type: str}]}");
        assert_eq!(p.len(), 2, "{p:?}");
        let p = problems("{format: json, field: nope, fields: [{name: a, type: int}]}");
        assert!(p[0].contains("field \"nope\" is not in the input"), "{p:?}");
    }
}
