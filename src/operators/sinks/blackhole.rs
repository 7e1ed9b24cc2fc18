//! `type: blackhole`: counts records and drops them (for benchmarks).
//!
//! Stub: to be written.

use crate::operators::{BuildContext, OperatorError, OperatorSpec, Problem};
use crate::record::Schema;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BlackholeConfig {}

impl OperatorSpec for BlackholeConfig {
    fn output_schema(&self, _input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        Err(vec![Problem::new("", "not implemented yet")])
    }
}

pub struct Blackhole;

impl Blackhole {
    pub fn new(_c: &BlackholeConfig, _input: &Schema, _ctx: &BuildContext) -> Result<Self, OperatorError> {
        Err(OperatorError::Config("not implemented yet".into()))
    }
}

impl crate::operators::Operator for Blackhole {
    fn process(
        &mut self,
        _batch: crate::record::Batch,
        _out: &mut Vec<crate::record::Batch>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }
}
