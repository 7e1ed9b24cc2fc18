//! Records and batches: the data model every operator and the runtime share.
//!
//! Records never travel alone. A [`Batch`] holds a few hundred to a few thousand records as
//! columns: one typed vector per field of the operator's output [`Schema`]. Text columns keep
//! their bytes in one shared buffer and each record as a span into it, so splitting a line into
//! words, routing a word to a subtask or passing a key through an aggregate moves spans, not
//! bytes, and allocates nothing per record.
//!
//! The schema travels beside the plan, not inside each batch: an operator learns its input
//! schema when it is built and relies on the column order from then on.

use std::fmt;
use std::sync::Arc;

/// How many records a source puts into one batch by default.
pub const BATCH_SIZE: usize = 1024;

/// The type of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    Str,
    Int,
    Float,
    Bool,
}

impl DataType {
    pub fn name(self) -> &'static str {
        match self {
            DataType::Str => "str",
            DataType::Int => "int",
            DataType::Float => "float",
            DataType::Bool => "bool",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One named, typed field of a record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Field {
    pub name: String,
    pub ty: DataType,
}

/// The fields an operator produces, in column order.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Schema {
    pub fields: Vec<Field>,
}

impl Schema {
    pub fn new(fields: impl IntoIterator<Item = (impl Into<String>, DataType)>) -> Self {
        Schema {
            fields: fields
                .into_iter()
                .map(|(name, ty)| Field {
                    name: name.into(),
                    ty,
                })
                .collect(),
        }
    }

    /// Column index of a field by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}: {}", field.name, field.ty)?;
        }
        f.write_str("}")
    }
}

/// A record's text value: `len` bytes at `start` of the column's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

/// A column of text: one shared byte buffer, one span per record.
///
/// Several columns (and batches on several subtasks) may share one buffer; it is freed when
/// the last of them is dropped. Buffers are at most 4 GiB, which a batch never approaches.
#[derive(Clone)]
pub struct StrColumn {
    pub buf: Arc<[u8]>,
    pub spans: Vec<Span>,
}

impl StrColumn {
    pub fn empty() -> Self {
        StrColumn {
            buf: Arc::from(&[][..]),
            spans: Vec::new(),
        }
    }

    /// The bytes of record `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        let s = self.spans[i];
        &self.buf[s.start as usize..(s.start + s.len) as usize]
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.spans
            .iter()
            .map(move |s| &self.buf[s.start as usize..(s.start + s.len) as usize])
    }
}

impl fmt::Debug for StrColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

/// Builds a [`StrColumn`] by appending bytes: one allocation per batch, not per record.
#[derive(Default)]
pub struct StrColumnBuilder {
    buf: Vec<u8>,
    spans: Vec<Span>,
}

impl StrColumnBuilder {
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        StrColumnBuilder {
            buf: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(records),
        }
    }

    #[inline]
    pub fn push(&mut self, value: &[u8]) {
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(value);
        self.spans.push(Span {
            start,
            len: value.len() as u32,
        });
    }

    /// Append raw bytes that belong to no record (a separator, say) to the buffer.
    #[inline]
    pub fn push_gap(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Record a span over bytes already in the buffer.
    #[inline]
    pub fn push_span(&mut self, span: Span) {
        self.spans.push(span);
    }

    pub fn buf_len(&self) -> usize {
        self.buf.len()
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn finish(self) -> StrColumn {
        StrColumn {
            buf: Arc::from(self.buf),
            spans: self.spans,
        }
    }
}

/// One field's values for every record of a batch.
#[derive(Clone, Debug)]
pub enum Column {
    Str(StrColumn),
    Int(Vec<i64>),
    Float(Vec<f64>),
    Bool(Vec<bool>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Str(c) => c.len(),
            Column::Int(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn data_type(&self) -> DataType {
        match self {
            Column::Str(_) => DataType::Str,
            Column::Int(_) => DataType::Int,
            Column::Float(_) => DataType::Float,
            Column::Bool(_) => DataType::Bool,
        }
    }

    /// The value of record `i`.
    #[inline]
    pub fn value(&self, i: usize) -> Value<'_> {
        match self {
            Column::Str(c) => Value::Str(c.get(i)),
            Column::Int(v) => Value::Int(v[i]),
            Column::Float(v) => Value::Float(v[i]),
            Column::Bool(v) => Value::Bool(v[i]),
        }
    }

    /// The records at `rows`, in that order. Text stays in the shared buffer.
    pub fn take(&self, rows: &[u32]) -> Column {
        match self {
            Column::Str(c) => Column::Str(StrColumn {
                buf: c.buf.clone(),
                spans: rows.iter().map(|&r| c.spans[r as usize]).collect(),
            }),
            Column::Int(v) => Column::Int(rows.iter().map(|&r| v[r as usize]).collect()),
            Column::Float(v) => Column::Float(rows.iter().map(|&r| v[r as usize]).collect()),
            Column::Bool(v) => Column::Bool(rows.iter().map(|&r| v[r as usize]).collect()),
        }
    }

    /// An empty column of the given type.
    pub fn empty(ty: DataType) -> Column {
        match ty {
            DataType::Str => Column::Str(StrColumn::empty()),
            DataType::Int => Column::Int(Vec::new()),
            DataType::Float => Column::Float(Vec::new()),
            DataType::Bool => Column::Bool(Vec::new()),
        }
    }
}

/// One value of one record, borrowed from its column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Str(&'a [u8]),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for Value<'_> {
    /// Java's `toString` of the value, as Flink's print sink shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(&String::from_utf8_lossy(s)),
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => {
                if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e7 {
                    write!(f, "{v:.1}")
                } else {
                    write!(f, "{v}")
                }
            }
            Value::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// One row's key as the hash exchange routed it: its key group and the key's Java `hashCode`
/// (Flink's hash, `state::keygroup`), handed on so that the keyed operator reading the row
/// does not hash its key again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutedKey {
    pub key_group: u32,
    pub hash_code: i32,
}

/// The routed keys of every row of a batch: of the key in column `column`, key groups of
/// `max_parallelism`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedKeys {
    pub column: usize,
    pub max_parallelism: u32,
    pub keys: Vec<RoutedKey>,
}

