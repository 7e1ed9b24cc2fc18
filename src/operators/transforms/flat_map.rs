//! `type: flat_map`: split text into words by a separator or a regex.
//!
//! Zero copy: the words of a batch are spans into the input column's buffer (the `Arc` is
//! shared), so splitting allocates one span vector per batch and copies no text. A one-byte
//! separator is found with `memchr`, a longer one with a prebuilt `memmem` finder, a regex
//! with `regex::bytes`. Empty tokens are dropped. It must not copy or rewrite the text.

use crate::operators::{typed_field, BuildContext, Operator, OperatorError, OperatorSpec, Problem};
use crate::record::{Batch, Column, DataType, Schema, Span, StrColumn};
use memchr::memmem;

/// What a user writes under `type: flat_map`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FlatMapConfig {
    /// The text field to split; default: the input's only text field.
    #[serde(default)]
    pub field: Option<String>,
    /// The separator text (default `" "`); exclusive with `regex`.
    #[serde(default)]
    pub separator: Option<String>,
    /// A regex whose matches separate tokens; exclusive with `separator`.
    #[serde(default)]
    pub regex: Option<String>,
    /// The name of the produced field.
    #[serde(default = "default_output")]
    pub output: String,
}

fn default_output() -> String {
    "word".to_string()
}

impl FlatMapConfig {
    /// The input column to split, or the problem with the `field` setting.
    fn input_column(&self, input: &Schema) -> Result<usize, Problem> {
        match &self.field {
            Some(name) => typed_field("field", name, input, &[DataType::Str]).map(|(i, _)| i),
            None => {
                let text: Vec<usize> = (0..input.len())
                    .filter(|&i| input.fields[i].ty == DataType::Str)
                    .collect();
                match text.as_slice() {
                    [only] => Ok(*only),
                    [] => Err(Problem::new(
                        "",
                        format!("the input {input} has no text field to split"),
                    )),
                    _ => Err(Problem::new(
                        "field",
                        format!(
                            "the input {input} has several text fields; say which to split with `field:`"
                        ),
                    )),
                }
            }
        }
    }

    fn splitter(&self) -> Result<Splitter, Problem> {
        match (&self.separator, &self.regex) {
            (Some(_), Some(_)) => Err(Problem::new(
                "regex",
                "set either `separator` or `regex`, not both",
            )),
            (_, Some(re)) => {
                let regex = regex::bytes::Regex::new(re).map_err(|e| {
                    let first = e.to_string();
                    Problem::new(
                        "regex",
                        format!("invalid regex: {}", first.lines().last().unwrap_or("")),
                    )
                })?;
                if regex.is_match(b"") {
                    return Err(Problem::new(
                        "regex",
                        format!("the regex {re:?} matches empty text, so it would split between every character; use `+` rather than `*` (e.g. \"\\\\W+\")"),
                    ));
                }
                Ok(Splitter::Regex(regex))
            }
            (sep, None) => {
                let sep = sep.as_deref().unwrap_or(" ");
                match sep.as_bytes() {
                    [] => Err(Problem::new("separator", "the separator is empty")),
                    [b] => Ok(Splitter::Byte(*b)),
                    bytes => Ok(Splitter::Bytes(Box::new(
                        memmem::Finder::new(bytes).into_owned(),
                    ))),
                }
            }
        }
    }
}

impl OperatorSpec for FlatMapConfig {
    fn output_schema(&self, input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        let mut problems = Vec::new();
        if let Some(input) = input {
            if let Err(p) = self.input_column(input) {
                problems.push(p);
            }
        }
        if let Err(p) = self.splitter() {
            problems.push(p);
        }
        if self.output.is_empty() {
            problems.push(Problem::new("output", "the output field name is empty"));
        }
        if problems.is_empty() {
            Ok(Schema::new([(self.output.clone(), DataType::Str)]))
        } else {
            Err(problems)
        }
    }
}

