//! `type: flat_map`: split text into words by a separator or a regex.
//!
//! Stub: to be written.

use crate::operators::{BuildContext, OperatorError, OperatorSpec, Problem};
use crate::record::Schema;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FlatMapConfig {}

impl OperatorSpec for FlatMapConfig {
    fn output_schema(&self, _input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        Err(vec![Problem::new("", "not implemented yet")])
    }
}

pub struct FlatMap;

impl FlatMap {
    pub fn new(_c: &FlatMapConfig, _input: &Schema, _ctx: &BuildContext) -> Result<Self, OperatorError> {
        Err(OperatorError::Config("not implemented yet".into()))
    }
}

impl crate::operators::Operator for FlatMap {
    fn process(
        &mut self,
        _batch: crate::record::Batch,
        _out: &mut Vec<crate::record::Batch>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }
}
