//! `type: file` without inputs: lines of a file, a directory or a glob.
//!
//! Stub: to be written.

use crate::operators::{BuildContext, OperatorError, OperatorSpec, Problem};
use crate::record::Schema;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSourceConfig {}

impl OperatorSpec for FileSourceConfig {
    fn output_schema(&self, _input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        Err(vec![Problem::new("", "not implemented yet")])
    }
}

pub struct FileSource;

impl FileSource {
    pub fn new(_c: &FileSourceConfig, _ctx: &BuildContext) -> Result<Self, OperatorError> {
        Err(OperatorError::Config("not implemented yet".into()))
    }
}

impl crate::operators::Source for FileSource {
    async fn next(&mut self) -> Result<crate::operators::SourceEvent, OperatorError> {
        Ok(crate::operators::SourceEvent::End)
    }
}
