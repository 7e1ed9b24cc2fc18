//! `type: window`: aggregates per key (or over everything) in tumbling, sliding or session
//! windows, on event time or processing time, as Flink's
//! `keyBy(key).window(…).aggregate(…)`.
//!
//! Windows are Flink's `TimeWindow`: `[start, end)` in milliseconds since the epoch; tumbling
//! and sliding windows start at multiples of their size (slide) since the epoch; a session
//! is `[first, last + gap)` and two sessions of a key merge when they meet. A window fires
//! when event time (the watermark) reaches `end - 1`, emitting one record per key: the key,
//! `window_start`, `window_end` and the aggregates, stamped `end - 1`. With
//! `allowed-lateness`, a fired window is kept that much longer: a late record for it updates
//! it and emits the key's result again. A record whose windows are all past their lateness
//! is dropped and counted (`records-discarded`), or with `late-output: <tag>` sent to that
//! side output instead (Flink's `sideOutputLateData`), which a `side_output` operator reads.
//! On processing time, windows follow the
//! clock and fire when it passes their end.
//!
//! The windows' contents are keyed state ([`crate::state::window`]), snapshotted and moved
//! by key group like `key_by`'s. Each key is hashed once; nothing per key lives outside the
//! store.

use crate::operators::sources::{duration_serde, opt_duration_serde};
use crate::operators::transforms::map::ordered_fields;
use crate::operators::{
    did_you_mean_suffix, typed_field, BuildContext, EndOfInput, Operator, OperatorError,
    OperatorSpec, Problem, RestoredState,
};
use crate::record::{Batch, Column, DataType, Schema, StrColumnBuilder, Value, BATCH_SIZE};
use crate::state::keygroup::{hash_bool, hash_int, hash_str, KeyGroupRange, KeyHash};
use crate::state::window::acc::{Acc, AggKind};
use crate::state::window::{SessionAdd, WindowStore};
use crate::state::OperatorSnapshot;
use std::time::Duration;

/// Which clock windows follow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeKind {
    /// The records' timestamps and the watermarks (Flink's `…EventTimeWindows`).
    #[default]
    Event,
    /// The wall clock when a record arrives (`…ProcessingTimeWindows`).
    Processing,
}

/// `sliding: {size: 10 min, slide: 1 min}`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlidingConfig {
    #[serde(with = "duration_serde")]
    pub size: Duration,
    #[serde(with = "duration_serde")]
    pub slide: Duration,
}

/// `session: {gap: 30 s}`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    #[serde(with = "duration_serde")]
    pub gap: Duration,
}

/// What a user writes under `type: window`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WindowConfig {
    /// The key field (str, int or bool); absent: one window over all records (parallelism 1).
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default, with = "opt_duration_serde")]
    pub tumbling: Option<Duration>,
    #[serde(default)]
    pub sliding: Option<SlidingConfig>,
    #[serde(default)]
    pub session: Option<SessionConfig>,
    #[serde(default)]
    pub time: TimeKind,
    /// Output name → `function(field)`, in order.
    #[serde(deserialize_with = "ordered_fields")]
    pub aggregates: Vec<(String, String)>,
    /// How long after its end a window still takes late records (event time only).
    #[serde(default, with = "duration_serde")]
    pub allowed_lateness: Duration,
    /// The side output records later than that go to (a `side_output` operator reads it),
    /// instead of being dropped.
    #[serde(default)]
    pub late_output: Option<String>,
}

/// The functions `aggregates` may use.
const FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "first",
    "last",
    "count_distinct",
];

/// Names of the window bounds in the output.
const WINDOW_START: &str = "window_start";
const WINDOW_END: &str = "window_end";

/// Window sizes and gaps are whole milliseconds, at most about 290 million years.
const MAX_MS: u128 = 1 << 53;
/// A sliding window's `size / slide`: the windows each record goes to.
const MAX_WINDOWS_PER_RECORD: i64 = 1000;

/// The window kind, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Tumbling(i64),
    Sliding { size: i64, slide: i64 },
    Session(i64),
}

/// One aggregate: its name, kind, input column and type.
type ResolvedAgg = (String, AggKind, Option<(usize, DataType)>);

/// Everything checked, with the input's columns.
struct Resolved {
    key: Option<(usize, DataType)>,
    shape: Shape,
    /// Per aggregate: its name, kind, input column and type.
    aggs: Vec<ResolvedAgg>,
}

