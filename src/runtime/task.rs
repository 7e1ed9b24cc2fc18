//! The loops one subtask runs: a source task (source, then its chain) or an operator task
//! (input gate, barrier aligner, chain), both ending in the task's outgoing edges.
//!
//! End of stream: a source task sends `End` after its source ended (or `stop` was asked) and
//! its chain finished; an operator task finishes its chain and sends `End` only once every
//! input channel ended. So `End` reaches the sinks after every record, and each operator's
//! `finish` runs exactly once per subtask.
//!
//! Checkpoints: at a barrier (a source: between two `next` calls; an operator task: when the
//! aligner says every input delivered it) the subtask takes the synchronous part of the
//! snapshot of each of its operators in chain order (a source's position, copy-on-write views
//! of keyed state), hands them to the checkpoint driver over an unbounded channel, forwards
//! the barrier and goes on. Nothing here waits for storage: encoding and writing happen on
//! the driver's blocking threads, so records keep flowing while a checkpoint is written.
//!
//! Checkpoint outcomes: when a checkpoint completes (its `_metadata` durable) or is aborted,
//! the driver sends the outcome to every subtask on its own unbounded channel; the task hands
//! it to its chain between batches (an operator task also while waiting for input; a source
//! task between two `next` calls), so `notify_checkpoint_complete` never runs concurrently
//! with `process`, and outcomes arrive in the order the driver decided them.
//!
//! Blocking work: an operator never blocks the async worker it runs on; what blocks (a
//! sink's flush, commit or broker calls) it starts on a thread of its own and leaves pending
//! (`Operator::take_pending`). The task awaits it (`Chain::settle`) after every call into the
//! chain, before a snapshot goes to the driver, and before the first record (the work of a
//! restore), so the order of calls an operator sees is unchanged.
//!
//! Cancellation is not handled here: the job wraps each loop in a select on its cancel token,
//! which drops the loop (and its operators) at its next await.

use crate::operators::event_time::WatermarkEvent;
use crate::operators::task_source::TaskSource;
use crate::operators::{EndOfInput, OperatorError, SourceEvent};
use crate::pipeline::OperatorId;
use crate::record::Batch;
use crate::runtime::barrier::{BarrierAligner, Decision};
use crate::runtime::chain::Chain;
use crate::runtime::checkpointing::{CheckpointMessage, CheckpointOutcome};
use crate::runtime::exchange::Outputs;
use crate::runtime::gate::{GateEvent, InputGate};
use crate::runtime::message::{Barrier, CheckpointId, Message};
use crate::runtime::metrics::OperatorMetrics;
use crate::runtime::watermark::{ValveOutput, WatermarkValve};
use crate::runtime::{TaskError, TaskEvent};
use crate::state::OperatorSnapshot;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// `None` unless [`JobOptions::task_events`](crate::runtime::JobOptions) asked for them.
    pub events: Option<UnboundedSender<TaskEvent>>,
    /// Snapshots and end notices for the checkpoint driver; `None` when checkpointing is off.
    /// Unbounded on purpose: a send never waits, so a slow store never stalls a task (the
    /// driver holds at most one snapshot per subtask per pending checkpoint).
    pub checkpoints: Option<UnboundedSender<CheckpointMessage>>,
    /// The job's count of alignment blocks (see `JobMetrics::channels_blocked`).
    pub channels_blocked: Arc<AtomicU64>,
    /// Completed and aborted checkpoints, from the driver, for the chain's operators; `None`
    /// when checkpointing is off.
    pub outcomes: Option<UnboundedReceiver<CheckpointOutcome>>,
    /// With periodic checkpoints: the final checkpoint a bounded input waits for (shared by
    /// the job's source subtasks); `None` otherwise.
    pub final_checkpoint: Option<Arc<FinalCheckpoint>>,
    /// Periodic checkpoints without a final one (`checkpoints-after-tasks-finish: false`):
    /// a bounded end is told to the operators as [`EndOfInput::Stopped`], so transactional
    /// sinks leave uncommitted what no completed checkpoint holds (Flink loses it the same
    /// way; committing it would write it twice after a failover).
    pub end_uncommitted: bool,
}

