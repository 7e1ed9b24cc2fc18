//! `type: key_by`: rolling aggregates (sum, count, min, max) per key, in keyed state.
//!
//! As Flink's `keyBy(0).sum(1)`: one output record per input record, carrying the key and the
//! running aggregate of its key so far. The runtime routes records here by key group, so a
//! subtask sees only keys of its own groups; the values live in a [`KeyedStore`] that
//! checkpoints snapshot.
//!
//! Each key is hashed once (Flink's hash, [`crate::state::keygroup`]): by the hash exchange
//! that routed it here, which hands each row's key group and hash code on with the batch
//! (`Batch::routed_keys`), or else here. The output key column is the input column moved, not
//! copied. It must not hash keys with anything else, and never keeps per-key data outside the
//! store (a snapshot would miss it).

use crate::operators::{
    typed_field, BuildContext, Operator, OperatorError, OperatorSpec, Problem, RestoredState,
};
use crate::record::{Batch, Column, DataType, RoutedKey, Schema};
use crate::state::keyed::{KeyedStateError, KeyedStore};
use crate::state::keygroup::{
    hash_bool, hash_int, str_hash_code, KeyGroupRange, KeyHash, KeyPlace,
};
use crate::state::OperatorSnapshot;

/// The rolling aggregate to keep per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    Sum,
    Count,
    Min,
    Max,
}

impl Aggregate {
    fn name(self) -> &'static str {
        match self {
            Aggregate::Sum => "sum",
            Aggregate::Count => "count",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
        }
    }
}

/// What a user writes under `type: key_by`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeyByConfig {
    /// The key field (str, int or bool).
    pub key: String,
    pub aggregate: Aggregate,
    /// The aggregated numeric field: required for sum/min/max, not allowed for count.
    #[serde(default)]
    pub field: Option<String>,
    /// The aggregate's field name; default `field` (sum/min/max) or `count`.
    #[serde(default)]
    pub output: Option<String>,
}

/// Where the key and value columns are, checked against the input.
struct Resolved {
    key_col: usize,
    key_ty: DataType,
    /// Column and type of the aggregated field (`None` for count).
    value: Option<(usize, DataType)>,
    output: String,
}

impl KeyByConfig {
    fn resolve(&self, input: &Schema) -> Result<Resolved, Vec<Problem>> {
        let mut problems = Vec::new();
        let key = typed_field(
            "key",
            &self.key,
            input,
            &[DataType::Str, DataType::Int, DataType::Bool],
        )
        .map_err(|p| problems.push(p))
        .ok();
        let value = match (self.aggregate, &self.field) {
            (Aggregate::Count, None) => None,
            (Aggregate::Count, Some(_)) => {
                problems.push(Problem::new(
                    "field",
                    "`aggregate: count` counts records and takes no `field`; remove it",
                ));
                None
            }
            (agg, None) => {
                problems.push(Problem::new(
                    "field",
                    format!(
                        "`aggregate: {}` needs `field:`, the numeric field to aggregate",
                        agg.name()
                    ),
                ));
                None
            }
            (_, Some(f)) => typed_field("field", f, input, &[DataType::Int, DataType::Float])
                .map_err(|p| problems.push(p))
                .ok(),
        };
        let output = self
            .output
            .clone()
            .or_else(|| self.field.clone())
            .unwrap_or_else(|| "count".to_string());
        if output == self.key {
            problems.push(Problem::new(
                "output",
                format!("the aggregate's name \"{output}\" is the key's; choose another `output:`"),
            ));
        }
        match key {
            Some((key_col, key_ty)) if problems.is_empty() => Ok(Resolved {
                key_col,
                key_ty,
                value,
                output,
            }),
            _ => Err(problems),
        }
    }
}

impl OperatorSpec for KeyByConfig {
    fn output_schema(&self, input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        let Some(input) = input else {
            return Err(vec![Problem::new("", "key_by needs an input")]);
        };
        let r = self.resolve(input)?;
        let out_ty = r.value.map_or(DataType::Int, |(_, ty)| ty);
        Ok(Schema::new([
            (self.key.clone(), r.key_ty),
            (r.output, out_ty),
        ]))
    }

    fn is_keyed(&self) -> bool {
        true
    }

    fn key_field(&self) -> Option<&str> {
        Some(&self.key)
    }
}

/// How one record changes its key's accumulator; values are i64 or f64 bits.
#[derive(Debug, Clone, Copy)]
enum Step {
    Count,
    SumInt,
    SumFloat,
    MinInt,
    MaxInt,
    MinFloat,
    MaxFloat,
}

