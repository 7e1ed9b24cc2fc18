//! `type: map`: new fields from CEL expressions over record fields.
//!
//! `fields:` is an ordered mapping of output name → expression; the output is exactly those
//! fields, in order (with `keep: true`, the input fields first, a new field of an existing
//! name replacing it in place). A literal (`1`) fills a constant column and a bare field name
//! (`word`) moves or copies the input column, so `{word: word, one: 1}` never runs CEL.
//! It must not evaluate anything per record that it can compute once per batch.

use crate::operators::transforms::expr::{Expr, Kind};
use crate::operators::{BuildContext, Operator, OperatorError, OperatorSpec, Problem};
use crate::record::{Batch, Column, Schema};
use serde::de::{Deserializer, MapAccess, Visitor};

/// What a user writes under `type: map`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MapConfig {
    /// Output name → CEL expression, in order.
    #[serde(deserialize_with = "ordered_fields")]
    pub fields: Vec<(String, String)>,
    /// Keep the input fields in front of the new ones.
    #[serde(default)]
    pub keep: bool,
}

/// A YAML mapping, in order; scalar values (`1`, `true`) are taken as expression text.
pub(crate) fn ordered_fields<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, String)>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a mapping of field name to expression")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            let mut out: Vec<(String, String)> = Vec::new();
            while let Some((k, v)) = m.next_entry::<String, String>()? {
                if out.iter().any(|(name, _)| *name == k) {
                    return Err(serde::de::Error::custom(format!(
                        "field \"{k}\" is given twice"
                    )));
                }
                out.push((k, v));
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

/// Where each output column comes from.
enum Slot {
    /// Input column, kept or referenced.
    Input(usize),
    /// `fields[i]`, computed.
    Expr(usize),
}

struct Plan {
    exprs: Vec<Expr>,
    slots: Vec<Slot>,
    schema: Schema,
}

impl MapConfig {
    fn plan(&self, input: &Schema) -> Result<Plan, Vec<Problem>> {
        let mut problems = Vec::new();
        if self.fields.is_empty() {
            problems.push(Problem::new(
                "fields",
                "no fields: give at least one `name: expression`",
            ));
        }
        let mut exprs = Vec::new();
        for (name, text) in &self.fields {
            match Expr::compile(text, input) {
                Ok(e) => exprs.push(e),
                Err(m) => problems.push(Problem::new(format!("fields.{name}"), m)),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut slots: Vec<Slot> = Vec::new();
        let mut schema = Schema::default();
        if self.keep {
            for (i, f) in input.fields.iter().enumerate() {
                slots.push(Slot::Input(i));
                schema.fields.push(f.clone());
            }
        }
        for (i, ((name, _), e)) in self.fields.iter().zip(&exprs).enumerate() {
            let slot = match e.kind {
                Kind::Field(c) => Slot::Input(c),
                _ => Slot::Expr(i),
            };
            let field = crate::record::Field {
                name: name.clone(),
                ty: e.ty,
            };
            match schema.index_of(name) {
                Some(at) => {
                    slots[at] = slot;
                    schema.fields[at] = field;
                }
                None => {
                    slots.push(slot);
                    schema.fields.push(field);
                }
            }
        }
        Ok(Plan {
            exprs,
            slots,
            schema,
        })
    }
}

impl OperatorSpec for MapConfig {
    fn output_schema(&self, input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        let Some(input) = input else {
            return Err(vec![Problem::new("", "map needs an input")]);
        };
        self.plan(input).map(|p| p.schema)
    }
}

/// A running `map` subtask.
pub struct Map {
    plan: Plan,
    /// How many slots read each input column: a column read once is moved, not copied.
    uses: Vec<usize>,
}

impl Map {
    pub fn new(c: &MapConfig, input: &Schema, _ctx: &BuildContext) -> Result<Self, OperatorError> {
        let plan = c.plan(input).map_err(|ps| {
            let msgs: Vec<String> = ps
                .into_iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            OperatorError::Config(msgs.join("; "))
        })?;
        let mut uses = vec![0; input.len()];
        for s in &plan.slots {
            if let Slot::Input(i) = s {
                uses[*i] += 1;
            }
        }
        Ok(Map { plan, uses })
    }
}

impl Operator for Map {
    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        let n = batch.len();
        let timestamps = batch.take_timestamps();
        // Computed columns first, while the batch is whole.
        let mut computed: Vec<Option<Column>> = Vec::with_capacity(self.plan.exprs.len());
        for e in &self.plan.exprs {
            computed.push(match &e.kind {
                Kind::Literal(c) => Some(c.column(n)),
                Kind::Field(_) => None,
                Kind::Program { .. } => Some(e.eval_column(&batch)?),
            });
        }
        let mut input: Vec<Option<Column>> = batch.columns.into_iter().map(Some).collect();
        let mut left = self.uses.clone();
        let mut columns = Vec::with_capacity(self.plan.slots.len());
        for slot in &self.plan.slots {
            let col = match slot {
                Slot::Expr(i) => computed[*i].take(),
                Slot::Input(i) => {
                    left[*i] -= 1;
                    if left[*i] == 0 {
                        input[*i].take()
                    } else {
                        input[*i].clone()
                    }
                }
            };
            columns.push(
                col.ok_or_else(|| OperatorError::Config("bug: map column used twice".into()))?,
            );
        }
        let mapped = if columns.is_empty() {
            Batch::empty_with_len(n)
        } else {
            Batch::new(columns)
        };
        out.push(mapped.with_timestamps(timestamps));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DataType, StrColumnBuilder, Value};
    use std::sync::Arc;

    fn ctx() -> BuildContext {
        BuildContext::single("pair")
    }

    fn cfg(yaml: &str) -> MapConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn words(ws: &[&str]) -> Column {
        let mut b = StrColumnBuilder::default();
        for w in ws {
            b.push(w.as_bytes());
        }
        Column::Str(b.finish())
    }

    #[test]
    fn literal_and_field_need_no_cel_and_move_the_column() {
        let schema = Schema::new([("word", DataType::Str)]);
        let c = cfg("fields: {word: word, one: 1}");
        assert_eq!(
            c.output_schema(Some(&schema)).unwrap(),
            Schema::new([("word", DataType::Str), ("one", DataType::Int)])
        );
        let mut op = Map::new(&c, &schema, &ctx()).unwrap();
        assert!(matches!(op.plan.exprs[0].kind, Kind::Field(0)));
        assert!(matches!(op.plan.exprs[1].kind, Kind::Literal(_)));
        let input = Batch::new(vec![words(&["a", "b"])]);
        let Column::Str(in_col) = &input.columns[0] else {
            unreachable!()
        };
        let buf = in_col.buf.clone();
        let mut out = Vec::new();
        op.process(input, &mut out).unwrap();
        assert_eq!(out[0].row(1), vec![Value::Str(b"b"), Value::Int(1)]);
        let Column::Str(c) = &out[0].columns[0] else {
            unreachable!()
        };
        assert!(Arc::ptr_eq(&buf, &c.buf));
    }

    #[test]
    fn expressions_infer_types_and_evaluate_per_record() {
        let schema = Schema::new([("word", DataType::Str), ("n", DataType::Int)]);
        let c = cfg(
            "fields:\n  upper: word + \"!\"\n  double: n * 2\n  half: double(n) / 2.0\n  long: size(word) > 1\n  tag: '\"x\"'\n  ok: true\n",
        );
        let s = c.output_schema(Some(&schema)).unwrap();
        assert_eq!(
            s,
            Schema::new([
                ("upper", DataType::Str),
                ("double", DataType::Int),
                ("half", DataType::Float),
                ("long", DataType::Bool),
                ("tag", DataType::Str),
                ("ok", DataType::Bool),
            ])
        );
        let mut op = Map::new(&c, &schema, &ctx()).unwrap();
        let mut out = Vec::new();
        op.process(
            Batch::new(vec![words(&["hi", "a"]), Column::Int(vec![3, 4])]),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out[0].row(0),
            vec![
                Value::Str(b"hi!"),
                Value::Int(6),
                Value::Float(1.5),
                Value::Bool(true),
                Value::Str(b"x"),
                Value::Bool(true)
            ]
        );
        assert_eq!(out[0].row(1)[3], Value::Bool(false));
    }

    #[test]
    fn keep_replaces_in_place_and_appends() {
        let schema = Schema::new([("word", DataType::Str), ("n", DataType::Int)]);
        let c = cfg("{keep: true, fields: {n: n + 1, m: n}}");
        assert_eq!(
            c.output_schema(Some(&schema)).unwrap(),
            Schema::new([
                ("word", DataType::Str),
                ("n", DataType::Int),
                ("m", DataType::Int)
            ])
        );
        let mut op = Map::new(&c, &schema, &ctx()).unwrap();
        let mut out = Vec::new();
        op.process(
            Batch::new(vec![words(&["a"]), Column::Int(vec![5])]),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out[0].row(0),
            vec![Value::Str(b"a"), Value::Int(6), Value::Int(5)]
        );
    }

    #[test]
    fn problems_name_the_field_and_runtime_errors_the_record() {
        let schema = Schema::new([("word", DataType::Str), ("n", DataType::Int)]);
        let p = cfg("fields: {a: wrod + \"x\", b: 'n +', c: '[1, 2]'}")
            .output_schema(Some(&schema))
            .unwrap_err();
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0].field, "fields.a");
        assert!(p[0].message.contains("did you mean \"word\""), "{p:?}");
        assert!(p[1].message.starts_with("invalid expression"), "{p:?}");
        assert!(
            p[2].message.contains("only str, int, float or bool"),
            "{p:?}"
        );

        let c = cfg("fields: {q: 10 / n}");
        let mut op = Map::new(&c, &schema, &ctx()).unwrap();
        let err = op
            .process(
                Batch::new(vec![words(&["z"]), Column::Int(vec![0])]),
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(matches!(err, OperatorError::Data(_)));
        let msg = err.to_string();
        assert!(msg.contains("\"10 / n\"") && msg.contains("(z,0)"), "{msg}");
    }
}