/// Flink's final checkpoint (FLIP-147), shared by a job's source subtasks. A source whose
/// input ended keeps its task (injecting barriers at its final position) until a checkpoint
/// that every source injected after its own end completes; only then does its end flow
/// downstream. So a transactional sink commits the end of the output only with a checkpoint
/// that holds all of it: killed before that, the job restores the last completed checkpoint,
/// replays, and finds nothing after it committed. (Committing at the end of the input
/// instead wrote that output twice when the process died while the job was ending.)
pub struct FinalCheckpoint {
    sources: u32,
    /// Per checkpoint: how many sources injected its barrier after their input ended.
    after_end: std::sync::Mutex<std::collections::BTreeMap<CheckpointId, u32>>,
}

impl FinalCheckpoint {
    pub fn new(sources: u32) -> Arc<FinalCheckpoint> {
        Arc::new(FinalCheckpoint {
            sources,
            after_end: Default::default(),
        })
    }

    fn injected_after_end(&self, id: CheckpointId) {
        let mut m = self.after_end.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(id).or_default() += 1;
    }

    /// Whether every source injected `id` after its input ended.
    fn covers(&self, id: CheckpointId) -> bool {
        let m = self.after_end.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&id).is_some_and(|n| *n >= self.sources)
    }
}

impl TaskContext {
    /// The barrier is aligned here: the subtask's state is what the checkpoint holds. The next
    /// issue snapshots operator state at this point; for now the job is told.
    fn snapshot(&self, barrier: Barrier) {
        // The receiver lives as long as the job handle; if it is gone nobody waits for acks.
        let Some(events) = &self.events else {
            return;
        };
        let _ = events.send(TaskEvent::Snapshot {
            task: self.task,
            subtask: self.subtask,
            barrier,
        });
    }

    /// Takes the synchronous part of the snapshot for `barrier` and hands it to the checkpoint
    /// driver: the source's position first (for a source task), then each chained operator.
    /// Blocking work a snapshot started (a sink's pre-commit flush) is awaited before the
    /// snapshot goes to the driver: the checkpoint holds nothing that is not done.
    async fn checkpoint(
        &self,
        barrier: Barrier,
        source: Option<&mut SourceSlot>,
        chain: &mut Chain,
    ) -> Result<(), TaskError> {
        self.snapshot(barrier);
        let Some(tx) = &self.checkpoints else {
            return Ok(());
        };
        let mut states = Vec::with_capacity(chain.len() + 1);
        if let Some(slot) = source {
            let position = slot.source.snapshot_position(barrier.checkpoint_id);
            states.push(position.map(|p| OperatorSnapshot::blob(p.to_blob())));
        }
        chain.snapshot(barrier.checkpoint_id, &mut states)?;
        chain.settle().await?;
        // The driver outlives the tasks; if it is gone the job is ending anyway.
        let _ = tx.send(CheckpointMessage::Snapshot {
            checkpoint_id: barrier.checkpoint_id,
            task: self.task,
            subtask: self.subtask,
            states,
        });
        Ok(())
    }

    /// Hands every checkpoint outcome that has arrived to the source task's source and chain,
    /// in order.
    async fn deliver_outcomes(
        &mut self,
        slot: &mut SourceSlot,
        chain: &mut Chain,
    ) -> Result<(), TaskError> {
        let Some(rx) = &mut self.outcomes else {
            return Ok(());
        };
        while let Ok(outcome) = rx.try_recv() {
            deliver(slot, chain, outcome, self.subtask, self.parallelism).await?;
        }
        Ok(())
    }

    /// Waits for the outcome of (stop-with-)savepoint `id`, handing every outcome that
    /// arrives meanwhile to the chain. True: it completed (the source stops). False: it was
    /// aborted, or the driver is gone.
    async fn await_outcome(
        &mut self,
        id: CheckpointId,
        slot: &mut SourceSlot,
        chain: &mut Chain,
    ) -> Result<bool, TaskError> {
        let Some(rx) = &mut self.outcomes else {
            return Ok(false);
        };
        while let Some(outcome) = rx.recv().await {
            deliver(slot, chain, outcome, self.subtask, self.parallelism).await?;
            match outcome {
                CheckpointOutcome::Completed(c) if c == id => return Ok(true),
                CheckpointOutcome::Aborted(c) if c == id => return Ok(false),
                _ => {}
            }
        }
        Ok(false)
    }

