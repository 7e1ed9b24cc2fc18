//! The loops one subtask runs: a source task (source, then its chain) or an operator task
//! (input gate, barrier aligner, chain), both ending in the task's outgoing edges.
//!
//! End of stream: a source task sends `End` after its source ended (or `stop` was asked) and
//! its chain finished; an operator task finishes its chain and sends `End` only once every
//! input channel ended. So `End` reaches the sinks after every record, and each operator's
//! `finish` runs exactly once per subtask.
//!
//! Cancellation is not handled here: the job wraps each loop in a select on its cancel token,
//! which drops the loop (and its operators) at its next await.

use crate::operators::{OperatorError, SourceEvent};
use crate::pipeline::OperatorId;
use crate::runtime::barrier::{BarrierAligner, Decision};
use crate::runtime::chain::Chain;
use crate::runtime::exchange::Outputs;
use crate::runtime::gate::{GateEvent, InputGate};
use crate::runtime::message::{Barrier, Message};
use crate::runtime::metrics::OperatorMetrics;
use crate::runtime::source::TaskSource;
use crate::runtime::{TaskError, TaskEvent};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// Where a subtask stands in the job, and how it talks to the job.
pub struct TaskContext {
    /// Index of the task in the plan.
    pub task: usize,
    pub subtask: u32,
    pub parallelism: u32,
    /// Sources check it between calls: when set, they end as if bounded. (A plain flag: it is
    /// read once per batch, a token would take a lock.)
    pub stop: Arc<AtomicBool>,
    /// Snapshot points (barrier aligned) and the like, for the job (the checkpoint coordinator).
    pub events: UnboundedSender<TaskEvent>,
}

impl TaskContext {
    /// The barrier is aligned here: the subtask's state is what the checkpoint holds. The next
    /// issue snapshots operator state at this point; for now the job is told.
    fn snapshot(&self, barrier: Barrier) {
        // The receiver lives as long as the job handle; if it is gone nobody waits for acks.
        let _ = self.events.send(TaskEvent::Snapshot {
            task: self.task,
            subtask: self.subtask,
            barrier,
        });
    }
}

/// The source of a source task, with what the errors and counters need.
pub struct SourceSlot {
    pub id: OperatorId,
    pub source: TaskSource,
    pub metrics: Arc<OperatorMetrics>,
    /// Barriers to inject, from the job (later: the checkpoint coordinator).
    pub triggers: UnboundedReceiver<Barrier>,
}

pub async fn run_source_task(
    mut slot: SourceSlot,
    mut chain: Chain,
    mut outputs: Outputs,
    ctx: TaskContext,
) -> Result<(), TaskError> {
    let mut out = Vec::new();
    let metrics = &slot.metrics.subtasks[ctx.subtask as usize];
    loop {
        // Between two calls of `next` the source is at a record boundary: the place to inject
        // a barrier, so that every record before it is in this checkpoint.
        while let Ok(barrier) = slot.triggers.try_recv() {
            ctx.snapshot(barrier);
            outputs.broadcast(move || Message::Barrier(barrier)).await?;
        }
        if ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        // A source that always has data and a chain without channels would never reach an
        // await that yields: spend tokio's cooperative budget so the worker still gets to
        // other tasks (and the cancel check around this loop) now and then.
        tokio::task::consume_budget().await;
        match slot.source.next().await {
            Ok(SourceEvent::Batch(batch)) => {
                metrics.add(0, batch.len());
                chain.process(batch, &mut out)?;
                outputs.emit(&mut out).await?;
            }
            // Let other tasks on this worker run; the source itself waits up to ~100 ms.
            Ok(SourceEvent::Idle) => tokio::task::yield_now().await,
            Ok(SourceEvent::End) => break,
            Err(error) => return Err(source_error(&slot.id, &ctx, error)),
        }
    }
    chain.finish(&mut out)?;
    outputs.emit(&mut out).await?;
    outputs.broadcast(|| Message::End).await?;
    Ok(())
}

fn source_error(id: &OperatorId, ctx: &TaskContext, error: OperatorError) -> TaskError {
    TaskError::Operator {
        operator: id.clone(),
        subtask: ctx.subtask,
        parallelism: ctx.parallelism,
        error,
    }
}

pub async fn run_operator_task(
    mut gate: InputGate,
    mut aligner: BarrierAligner,
    mut chain: Chain,
    mut outputs: Outputs,
    ctx: TaskContext,
) -> Result<(), TaskError> {
    let mut out = Vec::new();
    loop {
        let decision = match gate.next().await {
            GateEvent::Message(_, Message::Data(batch)) => {
                chain.process(batch, &mut out)?;
                outputs.emit(&mut out).await?;
                continue;
            }
            GateEvent::Message(i, Message::Barrier(barrier)) => aligner.on_barrier(i, barrier),
            GateEvent::Message(i, Message::End) => aligner.on_end(i),
            GateEvent::Disconnected(_) => return Err(TaskError::Disconnected),
            GateEvent::Finished => break,
        };
        apply(decision, &mut gate, &aligner, &mut outputs, &ctx).await?;
    }
    chain.finish(&mut out)?;
    outputs.emit(&mut out).await?;
    outputs.broadcast(|| Message::End).await?;
    Ok(())
}

/// Carries out the aligner's decision: which channels the gate polls, snapshot and forward.
async fn apply(
    decision: Decision,
    gate: &mut InputGate,
    aligner: &BarrierAligner,
    outputs: &mut Outputs,
    ctx: &TaskContext,
) -> Result<(), TaskError> {
    if let Some(id) = decision.aborted {
        tracing::warn!(
            checkpoint_id = id.0,
            task = ctx.task,
            subtask = ctx.subtask,
            "alignment of an older checkpoint abandoned for a newer barrier"
        );
    }
    gate.unblock_all();
    for i in 0..gate.channels() {
        if aligner.is_blocked(i) {
            gate.block(i);
        }
    }
    if let Some(barrier) = decision.snapshot {
        ctx.snapshot(barrier);
        outputs.broadcast(move || Message::Barrier(barrier)).await?;
    }
    Ok(())
}