impl Step {
    /// The accumulator of a new key, before its first record is applied.
    #[inline(always)]
    fn init(self, v: u64) -> u64 {
        match self {
            Step::Count | Step::SumInt => 0,
            Step::SumFloat => 0f64.to_bits(),
            // min/max of one value is that value.
            Step::MinInt | Step::MaxInt | Step::MinFloat | Step::MaxFloat => v,
        }
    }

    #[inline(always)]
    fn apply(self, acc: &mut u64, v: u64) {
        *acc = match self {
            Step::Count => *acc + 1,
            // Java's long arithmetic wraps; so does Flink's sum.
            Step::SumInt => (*acc as i64).wrapping_add(v as i64) as u64,
            Step::SumFloat => (f64::from_bits(*acc) + f64::from_bits(v)).to_bits(),
            Step::MinInt => (*acc as i64).min(v as i64) as u64,
            Step::MaxInt => (*acc as i64).max(v as i64) as u64,
            Step::MinFloat => f64::from_bits(*acc).min(f64::from_bits(v)).to_bits(),
            Step::MaxFloat => f64::from_bits(*acc).max(f64::from_bits(v)).to_bits(),
        }
    }
}

/// A running `key_by` subtask.
pub struct KeyBy {
    operator_id: String,
    key_col: usize,
    value_col: Option<usize>,
    step: Step,
    out_float: bool,
    store: KeyedStore,
}

impl KeyBy {
    pub fn new(c: &KeyByConfig, input: &Schema, ctx: &BuildContext) -> Result<Self, OperatorError> {
        let r = c.resolve(input).map_err(|ps| {
            let msgs: Vec<String> = ps.into_iter().map(|p| p.message).collect();
            OperatorError::Config(msgs.join("; "))
        })?;
        let float = matches!(r.value, Some((_, DataType::Float)));
        let step = match (c.aggregate, float) {
            (Aggregate::Count, _) => Step::Count,
            (Aggregate::Sum, false) => Step::SumInt,
            (Aggregate::Sum, true) => Step::SumFloat,
            (Aggregate::Min, false) => Step::MinInt,
            (Aggregate::Min, true) => Step::MinFloat,
            (Aggregate::Max, false) => Step::MaxInt,
            (Aggregate::Max, true) => Step::MaxFloat,
        };
        let range = KeyGroupRange::for_subtask(ctx.subtask, ctx.parallelism, ctx.max_parallelism);
        Ok(KeyBy {
            operator_id: ctx.operator_id.clone(),
            key_col: r.key_col,
            value_col: r.value.map(|(i, _)| i),
            step,
            out_float: float,
            store: if ctx.delta_checkpoints {
                KeyedStore::new(range, ctx.max_parallelism)
            } else {
                KeyedStore::new(range, ctx.max_parallelism).without_change_tracking()
            },
        })
    }

    /// The keyed values, for snapshots and tests.
    pub fn store(&self) -> &KeyedStore {
        &self.store
    }

    /// Folds each row of `key` (with its routed key, if the exchange handed them on) into
    /// the store and pushes its new accumulator to `out`.
    fn fold(
        &mut self,
        key: &Column,
        routed: Option<&[RoutedKey]>,
        values: &[u64],
        out: &mut Vec<u64>,
    ) -> Result<(), OperatorError> {
        let f = Fold {
            store: &mut self.store,
            routed,
            step: self.step,
            values,
        };
        // One loop per key type, so the inner loop has no type dispatch.
        match key {
            Column::Str(c) => f.run(
                c.len(),
                |i| c.get(i),
                |i| KeyHash::from_java_hash_code(str_hash_code(c, i)),
                out,
            ),
            Column::Int(ks) => f.run(ks.len(), |i| ks[i].to_le_bytes(), |i| hash_int(ks[i]), out),
            Column::Bool(ks) => f.run(ks.len(), |i| [ks[i] as u8], |i| hash_bool(ks[i]), out),
            Column::Float(_) => {
                return Err(OperatorError::Config(format!(
                    "bug: key_by \"{}\" got a float key column",
                    self.operator_id
                )))
            }
        }
        .map_err(|e| OperatorError::Data(format!("key_by \"{}\": {e}", self.operator_id)))
    }
}

/// Keys looked up per run: the first pass finds each key's place (from the routed key or by
/// hashing it) and starts loading its shard, the second starts loading its table slot, the
/// third updates them, so that a run's cache misses overlap (with 1M keys nearly every
/// lookup misses the cache; one after another they were the whole cost).
const RUN: usize = 32;