/// A duration setting in whole milliseconds above 0.
fn ms(field: &str, d: Duration, problems: &mut Vec<Problem>) -> i64 {
    if d.is_zero() || !d.subsec_nanos().is_multiple_of(1_000_000) || d.as_millis() > MAX_MS {
        problems.push(Problem::new(
            field,
            "must be a whole number of milliseconds above 0 (`500 ms`, `10 s`, `1 min`)",
        ));
        return 1;
    }
    d.as_millis() as i64
}

impl WindowConfig {
    fn shape(&self, problems: &mut Vec<Problem>) -> Option<Shape> {
        match (&self.tumbling, &self.sliding, &self.session) {
            (Some(t), None, None) => Some(Shape::Tumbling(ms("tumbling", *t, problems))),
            (None, Some(s), None) => {
                let size = ms("sliding.size", s.size, problems);
                let slide = ms("sliding.slide", s.slide, problems);
                if size / slide > MAX_WINDOWS_PER_RECORD {
                    problems.push(Problem::new(
                        "sliding",
                        format!(
                            "size / slide is {}: each record would go to that many windows (at most {MAX_WINDOWS_PER_RECORD}); use a longer slide",
                            size / slide
                        ),
                    ));
                }
                Some(Shape::Sliding { size, slide })
            }
            (None, None, Some(s)) => Some(Shape::Session(ms("session.gap", s.gap, problems))),
            (None, None, None) => {
                problems.push(Problem::new(
                    "",
                    "a window needs its kind: `tumbling: 1 min`, `sliding: {size: 10 min, slide: 1 min}` or `session: {gap: 30 s}`",
                ));
                None
            }
            _ => {
                problems.push(Problem::new(
                    "",
                    "set one window kind: `tumbling`, `sliding` or `session`, not several",
                ));
                None
            }
        }
    }

    /// One `function(field)`.
    fn aggregate(
        &self,
        name: &str,
        text: &str,
        input: &Schema,
    ) -> Result<(AggKind, Option<(usize, DataType)>), Problem> {
        let at = format!("aggregates.{name}");
        let text = text.trim();
        let (func, arg) = match text.split_once('(') {
            Some((f, rest)) => match rest.trim_end().strip_suffix(')') {
                Some(arg) => (f.trim(), arg.trim()),
                None => {
                    return Err(Problem::new(
                        at,
                        format!("\"{text}\" is not `function(field)`: the `)` is missing"),
                    ))
                }
            },
            None => (text, ""),
        };
        if !FUNCTIONS.contains(&func) {
            return Err(Problem::new(
                at,
                format!(
                    "unknown function \"{func}\"{} (functions: {})",
                    did_you_mean_suffix(func, FUNCTIONS.iter().copied()),
                    FUNCTIONS.join(", ")
                ),
            ));
        }
        if func == "count" {
            if !arg.is_empty() && arg != "*" {
                return Err(Problem::new(
                    at,
                    "`count()` counts records and takes no field; write `count()`",
                ));
            }
            return Ok((AggKind::Count, None));
        }
        if arg.is_empty() {
            return Err(Problem::new(
                at,
                format!("`{func}` needs the field it aggregates: `{func}(amount)`"),
            ));
        }
        let numeric = [DataType::Int, DataType::Float];
        let any = [
            DataType::Str,
            DataType::Int,
            DataType::Float,
            DataType::Bool,
        ];
        let allowed: &[DataType] = if matches!(func, "sum" | "avg") {
            &numeric
        } else {
            &any
        };
        let (col, ty) = typed_field(&at, arg, input, allowed)?;
        let kind = match (func, ty) {
            ("sum", DataType::Float) => AggKind::SumFloat,
            ("sum", _) => AggKind::SumInt,
            ("min", _) => AggKind::Min,
            ("max", _) => AggKind::Max,
            ("avg", _) => AggKind::Avg,
            ("first", _) => AggKind::First,
            ("last", _) => AggKind::Last,
            _ => AggKind::CountDistinct,
        };
        Ok((kind, Some((col, ty))))
    }

