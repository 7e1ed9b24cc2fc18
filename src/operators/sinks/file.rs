//! `type: file` with inputs: records to a file as lines or JSON lines.
//!
//! Stub: to be written.

use crate::operators::{BuildContext, OperatorError, OperatorSpec, Problem};
use crate::record::Schema;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSinkConfig {}

impl OperatorSpec for FileSinkConfig {
    fn output_schema(&self, _input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        Err(vec![Problem::new("", "not implemented yet")])
    }
}

pub struct FileSink;

impl FileSink {
    pub fn new(_c: &FileSinkConfig, _input: &Schema, _ctx: &BuildContext) -> Result<Self, OperatorError> {
        Err(OperatorError::Config("not implemented yet".into()))
    }
}

impl crate::operators::Operator for FileSink {
    fn process(
        &mut self,
        _batch: crate::record::Batch,
        _out: &mut Vec<crate::record::Batch>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }
}