/// A batch of records: one column per schema field, all of the same length.
///
/// With event time, each record also carries its timestamp (milliseconds since the epoch),
/// outside the schema as in Flink's `StreamRecord`: assigned where the pipeline declares
/// event time, kept by every operator that passes records on (a `flat_map`'s tokens get their
/// line's), read by windows.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub columns: Vec<Column>,
    /// Timestamps, the side-output mark and the length of a batch without columns, boxed so
    /// that a batch without them (and every channel slot) stays as small as its columns.
    meta: Option<Box<BatchMeta>>,
}

/// What only some batches carry.
#[derive(Clone, Debug, Default)]
struct BatchMeta {
    /// One timestamp per record, or `None` when the records have none.
    timestamps: Option<Vec<i64>>,
    /// Records of an operator's side output (a window's late records), which only a
    /// `side_output` operator reads; every other reader skips them.
    side_output: bool,
    /// Records of a batch without columns (with columns, their length counts).
    rows: usize,
    /// Each row's key, as the hash exchange that routed the batch computed it.
    routed_keys: Option<RoutedKeys>,
}

#[cfg(test)]
impl Batch {
    /// One text column holding `values`: the input of most operator tests.
    pub(crate) fn of_strs(values: &[&str]) -> Batch {
        let mut b = StrColumnBuilder::default();
        for v in values {
            b.push(v.as_bytes());
        }
        Batch::new(vec![Column::Str(b.finish())])
    }
}

impl Batch {
    /// A batch from columns of equal length.
    ///
    /// Panics if the lengths differ: that is a bug in the operator that built it, never
    /// something input can cause.
    pub fn new(columns: Vec<Column>) -> Batch {
        let len = columns.first().map_or(0, Column::len);
        assert!(
            columns.iter().all(|c| c.len() == len),
            "bug: columns of one batch differ in length"
        );
        Batch {
            columns,
            meta: None,
        }
    }

    /// A batch of `len` records with no fields (a source of nothing but a count, say).
    pub fn empty_with_len(len: usize) -> Batch {
        Batch {
            columns: Vec::new(),
            meta: (len > 0).then(|| {
                Box::new(BatchMeta {
                    rows: len,
                    ..BatchMeta::default()
                })
            }),
        }
    }

    /// The records' timestamps, if they have them.
    #[inline]
    pub fn timestamps(&self) -> Option<&[i64]> {
        self.meta.as_ref()?.timestamps.as_deref()
    }

    /// Gives the records timestamps (`None` takes them away).
    ///
    /// Panics if the count differs from the records': a bug in the operator, never input.
    pub fn set_timestamps(&mut self, timestamps: Option<Vec<i64>>) {
        if let Some(t) = &timestamps {
            assert_eq!(t.len(), self.len(), "bug: one timestamp per record");
        }
        self.meta_mut().timestamps = timestamps;
        self.drop_empty_meta();
    }

    /// This batch with `timestamps` (see [`Batch::set_timestamps`]).
    pub fn with_timestamps(mut self, timestamps: Option<Vec<i64>>) -> Batch {
        self.set_timestamps(timestamps);
        self
    }

