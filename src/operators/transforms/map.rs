//! `type: map`: new fields from CEL expressions over record fields.
//!
//! Stub: to be written.

use crate::operators::{BuildContext, OperatorError, OperatorSpec, Problem};
use crate::record::Schema;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MapConfig {}

impl OperatorSpec for MapConfig {
    fn output_schema(&self, _input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        Err(vec![Problem::new("", "not implemented yet")])
    }
}

pub struct Map;

impl Map {
    pub fn new(_c: &MapConfig, _input: &Schema, _ctx: &BuildContext) -> Result<Self, OperatorError> {
        Err(OperatorError::Config("not implemented yet".into()))
    }
}

impl crate::operators::Operator for Map {
    fn process(
        &mut self,
        _batch: crate::record::Batch,
        _out: &mut Vec<crate::record::Batch>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }
}