    fn resolve(&self, input: &Schema) -> Result<Resolved, Vec<Problem>> {
        let mut problems = Vec::new();
        let shape = self.shape(&mut problems);
        let key = match &self.key {
            None => None,
            Some(k) => typed_field(
                "key",
                k,
                input,
                &[DataType::Str, DataType::Int, DataType::Bool],
            )
            .map_err(|p| problems.push(p))
            .ok(),
        };
        if self.aggregates.is_empty() {
            problems.push(Problem::new(
                "aggregates",
                "name at least one aggregate: `aggregates: {count: count(), total: sum(amount)}`",
            ));
        }
        let mut aggs = Vec::new();
        for (name, text) in &self.aggregates {
            let taken = [Some(WINDOW_START), Some(WINDOW_END), self.key.as_deref()];
            if taken.contains(&Some(name.as_str())) {
                problems.push(Problem::new(
                    format!("aggregates.{name}"),
                    format!("\"{name}\" is already an output field (the key, window_start, window_end); name the aggregate otherwise"),
                ));
                continue;
            }
            match self.aggregate(name, text, input) {
                Ok((kind, col)) => aggs.push((name.clone(), kind, col)),
                Err(p) => problems.push(p),
            }
        }
        if self.time == TimeKind::Processing && self.late_output.is_some() {
            problems.push(Problem::new(
                "late-output",
                "applies to event time only: on processing time no record is late",
            ));
        }
        if self.time == TimeKind::Processing && !self.allowed_lateness.is_zero() {
            problems.push(Problem::new(
                "allowed-lateness",
                "applies to event time only: on processing time no record is late",
            ));
        }
        if !self
            .allowed_lateness
            .subsec_nanos()
            .is_multiple_of(1_000_000)
        {
            problems.push(Problem::new(
                "allowed-lateness",
                "must be a whole number of milliseconds",
            ));
        }
        match shape {
            Some(shape) if problems.is_empty() => Ok(Resolved { key, shape, aggs }),
            _ => Err(problems),
        }
    }
}

impl OperatorSpec for WindowConfig {
    fn output_schema(&self, input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        let Some(input) = input else {
            return Err(vec![Problem::new("", "a window needs an input")]);
        };
        let r = self.resolve(input)?;
        let mut fields = Vec::new();
        if let (Some(name), Some((_, ty))) = (&self.key, r.key) {
            fields.push((name.clone(), ty));
        }
        fields.push((WINDOW_START.to_string(), DataType::Int));
        fields.push((WINDOW_END.to_string(), DataType::Int));
        for (name, kind, col) in &r.aggs {
            fields.push((name.clone(), kind.output_type(col.map(|(_, t)| t))));
        }
        Ok(Schema::new(fields))
    }

    fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    fn side_outputs(&self) -> Vec<&str> {
        self.late_output.as_deref().into_iter().collect()
    }

    fn key_field(&self) -> Option<&str> {
        self.key.as_deref()
    }

    fn required_parallelism(&self) -> Option<u32> {
        // One window over everything: one subtask sees every record (Flink's `windowAll`).
        self.key.is_none().then_some(1)
    }

    fn needs_event_time(&self) -> bool {
        self.time == TimeKind::Event
    }

    fn makes_event_time(&self, _input: bool) -> bool {
        // Results are stamped with their window's last millisecond, on either clock.
        true
    }
}

/// Flink's `TimeWindow.getWindowStartWithOffset` with offset 0.
#[inline(always)]
fn window_start(ts: i64, size: i64) -> i64 {
    let r = ts.rem_euclid(size);
    ts - r
}

/// The output columns of fired windows, built as results arrive.
struct Results {
    key: Option<DataType>,
    keys: Vec<u8>,
    key_ends: Vec<usize>,
    starts: Vec<i64>,
    ends: Vec<i64>,
    values: Vec<Builder>,
}

enum Builder {
    Str(StrColumnBuilder),
    Int(Vec<i64>),
    Float(Vec<f64>),
    Bool(Vec<bool>),
}

impl Builder {
    fn new(ty: DataType) -> Builder {
        match ty {
            DataType::Str => Builder::Str(StrColumnBuilder::default()),
            DataType::Int => Builder::Int(Vec::new()),
            DataType::Float => Builder::Float(Vec::new()),
            DataType::Bool => Builder::Bool(Vec::new()),
        }
    }

    fn push(&mut self, v: Value<'_>) {
        match (self, v) {
            (Builder::Str(b), Value::Str(s)) => b.push(s),
            (Builder::Int(b), Value::Int(x)) => b.push(x),
            (Builder::Float(b), Value::Float(x)) => b.push(x),
            (Builder::Bool(b), Value::Bool(x)) => b.push(x),
            // A result always has its column's type; keep the lengths equal regardless.
            (Builder::Str(b), _) => b.push(b""),
            (Builder::Int(b), _) => b.push(0),
            (Builder::Float(b), _) => b.push(0.0),
            (Builder::Bool(b), _) => b.push(false),
        }
    }