    /// The input is about to end: a bounded end, or `stop()`. (A source task whose input is
    /// finished has sent the final watermark already, before its final checkpoint.)
    fn end_of_input(&self, chain: &mut Chain) -> Result<(), TaskError> {
        let why = if self.stop.load(Ordering::SeqCst) || self.end_uncommitted {
            EndOfInput::Stopped
        } else {
            EndOfInput::Finished
        };
        chain.end_of_input(why)
    }

    /// This source subtask's input ended: when all have, the final checkpoint is due.
    fn input_ended(&self) {
        if let Some(tx) = &self.checkpoints {
            let _ = tx.send(CheckpointMessage::InputEnded {
                task: self.task,
                subtask: self.subtask,
            });
        }
    }

    /// This subtask ended normally: it acks no later checkpoint.
    fn finished(&self) {
        if let Some(tx) = &self.checkpoints {
            let _ = tx.send(CheckpointMessage::Finished {
                task: self.task,
                subtask: self.subtask,
            });
        }
    }
}

/// The source of a source task, with what the errors and counters need.
pub struct SourceSlot {
    pub id: OperatorId,
    pub source: TaskSource,
    pub metrics: Arc<OperatorMetrics>,
    /// Barriers to inject, from the checkpoint driver.
    pub triggers: UnboundedReceiver<Injection>,
}

impl SourceSlot {
    pub fn new(
        id: OperatorId,
        source: TaskSource,
        metrics: Arc<OperatorMetrics>,
        triggers: UnboundedReceiver<Injection>,
    ) -> SourceSlot {
        SourceSlot {
            id,
            source,
            metrics,
            triggers,
        }
    }
}

/// A barrier to inject at a source, and whether the source stops at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    pub barrier: Barrier,
    /// Stop-with-savepoint: `Some(drain)`. The source emits nothing after this barrier; it
    /// waits for the savepoint's outcome, then ends (completed) or goes on (aborted). Both
    /// in the one message, so no record can slip in between the barrier and the stop.
    pub stop: Option<bool>,
}

pub async fn run_source_task(
    mut slot: SourceSlot,
    mut chain: Chain,
    mut outputs: Outputs,
    mut ctx: TaskContext,
) -> Result<(), TaskError> {
    let mut out = Vec::new();
    // What `open` and `restore_state` started (a sink's commits of a restored checkpoint).
    chain.settle().await?;
    let metrics = slot.metrics.clone();
    let metrics = &metrics.subtasks[ctx.subtask as usize];
    let mut yielder = Yielder::new();
    loop {
        // Between two calls of `next` the source is at a record boundary: the place to inject
        // a barrier, so that every record before it is in this checkpoint.
        if let Some((id, drain)) =
            inject_barriers(&mut slot, &mut chain, &mut outputs, &ctx).await?
        {
            if ctx.await_outcome(id, &mut slot, &mut chain).await? {
                if !drain {
                    // Not drained: the input ends as stopped (sinks keep what follows the
                    // savepoint uncommitted; nothing does, the barrier was the last).
                    ctx.stop.store(true, Ordering::SeqCst);
                }
                break;
            }
            // The savepoint failed: the job goes on.
        }
        ctx.deliver_outcomes(&mut slot, &mut chain).await?;
        if ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        // A source that always has data and a chain without channels would never reach an
        // await that yields. Tokio's cooperative budget alone yields only every 128 batches
        // (about a second of work), and a task this one wakes (the checkpoint writer, say)
        // waits in this worker's LIFO slot, which no other worker steals: so yield at least
        // every millisecond of work, which bounds checkpoint latency, not just throughput.
        yielder.maybe_yield().await;
        match slot.source.next().await {
            Ok(SourceEvent::Batch(batch)) => {
                metrics.add(0, batch.len());
                chain.process(batch, &mut out)?;
                chain.settle().await?;
                let made = chain.take_watermark();
                send(&mut outputs, &mut out, made).await?;
            }
            // Let other tasks on this worker run; the source itself waits up to ~100 ms.
            Ok(SourceEvent::Idle) => tokio::task::yield_now().await,
            Ok(SourceEvent::End) => {
                input_finished(&mut slot, &mut chain, &mut outputs, &mut out, &mut ctx).await?;
                break;
            }
            Err(error) => return Err(source_error(&slot.id, ctx.subtask, ctx.parallelism, error)),
        }
        metrics
            .records_discarded
            .store(slot.source.records_discarded(), Ordering::Relaxed);
        // The source's event time, after the records it stands behind.
        match slot.source.watermark() {
            Some(WatermarkEvent::Advance(w)) => {
                let passed = chain.watermark(w, &mut out)?;
                chain.settle().await?;
                send(&mut outputs, &mut out, passed).await?;
            }
            Some(WatermarkEvent::Idle) => outputs.broadcast(|| Message::Idle).await?,
            None => {}
        }
        fire_timers(&mut chain, &mut outputs, &mut out).await?;
    }
    // Barriers triggered while the last batch was read still find every record before them:
    // inject them, so a checkpoint triggered at the very end can complete.
    inject_barriers(&mut slot, &mut chain, &mut outputs, &ctx).await?;
    ctx.end_of_input(&mut chain)?;
    chain.finish(&mut out)?;
    chain.settle().await?;
    outputs.emit(&mut out).await?;
    outputs.broadcast(|| Message::End).await?;
    ctx.finished();
    Ok(())
}