enum Splitter {
    Byte(u8),
    Bytes(Box<memmem::Finder<'static>>),
    Regex(regex::bytes::Regex),
}

/// A running `flat_map` subtask.
pub struct FlatMap {
    column: usize,
    splitter: Splitter,
}

impl FlatMap {
    pub fn new(
        c: &FlatMapConfig,
        input: &Schema,
        _ctx: &BuildContext,
    ) -> Result<Self, OperatorError> {
        let column = c
            .input_column(input)
            .map_err(|p| OperatorError::Config(p.message))?;
        let splitter = c.splitter().map_err(|p| OperatorError::Config(p.message))?;
        Ok(FlatMap { column, splitter })
    }
}

/// Push the non-empty token `[from, to)` of the text at `base`.
#[inline(always)]
fn push(spans: &mut Vec<Span>, base: u32, from: usize, to: usize) {
    if to > from {
        spans.push(Span {
            start: base + from as u32,
            len: (to - from) as u32,
        });
    }
}

impl Operator for FlatMap {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        let Some(Column::Str(col)) = batch.columns.get(self.column) else {
            return Err(OperatorError::Config(format!(
                "bug: flat_map expected text in column {}",
                self.column
            )));
        };
        // Words per line are unknown; 8 per line saves most regrowth for prose and datagen.
        let mut spans = Vec::with_capacity(col.len() * 8);
        // Each token keeps its line's timestamp.
        let line_ts = batch.timestamps();
        let mut ts_out = line_ts.map(|_| Vec::with_capacity(col.len() * 8));
        for (i, s) in col.spans.iter().enumerate() {
            let text = &col.buf[s.start as usize..(s.start + s.len) as usize];
            let mut prev = 0;
            match &self.splitter {
                Splitter::Byte(b) => {
                    for pos in memchr::memchr_iter(*b, text) {
                        push(&mut spans, s.start, prev, pos);
                        prev = pos + 1;
                    }
                }
                Splitter::Bytes(finder) => {
                    let n = finder.needle().len();
                    for pos in finder.find_iter(text) {
                        push(&mut spans, s.start, prev, pos);
                        prev = pos + n;
                    }
                }
                Splitter::Regex(re) => {
                    for m in re.find_iter(text) {
                        push(&mut spans, s.start, prev, m.start());
                        prev = m.end();
                    }
                }
            }
            push(&mut spans, s.start, prev, text.len());
            if let (Some(out_ts), Some(in_ts)) = (&mut ts_out, line_ts) {
                out_ts.resize(spans.len(), in_ts[i]);
            }
        }
        if !spans.is_empty() {
            let words = StrColumn {
                buf: col.buf.clone(),
                spans,
            };
            out.push(Batch::new(vec![Column::Str(words)]).with_timestamps(ts_out));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StrColumnBuilder;
    use std::sync::Arc;

    fn ctx() -> BuildContext {
        BuildContext::single("split")
    }

    fn cfg(yaml: &str) -> FlatMapConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn lines(ls: &[&str]) -> Batch {
        Batch::of_strs(ls)
    }

    fn words(op: &mut FlatMap, input: Batch) -> (Vec<String>, Vec<Batch>) {
        let mut out = Vec::new();
        op.process(input, &mut out).unwrap();
        let mut ws = Vec::new();
        for b in &out {
            let Column::Str(c) = &b.columns[0] else {
                panic!("expected text")
            };
            ws.extend(c.iter().map(|w| String::from_utf8(w.to_vec()).unwrap()));
        }
        (ws, out)
    }

    #[test]
    fn splits_on_a_space_sharing_the_input_buffer() {
        let schema = Schema::new([("line", DataType::Str)]);
        let c = cfg("{}");
        assert_eq!(
            c.output_schema(Some(&schema)).unwrap(),
            Schema::new([("word", DataType::Str)])
        );
        let mut op = FlatMap::new(&c, &schema, &ctx()).unwrap();
        let input = lines(&["hello world", "  to be  or ", "", "x"]);
        let Column::Str(in_col) = &input.columns[0] else {
            unreachable!()
        };
        let in_buf = in_col.buf.clone();
        let (ws, out) = words(&mut op, input);
        assert_eq!(ws, ["hello", "world", "to", "be", "or", "x"]);
        let Column::Str(out_col) = &out[0].columns[0] else {
            unreachable!()
        };
        assert!(
            Arc::ptr_eq(&in_buf, &out_col.buf),
            "words must share the line buffer"
        );
    }

    #[test]
    fn splits_on_a_multi_byte_separator_and_a_regex() {
        let schema = Schema::new([("n", DataType::Int), ("text", DataType::Str)]);
        let batch = || {
            let mut b = StrColumnBuilder::default();
            b.push(b"a, b,,c, ");
            b.push(b"Hello, world! It's");
            Batch::new(vec![Column::Int(vec![1, 2]), Column::Str(b.finish())])
        };
        let mut op = FlatMap::new(&cfg("separator: \", \""), &schema, &ctx()).unwrap();
        assert_eq!(
            words(&mut op, batch()).0,
            ["a", "b,,c", "Hello", "world! It's"]
        );
        let mut op = FlatMap::new(&cfg(r#"regex: "\\W+""#), &schema, &ctx()).unwrap();
        assert_eq!(
            words(&mut op, batch()).0,
            ["a", "b", "c", "Hello", "world", "It", "s"]
        );
    }

    #[test]
    fn checks_its_settings() {
        let two = Schema::new([("a", DataType::Str), ("b", DataType::Str)]);
        let errs = cfg("{separator: '', regex: 'x'}")
            .output_schema(Some(&two))
            .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["field", "regex"]);
        let errs = cfg("{field: lin}")
            .output_schema(Some(&Schema::new([("line", DataType::Str)])))
            .unwrap_err();
        assert!(
            errs[0].message.contains("did you mean \"line\""),
            "{errs:?}"
        );
        let errs = cfg("{regex: '\\W*'}").output_schema(None).unwrap_err();
        assert!(errs[0].message.contains("matches empty text"));
        let errs = cfg("{regex: '('}").output_schema(None).unwrap_err();
        assert!(errs[0].message.starts_with("invalid regex"), "{errs:?}");
    }
}
