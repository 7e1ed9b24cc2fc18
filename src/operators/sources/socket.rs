//! `type: socket`: text lines from host:port (Flink's socketTextStream).
//!
//! Stub: to be written.

use crate::operators::{BuildContext, OperatorError, OperatorSpec, Problem};
use crate::record::Schema;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SocketConfig {}

impl OperatorSpec for SocketConfig {
    fn output_schema(&self, _input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        Err(vec![Problem::new("", "not implemented yet")])
    }
}

pub struct Socket;

impl Socket {
    pub fn new(_c: &SocketConfig, _ctx: &BuildContext) -> Result<Self, OperatorError> {
        Err(OperatorError::Config("not implemented yet".into()))
    }
}

impl crate::operators::Source for Socket {
    async fn next(&mut self) -> Result<crate::operators::SourceEvent, OperatorError> {
        Ok(crate::operators::SourceEvent::End)
    }
}