/// A source's input is finished (not stopped): the final watermark (Flink's
/// `MAX_WATERMARK`) fires every event-time window still open, then, with periodic
/// checkpoints, the source waits for the final checkpoint, which so holds the windows' output.
async fn input_finished(
    slot: &mut SourceSlot,
    chain: &mut Chain,
    outputs: &mut Outputs,
    out: &mut Vec<Batch>,
    ctx: &mut TaskContext,
) -> Result<(), TaskError> {
    if !ctx.stop.load(Ordering::SeqCst) {
        let passed = chain.watermark(i64::MAX, out)?;
        chain.settle().await?;
        send(outputs, out, passed).await?;
    }
    if let Some(fc) = ctx.final_checkpoint.clone() {
        ctx.input_ended();
        await_final_checkpoint(&fc, slot, chain, outputs, ctx).await?;
    }
    Ok(())
}

/// What a source whose input ended waits on.
enum Waited {
    Outcome(Option<CheckpointOutcome>),
    Trigger(Option<Injection>),
    Tick,
}

/// A source's input ended: it injects the barriers triggered from now on at its final
/// position and hands checkpoint outcomes to its chain, until a checkpoint every source
/// injected after its end completes ([`FinalCheckpoint`]), the job is stopped, or the driver
/// is gone.
async fn await_final_checkpoint(
    fc: &FinalCheckpoint,
    slot: &mut SourceSlot,
    chain: &mut Chain,
    outputs: &mut Outputs,
    ctx: &mut TaskContext,
) -> Result<(), TaskError> {
    loop {
        if ctx.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Some(outcomes) = ctx.outcomes.as_mut() else {
            return Ok(());
        };
        // `stop` is a flag, not a wakeup: look at it now and then.
        let waited = tokio::select! {
            biased;
            o = outcomes.recv() => Waited::Outcome(o),
            t = slot.triggers.recv() => Waited::Trigger(t),
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => Waited::Tick,
        };
        match waited {
            Waited::Outcome(Some(outcome)) => {
                deliver(slot, chain, outcome, ctx.subtask, ctx.parallelism).await?;
                if let CheckpointOutcome::Completed(id) = outcome {
                    if fc.covers(id) {
                        return Ok(());
                    }
                }
            }
            Waited::Trigger(Some(Injection { barrier, .. })) => {
                ctx.checkpoint(barrier, Some(&mut *slot), chain).await?;
                outputs.broadcast(move || Message::Barrier(barrier)).await?;
                fc.injected_after_end(barrier.checkpoint_id);
            }
            Waited::Outcome(None) | Waited::Trigger(None) => return Ok(()),
            Waited::Tick => {}
        }
    }
}