    fn finish(self) -> Column {
        match self {
            Builder::Str(b) => Column::Str(b.finish()),
            Builder::Int(v) => Column::Int(v),
            Builder::Float(v) => Column::Float(v),
            Builder::Bool(v) => Column::Bool(v),
        }
    }
}

impl Results {
    fn new(key: Option<DataType>, types: &[DataType]) -> Results {
        Results {
            key,
            keys: Vec::new(),
            key_ends: Vec::new(),
            starts: Vec::new(),
            ends: Vec::new(),
            values: types.iter().map(|&t| Builder::new(t)).collect(),
        }
    }

    fn push(&mut self, key: &[u8], start: i64, end: i64, accs: &[Acc]) {
        self.keys.extend_from_slice(key);
        self.key_ends.push(self.keys.len());
        self.starts.push(start);
        self.ends.push(end);
        for (b, a) in self.values.iter_mut().zip(accs) {
            b.push(a.result());
        }
    }

    fn len(&self) -> usize {
        self.starts.len()
    }

    /// The results so far as one batch, stamped with each window's last millisecond.
    fn take(&mut self) -> Option<Batch> {
        if self.starts.is_empty() {
            return None;
        }
        let types: Vec<DataType> = self
            .values
            .iter()
            .map(|b| match b {
                Builder::Str(_) => DataType::Str,
                Builder::Int(_) => DataType::Int,
                Builder::Float(_) => DataType::Float,
                Builder::Bool(_) => DataType::Bool,
            })
            .collect();
        let mut fresh = Results::new(self.key, &types);
        std::mem::swap(self, &mut fresh);
        let mut columns = Vec::with_capacity(fresh.values.len() + 3);
        if let Some(ty) = fresh.key {
            columns.push(key_column(ty, &fresh.keys, &fresh.key_ends));
        }
        let stamps: Vec<i64> = fresh.ends.iter().map(|e| e.saturating_sub(1)).collect();
        columns.push(Column::Int(fresh.starts));
        columns.push(Column::Int(fresh.ends));
        columns.extend(fresh.values.into_iter().map(Builder::finish));
        Some(Batch::new(columns).with_timestamps(Some(stamps)))
    }
}

/// A key column from the keys' bytes (text as is, integers little endian, booleans a byte).
fn key_column(ty: DataType, bytes: &[u8], ends: &[usize]) -> Column {
    let mut start = 0;
    let keys = ends.iter().map(|&end| {
        let k = &bytes[start..end];
        start = end;
        k
    });
    match ty {
        DataType::Str => {
            let mut b = StrColumnBuilder::with_capacity(ends.len(), bytes.len());
            keys.for_each(|k| b.push(k));
            Column::Str(b.finish())
        }
        DataType::Int => Column::Int(
            keys.map(|k| k.try_into().map_or(0, i64::from_le_bytes))
                .collect(),
        ),
        DataType::Bool => Column::Bool(keys.map(|k| k.first() == Some(&1)).collect()),
        DataType::Float => Column::Float(Vec::new()),
    }
}

/// The aggregates' input values of record `row` (a count, which reads no field, gets 0).
#[inline]
fn values_at<'a>(
    vals: &mut Vec<Value<'a>>,
    inputs: &[Option<usize>],
    cols: &'a [Column],
    row: usize,
) {
    vals.clear();
    vals.extend(
        inputs
            .iter()
            .map(|c| c.map_or(Value::Int(0), |c| cols[c].value(row))),
    );
}

/// A running `window` subtask.
pub struct Window {
    operator_id: String,
    shape: Shape,
    time: TimeKind,
    key: Option<(usize, DataType)>,
    /// Per aggregate: its input column.
    inputs: Vec<Option<usize>>,
    lateness: i64,
    max_parallelism: u32,
    store: WindowStore,
    results: Results,
    /// Event time so far (`i64::MIN` before the first watermark).
    watermark: i64,
    dropped: u64,
    ended: Option<EndOfInput>,
    /// With `late-output`: the rows of the batch being processed that were too late.
    late_rows: Option<Vec<u32>>,
}

