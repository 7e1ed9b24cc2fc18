//! Pipeline files: YAML → validated [`Pipeline`] (every problem at once, with paths and
//! did-you-mean) → execution plan (chains, exchanges, parallelism). Nothing here runs.
//!
//! - `spec`: the raw YAML shape and its parsing, operator bodies parsed by `type:`.
//! - `validate`: ids, inputs, cycles, field references, with every problem reported.
//! - `plan`: chains of forward-connected operators, exchanges between them, parallelism.

pub mod plan;
pub mod spec;
pub mod validate;

use crate::operators::OperatorConfig;
use crate::record::Schema;
use std::fmt;
use std::path::PathBuf;

/// An operator's `id`: its state identity, for ever.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperatorId(pub String);

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub use crate::config::PipelineSetting;

/// One operator of a validated pipeline.
#[derive(Debug, Clone)]
pub struct OperatorNode {
    pub id: OperatorId,
    pub config: OperatorConfig,
    /// Indices into [`Pipeline::operators`] of the inputs, in the order written.
    pub inputs: Vec<usize>,
    /// The operator's own `parallelism:`, if set.
    pub parallelism: Option<u32>,
    /// The schema of its input records (`None` for a source). With several inputs, all agree.
    pub input_schema: Option<Schema>,
    /// The schema of the records it produces (empty for a sink).
    pub output_schema: Schema,
}

/// A checked pipeline, operators in topological order (every input before its readers).
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    /// The file it was read from.
    pub path: PathBuf,
    /// The pipeline's settings for configuration keys, to layer over the conf file.
    pub settings: Vec<PipelineSetting>,
    pub operators: Vec<OperatorNode>,
    /// Whether state of operators missing from this pipeline may be dropped on a reload by
    /// `floe serve` (as `-n` does for `floe run`).
    pub allow_non_restored_state: bool,
}

impl Pipeline {
    pub fn operator(&self, id: &str) -> Option<&OperatorNode> {
        self.operators.iter().find(|o| o.id.0 == id)
    }
}

pub use spec::{PipelineErrors, PipelineProblem};
pub use validate::{load, parse};