/// Injects every barrier triggered since the last call: snapshot, then the barrier on every
/// output, at a record boundary.
///
/// Returns the id and `drain` of a stop-with-savepoint barrier: it is the last one injected
/// (later ones stay queued until the savepoint's outcome is known).
async fn inject_barriers(
    slot: &mut SourceSlot,
    chain: &mut Chain,
    outputs: &mut Outputs,
    ctx: &TaskContext,
) -> Result<Option<(CheckpointId, bool)>, TaskError> {
    while let Ok(Injection { barrier, stop }) = slot.triggers.try_recv() {
        ctx.checkpoint(barrier, Some(&mut *slot), chain).await?;
        outputs.broadcast(move || Message::Barrier(barrier)).await?;
        if let Some(drain) = stop {
            return Ok(Some((barrier.checkpoint_id, drain)));
        }
    }
    Ok(None)
}

fn source_error(
    id: &OperatorId,
    subtask: u32,
    parallelism: u32,
    error: OperatorError,
) -> TaskError {
    TaskError::Operator {
        operator: id.clone(),
        subtask,
        parallelism,
        error,
    }
}

/// Hands a checkpoint's outcome to a source task's source, then its chain; the source's
/// error fails the task, naming the source.
async fn deliver(
    slot: &mut SourceSlot,
    chain: &mut Chain,
    outcome: CheckpointOutcome,
    subtask: u32,
    parallelism: u32,
) -> Result<(), TaskError> {
    slot.source
        .notify(outcome)
        .map_err(|error| source_error(&slot.id, subtask, parallelism, error))?;
    chain.notify(outcome)?;
    chain.settle().await
}

/// What an operator task waits for.
enum Wake {
    Outcome(CheckpointOutcome),
    /// A processing-time timer of the chain is due.
    Timer,
    Gate(GateEvent),
}

