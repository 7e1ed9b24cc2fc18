//! `type: blackhole`: counts records and drops them (for benchmarks). The count is shared
//! through an `Arc<AtomicU64>` so a benchmark or test can read it while the job runs; it is
//! logged when the input ends. This module must not look at record contents.

use super::sink_schema;
use crate::operators::{BuildContext, Operator, OperatorError, OperatorSpec, Problem};
use crate::record::{Batch, Schema};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BlackholeConfig {}

impl OperatorSpec for BlackholeConfig {
    fn output_schema(&self, input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        sink_schema(input)
    }
}

/// One running blackhole subtask.
pub struct Blackhole {
    count: Arc<AtomicU64>,
    operator_id: String,
    subtask: u32,
}

impl Blackhole {
    pub fn new(
        _c: &BlackholeConfig,
        _input: &Schema,
        ctx: &BuildContext,
    ) -> Result<Self, OperatorError> {
        Ok(Self::with_counter(ctx, Arc::new(AtomicU64::new(0))))
    }

    /// A blackhole adding to `count` (several subtasks may share one counter).
    pub fn with_counter(ctx: &BuildContext, count: Arc<AtomicU64>) -> Self {
        Blackhole {
            count,
            operator_id: ctx.operator_id.clone(),
            subtask: ctx.subtask,
        }
    }

    /// The counter this subtask adds to.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.count.clone()
    }

    /// Records counted so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Operator for Blackhole {
    fn process(&mut self, batch: Batch, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        self.count.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        tracing::info!(operator = %self.operator_id, subtask = self.subtask, records = self.count(), "blackhole input ended");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Column;

    #[test]
    fn counts_records_of_every_batch() {
        let ctx = BuildContext {
            operator_id: "sink".into(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            base_dir: ".".into(),
            delta_checkpoints: true,
        };
        let mut sink = Blackhole::new(&BlackholeConfig {}, &Schema::default(), &ctx).unwrap();
        let counter = sink.counter();
        sink.process(
            Batch::new(vec![Column::Int(vec![1, 2, 3])]),
            &mut Vec::new(),
        )
        .unwrap();
        sink.process(Batch::empty_with_len(4), &mut Vec::new())
            .unwrap();
        sink.finish(&mut Vec::new()).unwrap();
        assert_eq!(counter.load(Ordering::Relaxed), 7);
        assert!(serde_yaml::from_str::<BlackholeConfig>("path: x").is_err());
    }
}
