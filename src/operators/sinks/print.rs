//! `type: print`: records to stdout in Flink's format, `(hello,3)`, `2> ` prefix by subtask.
//!
//! Stub: to be written.

use crate::operators::{BuildContext, OperatorError, OperatorSpec, Problem};
use crate::record::Schema;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PrintConfig {}

impl OperatorSpec for PrintConfig {
    fn output_schema(&self, _input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        Err(vec![Problem::new("", "not implemented yet")])
    }
}

pub struct Print;

impl Print {
    pub fn new(_c: &PrintConfig, _input: &Schema, _ctx: &BuildContext) -> Result<Self, OperatorError> {
        Err(OperatorError::Config("not implemented yet".into()))
    }
}

impl crate::operators::Operator for Print {
    fn process(
        &mut self,
        _batch: crate::record::Batch,
        _out: &mut Vec<crate::record::Batch>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }
}
