//! A chain: the operators of one task, called one after the other on each batch, with no
//! channel between them.
//!
//! Each operator has its own output vector, reused for every batch, so passing a batch down the
//! chain allocates nothing. Panics inside an operator are caught here so the error can name the
//! operator; they are reported as bugs.
//!
//! A batch goes down the chain depth first (what operator n emits passes through n+1… before
//! its next batch), driven by a work list, never by recursion: a chain of ten thousand
//! operators needs no more stack than a chain of one. Watermarks go on the same list, behind
//! the output they follow.

use crate::checkpoint::{CheckpointId, OperatorSnapshot};
use crate::operators::{EndOfInput, Operator};
use crate::pipeline::OperatorId;
use crate::record::Batch;
use crate::runtime::checkpointing::CheckpointOutcome;
use crate::runtime::metrics::OperatorMetrics;
use crate::runtime::TaskError;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One chained operator of one subtask.
pub struct ChainedOperator {
    pub id: OperatorId,
    pub operator: Box<dyn Operator>,
    pub metrics: Arc<OperatorMetrics>,
}

/// One item of the work list: what still has to pass through the operator at `level`.
enum Work {
    Batch(usize, Batch),
    Watermark(usize, i64),
}

pub struct Chain {
    ops: Vec<ChainedOperator>,
    bufs: Vec<Vec<Batch>>,
    /// The work list that replaces recursion, the next item last. Empty between calls; kept
    /// for its allocation.
    pending: Vec<Work>,
    subtask: u32,
    parallelism: u32,
    /// A watermark an operator made (`assign`) while processing, after passing it down the
    /// rest of the chain: the task sends it on after the batch's output.
    made_watermark: Option<i64>,
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
            made_watermark: None,
        }
    }

    /// The watermark an operator of the chain made during the last calls, already passed
    /// down the chain: send it on after their output.
    pub fn take_watermark(&mut self) -> Option<i64> {
        self.made_watermark.take()
    }

    /// Event time reached `watermark` at the chain's input: each operator in turn fires what
    /// is due (its output runs through the rest of the chain) and passes a watermark on.
    /// Returns the watermark to send downstream, if any.
    pub fn watermark(
        &mut self,
        watermark: i64,
        out: &mut Vec<Batch>,
    ) -> Result<Option<i64>, TaskError> {
        self.start(Work::Watermark(0, watermark), out)
    }

    /// The earliest processing-time timer of the chain's operators (ms since the epoch).
    pub fn next_timer(&self) -> Option<i64> {
        self.ops
            .iter()
            .filter_map(|o| o.operator.next_timer())
            .min()
    }

    /// Wall-clock time reached `now`: operators with a timer due fire it, in chain order,
    /// their output running through the rest of the chain.
    pub fn on_processing_time(&mut self, now: i64, out: &mut Vec<Batch>) -> Result<(), TaskError> {
        for level in 0..self.ops.len() {
            if self.ops[level]
                .operator
                .next_timer()
                .is_none_or(|t| t > now)
            {
                continue;
            }
            let mut buf = std::mem::take(&mut self.bufs[level]);
            let op = &mut self.ops[level];
            let result = catch_unwind(AssertUnwindSafe(|| {
                op.operator.on_processing_time(now, &mut buf)
            }));
            self.level_done(level, 0, result, buf, None)?;
            // A watermark an `assign` step made from this output follows it.
            if let Some(w) = self.drain(out)? {
                self.made_watermark = Some(w);
            }
        }
        Ok(())
    }

    /// Counts what operator `level` took in and emitted.
    fn emitted(&self, level: usize, records_in: usize, buf: &[Batch]) {
        let produced: usize = buf.iter().map(Batch::len).sum();
        let op = &self.ops[level];
        let m = &op.metrics.subtasks[self.subtask as usize];
        m.add(records_in, produced);
        m.records_discarded
            .store(op.operator.records_discarded(), Ordering::Relaxed);
    }

    /// Runs `batch` through the whole chain; what the last operator emits lands in `out`.
    pub fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Result<(), TaskError> {
        // A watermark an `assign` step made follows this batch's output out of the chain.
        if let Some(w) = self.start(Work::Batch(0, batch), out)? {
            self.made_watermark = Some(w);
        }
        Ok(())
    }

    /// The input ended: each operator in turn flushes, what it flushes runs through the rest of
    /// the chain before the next operator finishes. Called once per subtask.
    pub fn finish(&mut self, out: &mut Vec<Batch>) -> Result<(), TaskError> {
        for level in 0..self.ops.len() {
            let mut buf = std::mem::take(&mut self.bufs[level]);
            let op = &mut self.ops[level];
            let result = catch_unwind(AssertUnwindSafe(|| op.operator.finish(&mut buf)));
            self.level_done(level, 0, result, buf, None)?;
            // A watermark an `assign` step made from this output follows it.
            if let Some(w) = self.drain(out)? {
                self.made_watermark = Some(w);
            }
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

    /// Runs `work` and all it leads to; returns the last watermark that left the chain.
    fn start(&mut self, work: Work, out: &mut Vec<Batch>) -> Result<Option<i64>, TaskError> {
        self.pending.push(work);
        self.drain(out)
    }

    /// Passes every pending item through the rest of the chain, depth first. Returns the last
    /// watermark that passed the whole chain.
    fn drain(&mut self, out: &mut Vec<Batch>) -> Result<Option<i64>, TaskError> {
        let mut left = None;
        while let Some(work) = self.pending.pop() {
            let result = match work {
                Work::Batch(level, batch) if level == self.ops.len() => {
                    out.push(batch);
                    continue;
                }
                Work::Watermark(level, w) if level == self.ops.len() => {
                    left = Some(w);
                    continue;
                }
                Work::Batch(level, batch) => self.process_at(level, batch),
                Work::Watermark(level, w) => self.watermark_at(level, w),
            };
            if let Err(e) = result {
                self.pending.clear(); // the task ends, the rest is dropped
                return Err(e);
            }
        }
        Ok(left)
    }

    fn process_at(&mut self, level: usize, batch: Batch) -> Result<(), TaskError> {
        // An operator reads either its input's main output or its side output, never both.
        if batch.is_side_output() != self.ops[level].operator.reads_side_output() {
            return Ok(());
        }
        let records = batch.len();
        let mut buf = std::mem::take(&mut self.bufs[level]);
        let op = &mut self.ops[level];
        let result = catch_unwind(AssertUnwindSafe(|| op.operator.process(batch, &mut buf)));
        // An `assign` step made a watermark: it follows this batch's output down the chain.
        let made = self.ops[level].operator.take_watermark();
        self.level_done(level, records, result, buf, made)
    }

    fn watermark_at(&mut self, level: usize, watermark: i64) -> Result<(), TaskError> {
        let mut buf = std::mem::take(&mut self.bufs[level]);
        let op = &mut self.ops[level];
        let mut passed = None;
        let result = catch_unwind(AssertUnwindSafe(|| {
            passed = op.operator.on_watermark(watermark, &mut buf)?;
            Ok(())
        }));
        self.level_done(level, 0, result, buf, passed)
    }

    /// After a call into operator `level`: checks its result, counts, and queues what it
    /// emitted for the next level, then `watermark` behind it.
    fn level_done(
        &mut self,
        level: usize,
        records_in: usize,
        result: std::thread::Result<Result<(), crate::operators::OperatorError>>,
        mut buf: Vec<Batch>,
        watermark: Option<i64>,
    ) -> Result<(), TaskError> {
        if let Err(e) = self.check(level, result) {
            buf.clear();
            self.bufs[level] = buf;
            return Err(e);
        }
        self.emitted(level, records_in, &buf);
        if let Some(w) = watermark {
            self.pending.push(Work::Watermark(level + 1, w));
        }
        // Reversed: the first batch emitted is popped, and goes on, first.
        self.pending
            .extend(buf.drain(..).rev().map(|b| Work::Batch(level + 1, b)));
        self.bufs[level] = buf;
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