/// One batch's fold: where it goes, the routed keys of its rows (if the exchange handed them
/// on), how each row changes its key's accumulator and the rows' values (none for count).
struct Fold<'a> {
    store: &'a mut KeyedStore,
    routed: Option<&'a [RoutedKey]>,
    step: Step,
    values: &'a [u64],
}

impl Fold<'_> {
    /// Applies the step for keys `0..n` (`key(i)`, of hash `hash(i)` unless routed) and
    /// pushes each key's new accumulator to `out`.
    fn run<K: AsRef<[u8]>>(
        self,
        n: usize,
        key: impl Fn(usize) -> K,
        hash: impl Fn(usize) -> KeyHash,
        out: &mut Vec<u64>,
    ) -> Result<(), KeyedStateError> {
        let groups = self.store.key_groups();
        match self.routed {
            Some(routed) => self.keys(
                n,
                key,
                |i| {
                    let place = KeyPlace::of_routed(routed[i]);
                    debug_assert_eq!(place, groups.place(hash(i)), "routed key {i}");
                    place
                },
                out,
            ),
            None => self.keys(n, key, |i| groups.place(hash(i)), out),
        }
    }

    fn keys<K: AsRef<[u8]>>(
        self,
        n: usize,
        key: impl Fn(usize) -> K,
        place: impl Fn(usize) -> KeyPlace,
        out: &mut Vec<u64>,
    ) -> Result<(), KeyedStateError> {
        let (store, step, values) = (self.store, self.step, self.values);
        let mut places = [KeyPlace {
            key_group: 0,
            table: 0,
        }; RUN];
        for start in (0..n).step_by(RUN) {
            let run = &mut places[..RUN.min(n - start)];
            for (j, p) in run.iter_mut().enumerate() {
                *p = place(start + j);
                store.prefetch_shard(*p);
            }
            for p in run.iter() {
                store.prefetch_slot(*p);
            }
            for (j, p) in run.iter().enumerate() {
                let i = start + j;
                let v = values.get(i).copied().unwrap_or(0);
                let acc = store.get_or_insert_at(*p, key(i).as_ref(), step.init(v))?;
                step.apply(acc, v);
                out.push(*acc);
            }
        }
        Ok(())
    }
}