impl Window {
    pub fn new(
        c: &WindowConfig,
        input: &Schema,
        ctx: &BuildContext,
    ) -> Result<Self, OperatorError> {
        let r = c.resolve(input).map_err(|ps| {
            let msgs: Vec<String> = ps
                .into_iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            OperatorError::Config(msgs.join("; "))
        })?;
        let kinds: Vec<AggKind> = r.aggs.iter().map(|(_, k, _)| *k).collect();
        let types: Vec<DataType> = r
            .aggs
            .iter()
            .map(|(_, k, col)| k.output_type(col.map(|(_, t)| t)))
            .collect();
        let lateness = crate::operators::event_time::millis(c.allowed_lateness);
        let range = KeyGroupRange::for_subtask(ctx.subtask, ctx.parallelism, ctx.max_parallelism);
        Ok(Window {
            operator_id: ctx.operator_id.clone(),
            shape: r.shape,
            time: c.time,
            key: r.key,
            inputs: r
                .aggs
                .iter()
                .map(|(_, _, col)| col.map(|(i, _)| i))
                .collect(),
            lateness,
            max_parallelism: ctx.max_parallelism,
            store: WindowStore::new(range, ctx.max_parallelism, &kinds, lateness),
            results: Results::new(r.key.map(|(_, t)| t), &types),
            watermark: i64::MIN,
            dropped: 0,
            ended: None,
            late_rows: c.late_output.as_ref().map(|_| Vec::new()),
        })
    }

    /// The state, for snapshots and tests.
    pub fn store(&self) -> &WindowStore {
        &self.store
    }

    /// The time windows are judged by now: the watermark, or the clock.
    fn now(&self) -> i64 {
        match self.time {
            TimeKind::Event => self.watermark,
            TimeKind::Processing => crate::record::now_ms(),
        }
    }

    fn flush(&mut self, out: &mut Vec<Batch>) {
        if let Some(b) = self.results.take() {
            out.push(b);
        }
    }

