//! `type: datagen`: deterministic words (SplitMix64, as shared/bench/gen_corpus.py).
//!
//! Stub: to be written.

use crate::operators::{BuildContext, OperatorError, OperatorSpec, Problem};
use crate::record::Schema;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DatagenConfig {}

impl OperatorSpec for DatagenConfig {
    fn output_schema(&self, _input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        Err(vec![Problem::new("", "not implemented yet")])
    }
}

pub struct Datagen;

impl Datagen {
    pub fn new(_c: &DatagenConfig, _ctx: &BuildContext) -> Result<Self, OperatorError> {
        Err(OperatorError::Config("not implemented yet".into()))
    }
}

impl crate::operators::Source for Datagen {
    async fn next(&mut self) -> Result<crate::operators::SourceEvent, OperatorError> {
        Ok(crate::operators::SourceEvent::End)
    }
}
