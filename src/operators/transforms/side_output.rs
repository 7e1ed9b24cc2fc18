//! `type: side_output`: the records another operator sent to one of its side outputs, as
//! Flink's `getSideOutput(tag)`: today a window's late records (`late-output: <tag>`).
//!
//! It reads the operator named in `inputs` and passes on only that operator's side-output
//! records, with the schema and event time they had when they reached it; every other
//! reader of that operator sees only its main output. Validation checks that the input is an
//! operator with that side output and gives the records' schema.

use crate::operators::{Operator, OperatorError, OperatorSpec, Problem};
use crate::record::{Batch, Schema};

/// What a user writes under `type: side_output`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SideOutputConfig {
    /// The side output's name, as the operator in `inputs` declares it (`late-output`).
    pub tag: String,
}

impl OperatorSpec for SideOutputConfig {
    /// `input` is the schema of the records the side output carries, which validation takes
    /// from the operator read (a window's input), not that operator's main output.
    fn output_schema(&self, input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        if self.tag.trim().is_empty() {
            return Err(vec![Problem::new("tag", "names no side output")]);
        }
        input
            .cloned()
            .ok_or_else(|| vec![Problem::new("", "a side_output needs an input")])
    }

    fn reads_side_output(&self) -> Option<&str> {
        Some(&self.tag)
    }
}

/// A running `side_output` subtask: side-output records in, the same records out.
pub struct SideOutput;

impl Operator for SideOutput {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        out.push(batch.into_main_output());
        Ok(())
    }

    fn reads_side_output(&self) -> bool {
        true
    }
}