    /// Adds one record (key, hash, values, timestamp) to its windows; `false` when it was too
    /// late for all of them.
    #[inline]
    fn add(
        &mut self,
        hash: KeyHash,
        key: &[u8],
        vals: &[Value<'_>],
        ts: i64,
        now: i64,
    ) -> Result<bool, OperatorError> {
        let kg = hash.key_group(self.max_parallelism);
        let err = |e: crate::state::window::WindowStateError| {
            OperatorError::Data(format!("window \"{}\": {e}", self.operator_id))
        };
        let late = |end: i64| end.saturating_sub(1).saturating_add(self.lateness) <= now;
        let mut taken = false;
        match self.shape {
            Shape::Tumbling(size) => {
                let start = window_start(ts, size);
                let end = start.saturating_add(size);
                if !late(end) {
                    taken = true;
                    if self
                        .store
                        .add_aligned(kg, hash.table, key, start, end, vals, ts, now)
                        .map_err(err)?
                    {
                        let results = &mut self.results;
                        self.store
                            .emit_key(kg, hash.table, key, start, &mut |k, s, e, a| {
                                results.push(k, s, e, a)
                            });
                    }
                }
            }
            Shape::Sliding { size, slide } => {
                let mut start = window_start(ts, slide);
                while start > ts.saturating_sub(size) {
                    let end = start.saturating_add(size);
                    if !late(end) {
                        taken = true;
                        if self
                            .store
                            .add_aligned(kg, hash.table, key, start, end, vals, ts, now)
                            .map_err(err)?
                        {
                            let results = &mut self.results;
                            self.store
                                .emit_key(kg, hash.table, key, start, &mut |k, s, e, a| {
                                    results.push(k, s, e, a)
                                });
                        }
                    }
                    start -= slide;
                }
            }
            Shape::Session(gap) => {
                let results = &mut self.results;
                let added = self
                    .store
                    .add_session(kg, key, ts, gap, vals, now, &mut |k, s, e, a| {
                        results.push(k, s, e, a)
                    })
                    .map_err(err)?;
                taken = added == SessionAdd::Added;
            }
        }
        Ok(taken)
    }

    /// Row `row` was too late: kept for the side output, or dropped and counted.
    fn late(&mut self, row: usize) {
        match &mut self.late_rows {
            Some(rows) => rows.push(row as u32),
            None => self.dropped += 1,
        }
    }

    fn fire(&mut self, time: i64, out: &mut Vec<Batch>) {
        let results = &mut self.results;
        let mut pending = Vec::new();
        self.store.fire(time, &mut |k, s, e, a| {
            results.push(k, s, e, a);
            if results.len() >= BATCH_SIZE {
                pending.extend(results.take());
            }
        });
        out.extend(pending);
        self.flush(out);
    }
}

impl Operator for Window {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        let now = self.now();
        let clock;
        let stamps: &[i64] = match (self.time, batch.timestamps()) {
            (TimeKind::Event, Some(t)) => t,
            (TimeKind::Event, None) => {
                return Err(OperatorError::Data(format!(
                    "window \"{}\": records without event time reached an event-time window; set \
                     `event-time:` on the source, add a `type: assign` step before the window, or \
                     use `time: processing`",
                    self.operator_id
                )))
            }
            (TimeKind::Processing, _) => {
                clock = vec![now; n];
                &clock
            }
        };
        let cols = &batch.columns;
        let mut vals: Vec<Value<'_>> = Vec::with_capacity(self.inputs.len());
        let inputs = self.inputs.clone();
        match self.key.map(|(c, _)| &cols[c]) {
            None => {
                for (row, &ts) in stamps.iter().enumerate() {
                    values_at(&mut vals, &inputs, cols, row);
                    if !self.add(hash_str(b""), b"", &vals, ts, now)? {
                        self.late(row);
                    }
                }
            }
            Some(Column::Str(keys)) => {
                for (row, &ts) in stamps.iter().enumerate() {
                    values_at(&mut vals, &inputs, cols, row);
                    let k = keys.get(row);
                    if !self.add(hash_str(k), k, &vals, ts, now)? {
                        self.late(row);
                    }
                }
            }
            Some(Column::Int(keys)) => {
                for (row, &ts) in stamps.iter().enumerate() {
                    values_at(&mut vals, &inputs, cols, row);
                    let k = keys[row];
                    if !self.add(hash_int(k), &k.to_le_bytes(), &vals, ts, now)? {
                        self.late(row);
                    }
                }
            }
            Some(Column::Bool(keys)) => {
                for (row, &ts) in stamps.iter().enumerate() {
                    values_at(&mut vals, &inputs, cols, row);
                    let k = keys[row];
                    if !self.add(hash_bool(k), &[k as u8], &vals, ts, now)? {
                        self.late(row);
                    }
                }
            }
            Some(Column::Float(_)) => {
                return Err(OperatorError::Config(format!(
                    "bug: window \"{}\" got a float key column",
                    self.operator_id
                )))
            }
        }
        self.flush(out);
        if let Some(rows) = self.late_rows.as_mut().filter(|r| !r.is_empty()) {
            // The late records as they came, with their times, on the side output.
            out.push(batch.take(rows).into_side_output());
            rows.clear();
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: i64,
        out: &mut Vec<Batch>,
    ) -> Result<Option<i64>, OperatorError> {
        if self.time == TimeKind::Event && watermark > self.watermark {
            self.watermark = watermark;
            self.fire(watermark, out);
        }
        Ok(Some(watermark))
    }

    fn next_timer(&self) -> Option<i64> {
        match self.time {
            TimeKind::Processing => self.store.next_due(),
            TimeKind::Event => None,
        }
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        if self.time == TimeKind::Processing {
            self.fire(now, out);
        }
        Ok(())
    }

    fn end_of_input(&mut self, why: EndOfInput) {
        self.ended = Some(why);
    }

    /// A finished input fires what is left on processing time (event time did so at the
    /// final watermark); a stopped one keeps it for a restore.
    fn finish(&mut self, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        if self.time == TimeKind::Processing && self.ended != Some(EndOfInput::Stopped) {
            self.fire(i64::MAX, out);
        }
        Ok(())
    }

    fn records_discarded(&self) -> u64 {
        self.dropped
    }

    /// A copy-on-write view of the open windows: `Arc` clones, nothing per key.
    fn snapshot_state(&mut self) -> Option<OperatorSnapshot> {
        Some(OperatorSnapshot::Keyed(std::sync::Arc::new(
            self.store.snapshot(),
        )))
    }

    fn restore_state(&mut self, state: RestoredState) -> Result<(), OperatorError> {
        let RestoredState::Keyed(runs) = state else {
            return Err(OperatorError::Config(format!(
                "window \"{}\": the checkpoint holds another operator's state (a source's or a \
                 sink's) under this id; give the window another `id`",
                self.operator_id
            )));
        };
        self.store
            .restore(&runs)
            .map_err(|e| OperatorError::Config(format!("window \"{}\": {e}", self.operator_id)))
    }
}

#[cfg(test)]
mod tests;
