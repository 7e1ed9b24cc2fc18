//! A chain: the operators of one task, called one after the other on each batch, with no
//! channel between them.
//!
//! Each operator has its own output vector, reused for every batch, so passing a batch down the
//! chain allocates nothing. Panics inside an operator are caught here so the error can name the
//! operator; they are reported as bugs.
//!
//! A batch goes down the chain depth first (what operator n emits passes through n+1… before
//! its next batch), driven by a work list, never by recursion: a chain of ten thousand
//! operators needs no more stack than a chain of one.

use crate::checkpoint::{CheckpointId, OperatorSnapshot};
use crate::operators::{EndOfInput, Operator};
use crate::pipeline::OperatorId;
use crate::record::Batch;
use crate::runtime::checkpointing::CheckpointOutcome;
use crate::runtime::metrics::OperatorMetrics;
use crate::runtime::TaskError;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// One chained operator of one subtask.
pub struct ChainedOperator {
    pub id: OperatorId,
    pub operator: Box<dyn Operator>,
    pub metrics: Arc<OperatorMetrics>,
}

pub struct Chain {
    ops: Vec<ChainedOperator>,
    bufs: Vec<Vec<Batch>>,
    /// Batches still to pass through the operator at their level, the next one last: the work
    /// list that replaces recursion. Empty between calls; kept for its allocation.
    pending: Vec<(usize, Batch)>,
    subtask: u32,
    parallelism: u32,
}

impl Chain {
    pub fn new(ops: Vec<ChainedOperator>, subtask: u32, parallelism: u32) -> Self {
        let bufs = ops.iter().map(|_| Vec::new()).collect();
        Chain {
            ops,
            bufs,
            pending: Vec::new(),
            subtask,
            parallelism,
        }
    }

    /// Runs `batch` through the whole chain; what the last operator emits lands in `out`.
    pub fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Result<(), TaskError> {
        self.run(0, batch, out)
    }

    /// The input ended: each operator in turn flushes, what it flushes runs through the rest of
    /// the chain before the next operator finishes. Called once per subtask.
    pub fn finish(&mut self, out: &mut Vec<Batch>) -> Result<(), TaskError> {
        for level in 0..self.ops.len() {
            let mut buf = std::mem::take(&mut self.bufs[level]);
            let op = &mut self.ops[level];
            let result = catch_unwind(AssertUnwindSafe(|| op.operator.finish(&mut buf)));
            self.check(level, result)?;
            let produced: usize = buf.iter().map(Batch::len).sum();
            self.ops[level].metrics.subtasks[self.subtask as usize].add(0, produced);
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend(buf.drain(..).rev().map(|b| (level + 1, b)));
            self.bufs[level] = buf;
            let result = self.drain(&mut pending, out);
            pending.clear();
            self.pending = pending;
            result?;
        }
        Ok(())
    }

    /// The synchronous part of a snapshot of every operator for `checkpoint`, in chain
    /// order, appended to `states` (`None` for a stateless one). Each call is a copy-on-write
    /// view or a sink's pre-commit (flush and rename), nothing slow.
    pub fn snapshot(
        &mut self,
        checkpoint: CheckpointId,
        states: &mut Vec<Option<OperatorSnapshot>>,
    ) -> Result<(), TaskError> {
        for level in 0..self.ops.len() {
            let op = &mut self.ops[level];
            let mut state = None;
            let result = catch_unwind(AssertUnwindSafe(|| {
                state = op.operator.snapshot_state_at(checkpoint)?;
                Ok(())
            }));
            self.check(level, result)?;
            states.push(state);
        }
        Ok(())
    }

    /// Tells every operator, in chain order, that a checkpoint completed or was aborted.
    /// Called by the task between batches, so never concurrently with `process`.
    pub fn notify(&mut self, outcome: CheckpointOutcome) -> Result<(), TaskError> {
        for level in 0..self.ops.len() {
            let op = &mut self.ops[level];
            let result = catch_unwind(AssertUnwindSafe(|| match outcome {
                CheckpointOutcome::Completed(id) => op.operator.notify_checkpoint_complete(id),
                CheckpointOutcome::Aborted(id) => op.operator.notify_checkpoint_aborted(id),
            }));
            self.check(level, result)?;
        }
        Ok(())
    }

    /// Tells every operator why the input ends; just before [`Chain::finish`].
    pub fn end_of_input(&mut self, why: EndOfInput) -> Result<(), TaskError> {
        for level in 0..self.ops.len() {
            let op = &mut self.ops[level];
            let result = catch_unwind(AssertUnwindSafe(|| {
                op.operator.end_of_input(why);
                Ok(())
            }));
            self.check(level, result)?;
        }
        Ok(())
    }

    /// Awaits the blocking work each operator left pending ([`Operator::take_pending`]), in
    /// chain order, off the async workers: what the task does after every call into the chain
    /// and before the first record.
    pub async fn settle(&mut self) -> Result<(), TaskError> {
        for level in 0..self.ops.len() {
            if let Some(work) = self.ops[level].operator.take_pending() {
                let result = work.wait().await;
                self.check(level, Ok(result))?;
            }
        }
        Ok(())
    }

    /// Number of chained operators.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn run(&mut self, level: usize, batch: Batch, out: &mut Vec<Batch>) -> Result<(), TaskError> {
        let mut pending = std::mem::take(&mut self.pending);
        pending.push((level, batch));
        let result = self.drain(&mut pending, out);
        pending.clear(); // after a failure: the task ends, the rest is dropped
        self.pending = pending;
        result
    }

    /// Passes every pending batch through the rest of the chain, depth first.
    fn drain(
        &mut self,
        pending: &mut Vec<(usize, Batch)>,
        out: &mut Vec<Batch>,
    ) -> Result<(), TaskError> {
        while let Some((level, batch)) = pending.pop() {
            if level == self.ops.len() {
                out.push(batch);
                continue;
            }
            let records = batch.len();
            let mut buf = std::mem::take(&mut self.bufs[level]);
            let op = &mut self.ops[level];
            let result = catch_unwind(AssertUnwindSafe(|| op.operator.process(batch, &mut buf)));
            if let Err(e) = self.check(level, result) {
                buf.clear();
                self.bufs[level] = buf;
                return Err(e);
            }
            let produced: usize = buf.iter().map(Batch::len).sum();
            self.ops[level].metrics.subtasks[self.subtask as usize].add(records, produced);
            // Reversed: the first batch emitted is popped, and goes on, first.
            pending.extend(buf.drain(..).rev().map(|b| (level + 1, b)));
            self.bufs[level] = buf;
        }
        Ok(())
    }

    fn check(
        &self,
        level: usize,
        result: std::thread::Result<Result<(), crate::operators::OperatorError>>,
    ) -> Result<(), TaskError> {
        let operator = self.ops[level].id.clone();
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(TaskError::Operator {
                operator,
                subtask: self.subtask,
                parallelism: self.parallelism,
                error,
            }),
            Err(panic) => Err(TaskError::Panic {
                operator,
                subtask: self.subtask,
                parallelism: self.parallelism,
                message: panic_message(&*panic),
            }),
        }
    }
}

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}