    /// The rows' keys as the hash exchange routed them, if it did, for the key in `column`
    /// of `max_parallelism` key groups (else `None`: the reader hashes the keys itself).
    #[inline]
    pub fn routed_keys(&self, column: usize, max_parallelism: u32) -> Option<&[RoutedKey]> {
        let r = self.meta.as_ref()?.routed_keys.as_ref()?;
        (r.column == column && r.max_parallelism == max_parallelism).then_some(r.keys.as_slice())
    }

    /// Gives the rows their routed keys (see [`Batch::routed_keys`]).
    ///
    /// Panics if the count differs from the records': a bug in the exchange, never input.
    pub fn with_routed_keys(mut self, keys: RoutedKeys) -> Batch {
        assert_eq!(
            keys.keys.len(),
            self.len(),
            "bug: one routed key per record"
        );
        self.meta_mut().routed_keys = Some(keys);
        self
    }

    /// Takes the routed keys out (the keyed operator that reads them; its output is keyed
    /// by nothing).
    pub fn take_routed_keys(&mut self) -> Option<RoutedKeys> {
        let r = self.meta.as_mut()?.routed_keys.take();
        self.drop_empty_meta();
        r
    }

    /// Takes the timestamps out (an operator building a new batch from this one's rows).
    pub fn take_timestamps(&mut self) -> Option<Vec<i64>> {
        let t = self.meta.as_mut()?.timestamps.take();
        self.drop_empty_meta();
        t
    }

    #[inline]
    pub fn len(&self) -> usize {
        match self.columns.first() {
            Some(c) => c.len(),
            None => self.meta.as_ref().map_or(0, |m| m.rows),
        }
    }

    /// Whether these are side-output records (see [`Batch::into_side_output`]).
    #[inline]
    pub fn is_side_output(&self) -> bool {
        self.meta.as_ref().is_some_and(|m| m.side_output)
    }

    /// These records as an operator's side output.
    pub fn into_side_output(mut self) -> Batch {
        self.meta_mut().side_output = true;
        self
    }

    /// These records back in the main stream (what a `side_output` operator passes on).
    pub fn into_main_output(mut self) -> Batch {
        if let Some(m) = self.meta.as_mut() {
            m.side_output = false;
        }
        self.drop_empty_meta();
        self
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn column(&self, i: usize) -> &Column {
        &self.columns[i]
    }

    /// The records at `rows`, in that order.
    pub fn take(&self, rows: &[u32]) -> Batch {
        let mut taken = Batch {
            columns: self.columns.iter().map(|c| c.take(rows)).collect(),
            meta: self.meta.as_ref().map(|m| {
                Box::new(BatchMeta {
                    timestamps: m
                        .timestamps
                        .as_ref()
                        .map(|t| rows.iter().map(|&r| t[r as usize]).collect()),
                    side_output: m.side_output,
                    rows: 0,
                    routed_keys: m.routed_keys.as_ref().map(|r| RoutedKeys {
                        column: r.column,
                        max_parallelism: r.max_parallelism,
                        keys: rows.iter().map(|&i| r.keys[i as usize]).collect(),
                    }),
                })
            }),
        };
        if taken.columns.is_empty() {
            taken.meta_mut().rows = rows.len();
        }
        taken.drop_empty_meta();
        taken
    }

    fn meta_mut(&mut self) -> &mut BatchMeta {
        self.meta.get_or_insert_with(Default::default)
    }

    fn drop_empty_meta(&mut self) {
        if self.meta.as_ref().is_some_and(|m| {
            m.timestamps.is_none() && !m.side_output && m.rows == 0 && m.routed_keys.is_none()
        }) {
            self.meta = None;
        }
    }

    /// Record `i` as values, in column order (for printing and tests, not hot paths).
    pub fn row(&self, i: usize) -> Vec<Value<'_>> {
        self.columns.iter().map(|c| c.value(i)).collect()
    }
}

/// Wall-clock time in milliseconds since the epoch: processing time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_keeps_text_in_the_shared_buffer() {
        let mut b = StrColumnBuilder::default();
        for w in ["a", "bb", "ccc"] {
            b.push(w.as_bytes());
        }
        let col = b.finish();
        let batch = Batch::new(vec![Column::Str(col), Column::Int(vec![1, 2, 3])]);
        let picked = batch.take(&[2, 0]);
        assert_eq!(picked.len(), 2);
        match (&batch.columns[0], &picked.columns[0]) {
            (Column::Str(a), Column::Str(b)) => {
                assert!(Arc::ptr_eq(&a.buf, &b.buf));
                assert_eq!(b.get(0), b"ccc");
                assert_eq!(b.get(1), b"a");
            }
            _ => panic!("expected text columns"),
        }
        assert_eq!(picked.row(0)[1], Value::Int(3));
    }

    #[test]
    fn float_prints_as_java_does() {
        assert_eq!(Value::Float(3.0).to_string(), "3.0");
        assert_eq!(Value::Float(2.5).to_string(), "2.5");
    }
}