impl Operator for KeyBy {
    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        // Each update keeps the timestamp of the record that caused it.
        let timestamps = batch.take_timestamps();
        // The keys as the exchange routed them, if it handed them on for this key column.
        let routed = batch.take_routed_keys().filter(|r| {
            r.column == self.key_col
                && r.max_parallelism == self.store.max_parallelism()
                && r.keys.len() == n
        });
        let mut cols = batch.columns;
        let values: Vec<u64> = match self.value_col.map(|i| &cols[i]) {
            None => Vec::new(),
            Some(Column::Int(v)) => v.iter().map(|&x| x as u64).collect(),
            Some(Column::Float(v)) => v.iter().map(|x| x.to_bits()).collect(),
            Some(other) => {
                return Err(OperatorError::Config(format!(
                    "bug: key_by \"{}\" expected a numeric value column, got {}",
                    self.operator_id,
                    other.data_type()
                )))
            }
        };
        // Move the key column out: the output shares its buffer, nothing is copied.
        let key = std::mem::replace(&mut cols[self.key_col], Column::Bool(Vec::new()));
        let mut acc = Vec::with_capacity(n);
        self.fold(
            &key,
            routed.as_ref().map(|r| r.keys.as_slice()),
            &values,
            &mut acc,
        )?;
        let agg = if self.out_float {
            Column::Float(acc.into_iter().map(f64::from_bits).collect())
        } else {
            Column::Int(acc.into_iter().map(|x| x as i64).collect())
        };
        out.push(Batch::new(vec![key, agg]).with_timestamps(timestamps));
        Ok(())
    }

    /// A copy-on-write view of the keyed values: `Arc` clones and the change lists moved,
    /// nothing proportional to the number of keys.
    fn snapshot_state(&mut self) -> Option<OperatorSnapshot> {
        Some(OperatorSnapshot::Keyed(std::sync::Arc::new(
            self.store.snapshot(),
        )))
    }

    fn restore_state(&mut self, state: RestoredState) -> Result<(), OperatorError> {
        let RestoredState::Keyed(runs) = state else {
            return Err(OperatorError::Config(format!(
                "key_by \"{}\": the checkpoint holds another operator's state (a source's or a \
                 sink's) under this id; the restore matches state by operator id, so give it \
                 another `id`",
                self.operator_id
            )));
        };
        let (want, have) = (self.store.range(), runs.range);
        if want != have || self.store.max_parallelism() != runs.max_parallelism {
            return Err(OperatorError::Config(format!(
                "bug: key_by \"{}\" owns key groups {want} of max parallelism {}, but the \
                 restore handed it key groups {have} of max parallelism {}",
                self.operator_id,
                self.store.max_parallelism(),
                runs.max_parallelism
            )));
        }
        self.store = crate::state::snapshot::restore_keyed_values(&runs)
            .map_err(|e| OperatorError::Config(format!("key_by \"{}\": {e}", self.operator_id)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{StrColumnBuilder, Value};
    use std::sync::Arc;

    fn ctx(subtask: u32, parallelism: u32) -> BuildContext {
        BuildContext {
            operator_id: "count".into(),
            subtask,
            parallelism,
            max_parallelism: 128,
            base_dir: ".".into(),
            delta_checkpoints: true,
        }
    }

    fn cfg(yaml: &str) -> KeyByConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn text(ws: &[&str]) -> Column {
        let mut b = StrColumnBuilder::default();
        for w in ws {
            b.push(w.as_bytes());
        }
        Column::Str(b.finish())
    }

    fn rows(batches: &[Batch]) -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| (0..b.len()).map(move |i| b.row(i)))
            .map(|r| {
                let vs: Vec<String> = r.iter().map(Value::to_string).collect();
                format!("({})", vs.join(","))
            })
            .collect()
    }

    #[test]
    fn counts_words_rolling_and_moves_the_key_column() {
        let schema = Schema::new([("word", DataType::Str)]);
        let c = cfg("{key: word, aggregate: count}");
        assert_eq!(
            c.output_schema(Some(&schema)).unwrap(),
            Schema::new([("word", DataType::Str), ("count", DataType::Int)])
        );
        let mut op = KeyBy::new(&c, &schema, &ctx(0, 1)).unwrap();
        let input = Batch::new(vec![text(&["a", "b", "a", "c", "a"])]);
        let Column::Str(in_col) = &input.columns[0] else {
            unreachable!()
        };
        let buf = in_col.buf.clone();
        let mut out = Vec::new();
        op.process(input, &mut out).unwrap();
        op.process(Batch::new(vec![text(&["b"])]), &mut out)
            .unwrap();
        assert_eq!(
            rows(&out),
            ["(a,1)", "(b,1)", "(a,2)", "(c,1)", "(a,3)", "(b,2)"]
        );
        let Column::Str(out_col) = &out[0].columns[0] else {
            unreachable!()
        };
        assert!(Arc::ptr_eq(&buf, &out_col.buf));
        assert_eq!(op.store().len(), 3);
    }

    #[test]
    fn sums_ints_by_word_as_flink_sum_does() {
        let schema = Schema::new([("word", DataType::Str), ("one", DataType::Int)]);
        let c = cfg("{key: word, aggregate: sum, field: one}");
        assert_eq!(
            c.output_schema(Some(&schema)).unwrap(),
            Schema::new([("word", DataType::Str), ("one", DataType::Int)])
        );
        let mut op = KeyBy::new(&c, &schema, &ctx(0, 1)).unwrap();
        let mut out = Vec::new();
        let b = Batch::new(vec![text(&["x", "y", "x"]), Column::Int(vec![1, 1, 1])]);
        op.process(b, &mut out).unwrap();
        assert_eq!(rows(&out), ["(x,1)", "(y,1)", "(x,2)"]);
    }

    #[test]
    fn min_max_sum_of_floats_and_ints_by_int_key() {
        let schema = Schema::new([
            ("k", DataType::Int),
            ("v", DataType::Float),
            ("n", DataType::Int),
        ]);
        let batch = || {
            Batch::new(vec![
                Column::Int(vec![1, 2, 1, 1]),
                Column::Float(vec![2.5, -1.0, 0.5, 4.0]),
                Column::Int(vec![10, -3, 7, 12]),
            ])
        };
        let run = |yaml: &str| {
            let mut op = KeyBy::new(&cfg(yaml), &schema, &ctx(0, 1)).unwrap();
            let mut out = Vec::new();
            op.process(batch(), &mut out).unwrap();
            rows(&out)
        };
        assert_eq!(
            run("{key: k, aggregate: min, field: v}"),
            ["(1,2.5)", "(2,-1.0)", "(1,0.5)", "(1,0.5)"]
        );
        assert_eq!(
            run("{key: k, aggregate: max, field: n, output: top}"),
            ["(1,10)", "(2,-3)", "(1,10)", "(1,12)"]
        );
        assert_eq!(
            run("{key: k, aggregate: min, field: n}"),
            ["(1,10)", "(2,-3)", "(1,7)", "(1,7)"]
        );
        assert_eq!(
            run("{key: k, aggregate: sum, field: v}"),
            ["(1,2.5)", "(2,-1.0)", "(1,3.0)", "(1,7.0)"]
        );
        assert_eq!(
            run("{key: k, aggregate: max, field: v}"),
            ["(1,2.5)", "(2,-1.0)", "(1,2.5)", "(1,4.0)"]
        );
        let s = cfg("{key: k, aggregate: sum, field: v, output: total}")
            .output_schema(Some(&schema))
            .unwrap();
        assert_eq!(
            s,
            Schema::new([("k", DataType::Int), ("total", DataType::Float)])
        );
    }

    /// Words routed as the hash exchange routes them: each row with its routed key.
    fn routed(ws: &[&str], column: usize, max_parallelism: u32) -> Batch {
        use crate::state::keygroup::{java_string_hash_code, KeyGroups};
        let groups = KeyGroups::new(128);
        let keys = ws
            .iter()
            .map(|w| groups.route(java_string_hash_code(w.as_bytes())))
            .collect();
        Batch::new(vec![text(ws)]).with_routed_keys(crate::record::RoutedKeys {
            column,
            max_parallelism,
            keys,
        })
    }

    #[test]
    fn routed_keys_count_as_keys_hashed_here() {
        let schema = Schema::new([("word", DataType::Str)]);
        let c = cfg("{key: word, aggregate: count}");
        let words: Vec<String> = (0..300).map(|i| format!("w{}", i % 37)).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let run = |batch: Batch| {
            let mut op = KeyBy::new(&c, &schema, &ctx(0, 1)).unwrap();
            let mut out = Vec::new();
            op.process(batch, &mut out).unwrap();
            let state: std::collections::BTreeMap<Vec<u8>, u64> = op
                .store()
                .groups()
                .flat_map(|(_, t)| t.iter().map(|(k, v)| (k.to_vec(), v)).collect::<Vec<_>>())
                .collect();
            (rows(&out), state, out[0].routed_keys(0, 128).is_some())
        };
        let plain = run(Batch::new(vec![text(&words)]));
        assert_eq!(plain.1.len(), 37);
        let with_routed = run(routed(&words, 0, 128));
        assert_eq!(with_routed, plain);
        assert!(!with_routed.2, "the output carries no routed keys");
        // Routed keys of another column or max parallelism are not these keys: hashed here.
        assert_eq!(run(routed(&words, 1, 128)), plain);
        assert_eq!(run(routed(&words, 0, 256)), plain);
    }

    #[test]
    fn bool_keys_count() {
        let schema = Schema::new([("ok", DataType::Bool)]);
        let mut op = KeyBy::new(&cfg("{key: ok, aggregate: count}"), &schema, &ctx(0, 1)).unwrap();
        let mut out = Vec::new();
        op.process(
            Batch::new(vec![Column::Bool(vec![true, false, true])]),
            &mut out,
        )
        .unwrap();
        assert_eq!(rows(&out), ["(true,1)", "(false,1)", "(true,2)"]);
    }

    #[test]
    fn a_key_routed_to_the_wrong_subtask_fails_the_operator() {
        let schema = Schema::new([("word", DataType::Str)]);
        // Subtask 0 of 2 owns groups 0..=63; "a" is in group 81.
        let mut op =
            KeyBy::new(&cfg("{key: word, aggregate: count}"), &schema, &ctx(0, 2)).unwrap();
        let err = op
            .process(Batch::new(vec![text(&["a"])]), &mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("bug: key group 81"), "{err}");
    }

    #[test]
    fn checks_its_settings() {
        let schema = Schema::new([("word", DataType::Str), ("x", DataType::Float)]);
        let problems = |yaml: &str| cfg(yaml).output_schema(Some(&schema)).unwrap_err();
        let p = problems("{key: wrod, aggregate: sum}");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].field, "key");
        assert!(p[0].message.contains("did you mean \"word\""));
        assert!(p[1].message.contains("needs `field:`"));
        let p = problems("{key: x, aggregate: count, field: x}");
        assert!(p[0].message.contains("is float"), "{p:?}");
        assert!(p[1].message.contains("takes no `field`"));
        let p = problems("{key: word, aggregate: max, field: word}");
        assert!(p[0]
            .message
            .contains("is str, but this setting needs int or float"));
        let e = serde_yaml::from_str::<KeyByConfig>("{key: w, aggregate: avg}").unwrap_err();
        assert!(e.to_string().contains("unknown variant `avg`"));
    }
}
