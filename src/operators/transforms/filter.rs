//! `type: filter`: keep records for which a CEL expression is true.
//!
//! The condition is compiled once; a literal (`true`) or a bool field skips CEL. Kept records
//! are taken by row index, so text stays in the shared buffer. It must not change a record.

use crate::operators::transforms::expr::{Constant, Expr, Kind};
use crate::operators::{BuildContext, Operator, OperatorError, OperatorSpec, Problem};
use crate::record::{Batch, Column, DataType, Schema};

/// What a user writes under `type: filter`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FilterConfig {
    /// A CEL expression over the record's fields that gives a bool.
    pub condition: String,
}

impl FilterConfig {
    fn compile(&self, input: &Schema) -> Result<Expr, Problem> {
        let e = Expr::compile(&self.condition, input).map_err(|m| Problem::new("condition", m))?;
        if e.ty != DataType::Bool {
            return Err(Problem::new(
                "condition",
                format!(
                    "{:?} gives {}, but a condition must give a bool (true keeps the record)",
                    self.condition, e.ty
                ),
            ));
        }
        Ok(e)
    }
}

impl OperatorSpec for FilterConfig {
    fn output_schema(&self, input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        let Some(input) = input else {
            return Err(vec![Problem::new("", "filter needs an input")]);
        };
        self.compile(input).map_err(|p| vec![p])?;
        Ok(input.clone())
    }
}

/// A running `filter` subtask.
pub struct Filter {
    condition: Expr,
}

impl Filter {
    pub fn new(
        c: &FilterConfig,
        input: &Schema,
        _ctx: &BuildContext,
    ) -> Result<Self, OperatorError> {
        let condition = c
            .compile(input)
            .map_err(|p| OperatorError::Config(format!("{}: {}", p.field, p.message)))?;
        Ok(Filter { condition })
    }
}

/// Keep the rows where `keep` is true; the batch itself when all are.
fn select(batch: Batch, keep: &[bool], out: &mut Vec<Batch>) {
    let rows: Vec<u32> = (0..keep.len() as u32)
        .filter(|&i| keep[i as usize])
        .collect();
    if rows.len() == batch.len() {
        out.push(batch);
    } else if !rows.is_empty() {
        out.push(batch.take(&rows));
    }
}

impl Operator for Filter {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        match &self.condition.kind {
            Kind::Literal(Constant::Bool(true)) => out.push(batch),
            Kind::Literal(_) => {}
            Kind::Field(i) => {
                let Column::Bool(keep) = &batch.columns[*i] else {
                    return Err(OperatorError::Config(
                        "bug: filter field is not bool".into(),
                    ));
                };
                let keep = keep.clone();
                select(batch, &keep, out);
            }
            Kind::Program { .. } => {
                let Column::Bool(keep) = self.condition.eval_column(&batch)? else {
                    return Err(OperatorError::Config(
                        "bug: filter condition is not bool".into(),
                    ));
                };
                select(batch, &keep, out);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{StrColumnBuilder, Value};

    fn ctx() -> BuildContext {
        BuildContext::single("f")
    }

    fn batch() -> Batch {
        let mut b = StrColumnBuilder::default();
        for w in ["the", "a", "floe", "x"] {
            b.push(w.as_bytes());
        }
        Batch::new(vec![
            Column::Str(b.finish()),
            Column::Int(vec![1, 2, 3, 4]),
            Column::Bool(vec![true, false, false, true]),
        ])
    }

    fn schema() -> Schema {
        Schema::new([
            ("word", DataType::Str),
            ("n", DataType::Int),
            ("b", DataType::Bool),
        ])
    }

    fn run(cond: &str) -> Vec<Vec<String>> {
        let c: FilterConfig = serde_yaml::from_str(&format!("condition: '{cond}'")).unwrap();
        assert_eq!(c.output_schema(Some(&schema())).unwrap(), schema());
        let mut op = Filter::new(&c, &schema(), &ctx()).unwrap();
        let mut out = Vec::new();
        op.process(batch(), &mut out).unwrap();
        out.iter()
            .flat_map(|b| (0..b.len()).map(move |i| b.row(i)))
            .map(|r| r.iter().map(Value::to_string).collect())
            .collect()
    }

    #[test]
    fn keeps_records_where_the_condition_holds() {
        let words =
            |rows: Vec<Vec<String>>| rows.into_iter().map(|r| r[0].clone()).collect::<Vec<_>>();
        assert_eq!(words(run("size(word) > 2 && n % 2 == 1")), ["the", "floe"]);
        assert_eq!(words(run("b")), ["the", "x"]);
        assert_eq!(words(run("true")), ["the", "a", "floe", "x"]);
        assert!(run("false").is_empty());
        assert_eq!(run("word == \"x\""), [vec!["x", "4", "true"]]);
    }

    #[test]
    fn a_condition_must_be_bool() {
        let c: FilterConfig = serde_yaml::from_str("condition: n + 1").unwrap();
        let p = c.output_schema(Some(&schema())).unwrap_err();
        assert_eq!(p[0].field, "condition");
        assert!(p[0].message.contains("gives int"), "{p:?}");
    }
}