/// The next thing an operator task acts on: checkpoint outcomes first (a commit should not
/// wait behind a busy input), then a due timer, then input. Each branch is cancel-safe
/// (`gate.next()` takes a message only in the poll that returns it).
async fn wake(
    gate: &mut InputGate,
    outcomes: Option<&mut UnboundedReceiver<CheckpointOutcome>>,
    timer: Option<i64>,
) -> Wake {
    let outcome = async {
        match outcomes {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    };
    let due = async {
        match timer {
            Some(at) => {
                let wait = at.saturating_sub(now_ms()).max(0) as u64;
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        Some(outcome) = outcome => Wake::Outcome(outcome),
        _ = due => Wake::Timer,
        event = gate.next() => Wake::Gate(event),
    }
}

pub async fn run_operator_task(
    mut gate: InputGate,
    mut aligner: BarrierAligner,
    mut chain: Chain,
    mut outputs: Outputs,
    mut ctx: TaskContext,
) -> Result<(), TaskError> {
    let mut out = Vec::new();
    // What `open` and `restore_state` started (a sink's commits of a restored checkpoint).
    chain.settle().await?;
    let mut yielder = Yielder::new();
    let mut valve = WatermarkValve::new(gate.channels());
    loop {
        let event = match wake(&mut gate, ctx.outcomes.as_mut(), chain.next_timer()).await {
            Wake::Outcome(outcome) => {
                chain.notify(outcome)?;
                chain.settle().await?;
                continue;
            }
            Wake::Timer => {
                fire_timers(&mut chain, &mut outputs, &mut out).await?;
                continue;
            }
            Wake::Gate(event) => event,
        };
        let decision = match event {
            GateEvent::Message(i, Message::Data(batch)) => {
                let woke = valve.on_data(i);
                apply_valve(woke, &mut chain, &mut outputs, &mut out).await?;
                chain.process(batch, &mut out)?;
                chain.settle().await?;
                let made = chain.take_watermark();
                send(&mut outputs, &mut out, made).await?;
                // Inputs that always have data never make `gate.next()` wait: yield now and
                // then so tasks this one woke get to run (see `Yielder`).
                yielder.maybe_yield().await;
                continue;
            }
            GateEvent::Message(i, Message::Watermark(w)) => {
                let moved = valve.on_watermark(i, w);
                apply_valve(moved, &mut chain, &mut outputs, &mut out).await?;
                continue;
            }
            GateEvent::Message(i, Message::Idle) => {
                let moved = valve.on_idle(i);
                apply_valve(moved, &mut chain, &mut outputs, &mut out).await?;
                continue;
            }
            GateEvent::Message(i, Message::Barrier(barrier)) => aligner.on_barrier(i, barrier),
            GateEvent::Message(i, Message::End) => {
                let moved = valve.on_end(i);
                apply_valve(moved, &mut chain, &mut outputs, &mut out).await?;
                aligner.on_end(i)
            }
            GateEvent::Disconnected(_) => return Err(TaskError::Disconnected),
            GateEvent::Finished => break,
        };
        apply(
            decision,
            &mut gate,
            &aligner,
            &mut chain,
            &mut outputs,
            &ctx,
        )
        .await?;
    }
    ctx.end_of_input(&mut chain)?;
    chain.finish(&mut out)?;
    chain.settle().await?;
    outputs.emit(&mut out).await?;
    outputs.broadcast(|| Message::End).await?;
    ctx.finished();
    Ok(())
}

/// Sends the chain's output, then `watermark` if there is one (it follows the records it
/// stands behind).
async fn send(
    outputs: &mut Outputs,
    out: &mut Vec<Batch>,
    watermark: Option<i64>,
) -> Result<(), TaskError> {
    outputs.emit(out).await?;
    if let Some(w) = watermark {
        outputs.broadcast(move || Message::Watermark(w)).await?;
    }
    Ok(())
}

/// Carries out what the input valve decided: event time advanced (through the chain, then
/// downstream), or the subtask went idle (downstream).
async fn apply_valve(
    change: Option<ValveOutput>,
    chain: &mut Chain,
    outputs: &mut Outputs,
    out: &mut Vec<Batch>,
) -> Result<(), TaskError> {
    match change {
        Some(ValveOutput::Advance(w)) => {
            let passed = chain.watermark(w, out)?;
            chain.settle().await?;
            send(outputs, out, passed).await
        }
        Some(ValveOutput::Idle) => Ok(outputs.broadcast(|| Message::Idle).await?),
        None => Ok(()),
    }
}

/// Fires the chain's processing-time timers that are due and sends what they produce.
async fn fire_timers(
    chain: &mut Chain,
    outputs: &mut Outputs,
    out: &mut Vec<Batch>,
) -> Result<(), TaskError> {
    let now = now_ms();
    if chain.next_timer().is_some_and(|t| t <= now) {
        chain.on_processing_time(now, out)?;
        chain.settle().await?;
        let made = chain.take_watermark();
        send(outputs, out, made).await?;
    }
    Ok(())
}

pub use crate::record::now_ms;

/// Carries out the aligner's decision: which channels the gate polls, snapshot and forward.
async fn apply(
    decision: Decision,
    gate: &mut InputGate,
    aligner: &BarrierAligner,
    chain: &mut Chain,
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
    if decision.block {
        ctx.channels_blocked.fetch_add(1, Ordering::Relaxed);
    }
    gate.unblock_all();
    for i in 0..gate.channels() {
        if aligner.is_blocked(i) {
            gate.block(i);
        }
    }
    if let Some(barrier) = decision.snapshot {
        // Aligned: every record before the barrier on every input is in the state, none
        // after it (EXACTLY_ONCE held those back). Snapshot, then forward.
        ctx.checkpoint(barrier, None, chain).await?;
        outputs.broadcast(move || Message::Barrier(barrier)).await?;
    }
    Ok(())
}

/// Yields to the tokio scheduler once a task has worked for [`Yielder::SLICE`] without
/// waiting. Busy tasks otherwise starve the tasks they wake: a woken task goes to the waking
/// worker's LIFO slot, which other workers do not steal.
struct Yielder {
    since: std::time::Instant,
}

impl Yielder {
    const SLICE: std::time::Duration = std::time::Duration::from_millis(1);

    fn new() -> Self {
        Yielder {
            since: std::time::Instant::now(),
        }
    }

    async fn maybe_yield(&mut self) {
        if self.since.elapsed() >= Self::SLICE {
            tokio::task::yield_now().await;
            self.since = std::time::Instant::now();
        }
    }
}
