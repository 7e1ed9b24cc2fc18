//! The operator catalogue: one file per YAML `type:`, grouped by role.
//!
//! Each file holds the operator's `FooConfig` (the serde struct a user writes), its runtime
//! `Foo` and its unit tests. This module is the one place that lists every `type:` this build
//! knows, as closed enums matched exhaustively.
//!
//! An operator never writes a checkpoint file and never sees a barrier: it declares its state
//! and the runtime aligns barriers, snapshots and restores.
//!
//! Role decides between the two meanings of `type: file` and `type: kafka`: without `inputs`
//! it is the source, with `inputs` the sink.

pub mod event_time;
pub mod sinks;
pub mod sources;
pub mod task_source;
pub mod transforms;

use crate::ids::{CheckpointId, CheckpointOutcome};
use crate::record::{Batch, Schema};
use crate::state::{OperatorSnapshot, RestoredBlob};
use sources::SourcePosition;
use std::fmt;

pub use sinks::{
    blackhole::BlackholeConfig, file::FileSinkConfig, kafka::KafkaSinkConfig, print::PrintConfig,
};
pub use sources::{
    datagen::DatagenConfig, file::FileSourceConfig, kafka::KafkaSourceConfig, socket::SocketConfig,
};
pub use transforms::{
    assign::AssignConfig, filter::FilterConfig, flat_map::FlatMapConfig, key_by::KeyByConfig,
    map::MapConfig, parse::ParseConfig, side_output::SideOutputConfig, window::WindowConfig,
};

/// Whether an operator reads from others, and whether others may read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Transform,
    Sink,
}

/// One operator's settings, by role.
#[derive(Debug, Clone)]
pub enum OperatorConfig {
    Source(SourceConfig),
    Transform(TransformConfig),
    Sink(SinkConfig),
}

/// The one list of operator types: each `type:` name with its role, enum variant and config
/// struct. The role enums, the name lists (did-you-mean, the reference, validation),
/// [`OperatorConfig::type_name`], [`OperatorConfig::spec`] and [`OperatorConfig::parse`] are
/// all generated from it, so a new operator is added here once.
macro_rules! operator_types {
    ($( $role:ident $enum:ident $list:ident { $( $name:literal => $variant:ident($config:ty), )* } )*) => {
        $(
            #[doc = concat!("Every ", stringify!($role), " `type:`.")]
            #[derive(Debug, Clone)]
            pub enum $enum {
                $( $variant($config), )*
            }

            #[doc = concat!("The ", stringify!($role), " type names, in catalogue order.")]
            pub const $list: &[&str] = &[$( $name, )*];
        )*

        impl OperatorConfig {
            /// The YAML `type:` name.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( $( OperatorConfig::$role($enum::$variant(_)) => $name, )* )*
                }
            }

            pub fn spec(&self) -> &dyn OperatorSpec {
                match self {
                    $( $( OperatorConfig::$role($enum::$variant(c)) => c, )* )*
                }
            }

            /// Parses `body` as the operator `type_name` of `role`.
            fn parse_as(
                role: Role,
                type_name: &str,
                body: serde_yaml::Mapping,
            ) -> Result<OperatorConfig, Vec<Problem>> {
                match (role, type_name) {
                    $( $( (Role::$role, $name) => {
                        Ok(OperatorConfig::$role($enum::$variant(parse_body(body)?)))
                    } )* )*
                    (_, other) => Err(vec![unknown_type(other)]),
                }
            }
        }
    };
}

operator_types! {
    Source SourceConfig SOURCE_TYPES {
        "socket" => Socket(SocketConfig),
        "file" => File(FileSourceConfig),
        "datagen" => Datagen(DatagenConfig),
        "kafka" => Kafka(KafkaSourceConfig),
    }
    Transform TransformConfig TRANSFORM_TYPES {
        "flat_map" => FlatMap(FlatMapConfig),
        "map" => Map(MapConfig),
        "filter" => Filter(FilterConfig),
        "key_by" => KeyBy(KeyByConfig),
        "parse" => Parse(ParseConfig),
        "assign" => Assign(AssignConfig),
        "window" => Window(WindowConfig),
        "side_output" => SideOutput(SideOutputConfig),
    }
    Sink SinkConfig SINK_TYPES {
        "print" => Print(PrintConfig),
        "file" => File(FileSinkConfig),
        "blackhole" => Blackhole(BlackholeConfig),
        "kafka" => Kafka(KafkaSinkConfig),
    }
}

/// A problem found in one operator's settings while checking a pipeline.
///
/// `field` is the setting it is about (`separator`, `fields.one`), empty for the operator as a
/// whole; the pipeline checker prefixes the operator's path (`operators[2]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What every operator config can say about itself before anything runs.
pub trait OperatorSpec {
    /// The schema this operator produces from its input schema (`None` for a source).
    /// Field references are checked here against `input`, every problem reported.
    fn output_schema(&self, input: Option<&Schema>) -> Result<Schema, Vec<Problem>>;

    /// Whether the operator keeps keyed state (key_by aggregates do).
    fn is_keyed(&self) -> bool {
        false
    }

    /// A fixed parallelism the operator needs, whatever the pipeline says (socket: 1).
    fn required_parallelism(&self) -> Option<u32> {
        None
    }

    /// For a keyed operator, the field of its input records it is keyed by: the runtime
    /// routes each record to the subtask owning that key's key group.
    fn key_field(&self) -> Option<&str> {
        None
    }

    /// Whether the records it produces carry event time, given whether its input's do
    /// (`false` for a source): sources with `event-time:`, `assign`, windows.
    fn makes_event_time(&self, input: bool) -> bool {
        input
    }

    /// Whether its input records must carry event time (an event-time window).
    fn needs_event_time(&self) -> bool {
        false
    }

    /// The side outputs it has (a window's `late-output`), which a `side_output` operator
    /// may read; their records have the operator's input schema.
    fn side_outputs(&self) -> Vec<&str> {
        Vec::new()
    }

    /// For a `side_output` operator: the side output it reads of its input.
    fn reads_side_output(&self) -> Option<&str> {
        None
    }

    /// Problems with running under `job`, the guarantee the job's checkpointing gives (a
    /// sink that cannot write exactly-once with its settings): checked when a job is
    /// prepared, once the configuration is known.
    fn check_guarantee(&self, _job: DeliveryGuarantee) -> Vec<Problem> {
        Vec::new()
    }

    /// What the operator needs from this machine to start, checked without reading any data
    /// (a file source's `path` must name something): `Err` when it could not start, with the
    /// message its start would give; `Ok(Some(warning))` when it can, but something is
    /// missing yet. Relative paths resolve against `base_dir`, the pipeline file's directory.
    fn check_start(&self, _base_dir: &std::path::Path) -> Result<Option<String>, String> {
        Ok(None)
    }
}

impl OperatorConfig {
    pub fn role(&self) -> Role {
        match self {
            OperatorConfig::Source(_) => Role::Source,
            OperatorConfig::Transform(_) => Role::Transform,
            OperatorConfig::Sink(_) => Role::Sink,
        }
    }
}

/// Where one subtask of an operator runs: what a built operator may know about its place.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The operator's `id` in the pipeline.
    pub operator_id: String,
    /// 0-based index of this subtask.
    pub subtask: u32,
    /// How many subtasks the operator runs as.
    pub parallelism: u32,
    /// Number of key groups (Flink's max parallelism).
    pub max_parallelism: u32,
    /// Directory relative paths in the pipeline resolve against (the pipeline file's).
    pub base_dir: std::path::PathBuf,
    /// Whether the job's checkpoints may write deltas of keyed state
    /// (`state.backend.incremental`): keyed state tracks its changes only then.
    pub delta_checkpoints: bool,
}

#[cfg(test)]
impl BuildContext {
    /// The one subtask of operator `id` at parallelism 1, paths relative to the working
    /// directory: what an operator's unit tests build with.
    pub(crate) fn single(operator_id: &str) -> BuildContext {
        BuildContext {
            operator_id: operator_id.into(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            base_dir: ".".into(),
            delta_checkpoints: true,
        }
    }
}

/// Why an operator failed. The runtime adds the operator id and subtask.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Input the operator cannot handle (a record it cannot parse, an expression error).
    #[error("{0}")]
    Data(String),
    /// An I/O failure, with what was being done ("cannot connect to 127.0.0.1:8888").
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Settings that passed validation but cannot work at run time.
    #[error("{0}")]
    Config(String),
}

impl OperatorError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        OperatorError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A running transform or sink subtask. Sinks emit nothing.
///
/// `process` gets whole batches and appends what it produces to `out` (zero or more batches);
/// the runtime hands those to the next operator of the chain or to the exchange. It must not
/// block for long: it runs on the task's thread, and the task also aligns barriers.
pub trait Operator: Send {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Result<(), OperatorError>;

    /// The input has ended (a bounded job finishing): flush what is buffered.
    fn finish(&mut self, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        Ok(())
    }

    /// The synchronous part of a snapshot, called by the runtime when a barrier has aligned
    /// at this subtask: a copy-on-write view of the state, nothing slow. `None`: no state.
    fn snapshot_state(&mut self) -> Option<OperatorSnapshot> {
        None
    }

    /// [`Operator::snapshot_state`] knowing the checkpoint: what the runtime calls. A sink
    /// that pre-commits at the barrier needs the id to know which completion commits what,
    /// and may fail (a flush that fails): that fails the task, as a failure in the
    /// synchronous part of a snapshot does in Flink.
    fn snapshot_state_at(
        &mut self,
        _checkpoint: CheckpointId,
    ) -> Result<Option<OperatorSnapshot>, OperatorError> {
        Ok(self.snapshot_state())
    }

    /// Put back restored state, before the first record arrives.
    fn restore_state(&mut self, _state: RestoredState) -> Result<(), OperatorError> {
        Ok(())
    }

    /// What the job guarantees; called once, after building and before `restore_state` and
    /// the first record. A sink may write transactionally under `ExactlyOnce`.
    fn open(&mut self, _guarantee: DeliveryGuarantee) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Checkpoint `checkpoint` is complete: its `_metadata` is durable. Called on the task,
    /// between batches, never concurrently with `process`, in checkpoint order. Best effort:
    /// a notification may never come (a failure right after completion), and a later one
    /// implies the earlier ones (Flink's `notifyCheckpointComplete`).
    fn notify_checkpoint_complete(
        &mut self,
        _checkpoint: CheckpointId,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Checkpoint `checkpoint` was aborted (expired, failed, abandoned): it will never
    /// complete. What was pre-committed for it waits for the next completed checkpoint.
    fn notify_checkpoint_aborted(
        &mut self,
        _checkpoint: CheckpointId,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Why the input is about to end; called just before `finish`.
    fn end_of_input(&mut self, _why: EndOfInput) {}

    /// The input's event time reached `watermark` (ms since the epoch): every record at or
    /// before it has arrived. Fire what is due into `out`; return the watermark to pass on
    /// downstream (`None`: nothing, as an `assign` step, which makes its own).
    fn on_watermark(
        &mut self,
        watermark: i64,
        _out: &mut Vec<Batch>,
    ) -> Result<Option<i64>, OperatorError> {
        Ok(Some(watermark))
    }

    /// An operator that makes watermarks (`assign`): its watermark after the last
    /// `process`, when it advanced. The runtime sends it on after that batch's output.
    fn take_watermark(&mut self) -> Option<i64> {
        None
    }

    /// The earliest wall-clock time (ms since the epoch) at which the operator wants
    /// [`Operator::on_processing_time`]: processing-time windows. `None`: no timer.
    fn next_timer(&self) -> Option<i64> {
        None
    }

    /// Wall-clock time reached `now` (ms since the epoch): fire the processing-time timers
    /// due into `out`. Called between batches, never concurrently with `process`.
    fn on_processing_time(
        &mut self,
        _now: i64,
        _out: &mut Vec<Batch>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Whether it reads its input's side output (`side_output`) rather than its main output:
    /// the runtime hands each operator only the batches of the stream it reads.
    fn reads_side_output(&self) -> bool {
        false
    }

    /// Records this subtask discarded so far: input that did not parse under
    /// `on-error: drop`, records too late for their window. The runtime reads it after each
    /// batch into the operator's `records-discarded` counter.
    fn records_discarded(&self) -> u64 {
        0
    }

    /// Blocking work the last call started on a thread of its own (a flush, a commit, a
    /// broker call of a restore), instead of blocking the async worker it was called on. The
    /// task takes it after every call (and after `open` and `restore_state`, before the first
    /// record) and awaits it before it calls the operator again, hands a snapshot to the
    /// checkpoint, or ends: its failure fails the task as the call's would have. Batches the
    /// call emitted have gone on already, so only an operator that emits nothing (a sink)
    /// should leave work pending after `process`.
    fn take_pending(&mut self) -> Option<PendingWork> {
        None
    }
}

/// Blocking work of an operator, running on a thread of its own: see
/// [`Operator::take_pending`].
#[must_use = "the task must await the work before it calls the operator again"]
pub struct PendingWork(tokio::sync::oneshot::Receiver<Result<(), OperatorError>>);

impl PendingWork {
    /// Runs `work` on a new thread named `name`; if no thread can be started, here.
    pub fn spawn(
        name: &str,
        work: impl FnOnce() -> Result<(), OperatorError> + Send + 'static,
    ) -> PendingWork {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some((work, tx))));
        let on_thread = slot.clone();
        let spawned = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run_work(&on_thread));
        if spawned.is_err() {
            run_work(&slot);
        }
        PendingWork(rx)
    }

    /// Work already done, with its result.
    pub fn done(result: Result<(), OperatorError>) -> PendingWork {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(result);
        PendingWork(rx)
    }

    /// Waits for the work, without blocking the async worker.
    pub async fn wait(self) -> Result<(), OperatorError> {
        self.0.await.unwrap_or_else(|_| {
            Err(OperatorError::Data(
                "bug: blocking work of the operator ended without a result (it panicked)".into(),
            ))
        })
    }

    /// Waits for the work on this thread: outside an async context (tests, tools).
    pub fn wait_blocking(self) -> Result<(), OperatorError> {
        self.0.blocking_recv().unwrap_or_else(|_| {
            Err(OperatorError::Data(
                "bug: blocking work of the operator ended without a result (it panicked)".into(),
            ))
        })
    }
}

type WorkSlot<F> =
    std::sync::Mutex<Option<(F, tokio::sync::oneshot::Sender<Result<(), OperatorError>>)>>;

fn run_work<F: FnOnce() -> Result<(), OperatorError>>(slot: &WorkSlot<F>) {
    let taken = slot.lock().ok().and_then(|mut s| s.take());
    if let Some((work, tx)) = taken {
        let _ = tx.send(work());
    }
}

/// Flink's `DeliveryGuarantee`, from the job's checkpointing: what a sink can promise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// No checkpoints: after a failure output may be lost or repeated.
    #[default]
    None,
    /// AT_LEAST_ONCE checkpoints: after a restore output may repeat.
    AtLeastOnce,
    /// EXACTLY_ONCE checkpoints: output becomes visible only with the checkpoint covering it.
    ExactlyOnce,
}

impl DeliveryGuarantee {
    /// What a job gives its sinks: nothing without periodic checkpoints (a checkpoint
    /// commits their transactions), else the checkpointing mode's guarantee.
    pub fn of_checkpointing(periodic: bool, mode: crate::config::CheckpointingMode) -> Self {
        use crate::config::CheckpointingMode as M;
        match (periodic, mode) {
            (false, _) => DeliveryGuarantee::None,
            (true, M::ExactlyOnce) => DeliveryGuarantee::ExactlyOnce,
            (true, M::AtLeastOnce) => DeliveryGuarantee::AtLeastOnce,
        }
    }
}

/// Why an operator's input ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOfInput {
    /// Every source ended (a bounded job), and a completed checkpoint holds everything the
    /// sink received (the final checkpoint), or checkpoints are off: a transactional sink
    /// commits everything it wrote.
    Finished,
    /// `stop()` ended the sources early (Ctrl-C in `floe run`), or a bounded input ended
    /// without a final checkpoint (`checkpoints-after-tasks-finish: false`): a later `-s`
    /// restore replays what came after the last completed checkpoint, so what was written
    /// after it stays uncommitted.
    Stopped,
}

/// State handed back to an operator on restore, in the encodings the operator wrote (it
/// decodes them itself, and refuses another operator's).
#[derive(Debug)]
pub enum RestoredState {
    /// The keyed state of exactly the key groups this subtask owns, as runs to apply in order.
    Keyed(crate::state::KeyedRuns),
    /// Operator state as its redistribution hands it out: a transactional sink's own old
    /// subtask's, plus, after a restore at a lower parallelism, the states of old subtasks
    /// no longer running.
    Blobs(Vec<RestoredBlob>),
}

impl RestoredState {
    /// Sink states as a restore hands them over (for tests and tools).
    pub fn sink(states: Vec<sinks::state::SinkState>) -> RestoredState {
        RestoredState::Blobs(states.iter().map(|s| s.restored(0, 1)).collect())
    }
}

/// What a source hands the runtime on each call.
#[derive(Debug)]
pub enum SourceEvent {
    /// Records.
    Batch(Batch),
    /// Nothing right now; call again (the runtime checks for barriers and stops in between).
    Idle,
    /// A bounded source has nothing more to give.
    End,
}

/// A running source subtask.
///
/// `next` must return within about 100 ms, with `Idle` if nothing came, so that the task can
/// inject barriers and notice cancellation between calls. It need not be cancel-safe: the
/// runtime never drops it half-way.
#[allow(async_fn_in_trait)]
pub trait Source: Send {
    async fn next(&mut self) -> Result<SourceEvent, OperatorError>;

    /// Where the source is now, for a snapshot: every record it emitted is before this
    /// position. `None` for a source that cannot replay (socket).
    fn position(&self) -> Option<SourcePosition> {
        None
    }

    /// [`Source::position`] for checkpoint `checkpoint`: what the runtime calls at a barrier.
    /// A source that acts on completion (the Kafka source's group commit) remembers which
    /// position belongs to which checkpoint here.
    fn snapshot_position(&mut self, _checkpoint: CheckpointId) -> Option<SourcePosition> {
        self.position()
    }

    /// Checkpoint `checkpoint` is complete, as [`Operator::notify_checkpoint_complete`]:
    /// called between two `next` calls, in checkpoint order, best effort.
    fn notify_checkpoint_complete(
        &mut self,
        _checkpoint: CheckpointId,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Checkpoint `checkpoint` was aborted: it will never complete.
    fn notify_checkpoint_aborted(
        &mut self,
        _checkpoint: CheckpointId,
    ) -> Result<(), OperatorError> {
        Ok(())
    }

    /// With event time: what the subtask's watermark says now, if anything new (a higher
    /// watermark, or that it went idle). Called after every `next`.
    fn watermark(&mut self) -> Option<event_time::WatermarkEvent> {
        None
    }

    /// Records this subtask dropped so far (`on-error: drop`).
    fn records_discarded(&self) -> u64 {
        0
    }
}

/// A built source subtask, one variant per source `type:`.
pub enum SourceRuntime {
    Socket(sources::socket::Socket),
    File(sources::file::FileSource),
    Datagen(sources::datagen::Datagen),
    Kafka(Box<sources::kafka::KafkaSource>),
}

impl SourceRuntime {
    pub async fn next(&mut self) -> Result<SourceEvent, OperatorError> {
        match self {
            SourceRuntime::Socket(s) => s.next().await,
            SourceRuntime::File(s) => s.next().await,
            SourceRuntime::Datagen(s) => s.next().await,
            SourceRuntime::Kafka(s) => s.next().await,
        }
    }

    /// Where the source is now ([`Source::position`]); `None` for the socket.
    pub fn position(&self) -> Option<SourcePosition> {
        match self {
            SourceRuntime::Socket(s) => s.position(),
            SourceRuntime::File(s) => Source::position(s),
            SourceRuntime::Datagen(s) => Source::position(s),
            SourceRuntime::Kafka(s) => Source::position(&**s),
        }
    }

    /// The position for checkpoint `checkpoint` ([`Source::snapshot_position`]).
    pub fn snapshot_position(&mut self, checkpoint: CheckpointId) -> Option<SourcePosition> {
        match self {
            SourceRuntime::Socket(s) => s.snapshot_position(checkpoint),
            SourceRuntime::File(s) => s.snapshot_position(checkpoint),
            SourceRuntime::Datagen(s) => s.snapshot_position(checkpoint),
            SourceRuntime::Kafka(s) => s.snapshot_position(checkpoint),
        }
    }

    /// What the source's watermark says now ([`Source::watermark`]).
    pub fn watermark(&mut self) -> Option<event_time::WatermarkEvent> {
        match self {
            SourceRuntime::Socket(s) => s.watermark(),
            SourceRuntime::File(s) => s.watermark(),
            SourceRuntime::Datagen(s) => s.watermark(),
            SourceRuntime::Kafka(s) => s.watermark(),
        }
    }

    /// Records dropped so far ([`Source::records_discarded`]).
    pub fn records_discarded(&self) -> u64 {
        match self {
            SourceRuntime::Socket(s) => s.records_discarded(),
            SourceRuntime::File(s) => s.records_discarded(),
            SourceRuntime::Datagen(s) => s.records_discarded(),
            SourceRuntime::Kafka(s) => Source::records_discarded(&**s),
        }
    }

    /// Hands a checkpoint's outcome to the source.
    pub fn notify(&mut self, outcome: CheckpointOutcome) -> Result<(), OperatorError> {
        fn to(s: &mut impl Source, o: CheckpointOutcome) -> Result<(), OperatorError> {
            match o {
                CheckpointOutcome::Completed(id) => s.notify_checkpoint_complete(id),
                CheckpointOutcome::Aborted(id) => s.notify_checkpoint_aborted(id),
            }
        }
        match self {
            SourceRuntime::Socket(s) => to(s, outcome),
            SourceRuntime::File(s) => to(s, outcome),
            SourceRuntime::Datagen(s) => to(s, outcome),
            SourceRuntime::Kafka(s) => to(&mut **s, outcome),
        }
    }
}

impl SourceConfig {
    /// Build subtask `ctx.subtask` of this source.
    pub fn build(&self, ctx: &BuildContext) -> Result<SourceRuntime, OperatorError> {
        Ok(match self {
            SourceConfig::Socket(c) => SourceRuntime::Socket(sources::socket::Socket::new(c, ctx)?),
            SourceConfig::File(c) => SourceRuntime::File(sources::file::FileSource::new(c, ctx)?),
            SourceConfig::Datagen(c) => {
                SourceRuntime::Datagen(sources::datagen::Datagen::new(c, ctx)?)
            }
            SourceConfig::Kafka(c) => {
                SourceRuntime::Kafka(Box::new(sources::kafka::KafkaSource::new(c, ctx, None)?))
            }
        })
    }

    /// Build subtask `ctx.subtask` as the runtime runs it, resuming from the positions a
    /// restore handed it (its own, or at another parallelism everyone's).
    pub fn build_task(
        &self,
        ctx: &BuildContext,
        restored: Option<&[RestoredBlob]>,
    ) -> Result<task_source::TaskSource, OperatorError> {
        let position = match restored {
            None => None,
            Some(blobs) => sources::position::restore_position(blobs, ctx.subtask, ctx.parallelism)
                .map_err(|e| {
                    OperatorError::Config(format!("source \"{}\": {e}", ctx.operator_id))
                })?,
        };
        Ok(task_source::TaskSource::Catalogue(
            self.build_restored(ctx, position.as_ref())?,
        ))
    }

    /// Build subtask `ctx.subtask` of this source resuming at `position` (from a checkpoint;
    /// `None`: from the start).
    ///
    /// The socket cannot replay: restored, it starts fresh, and what was sent between the
    /// checkpoint and the failure is lost for it. A position of another kind of source (the
    /// operator's `type:` changed since the checkpoint) is an error.
    pub fn build_restored(
        &self,
        ctx: &BuildContext,
        position: Option<&SourcePosition>,
    ) -> Result<SourceRuntime, OperatorError> {
        let Some(position) = position else {
            return self.build(ctx);
        };
        Ok(match (self, position) {
            (SourceConfig::Socket(c), _) => {
                tracing::warn!(
                    operator = %ctx.operator_id,
                    subtask = ctx.subtask,
                    "the socket source cannot replay: restored, it reads only what arrives from now on"
                );
                SourceRuntime::Socket(sources::socket::Socket::new(c, ctx)?)
            }
            (SourceConfig::File(c), SourcePosition::Files(files)) => {
                let positions = sources::file::restore_positions(c, ctx, files);
                SourceRuntime::File(sources::file::FileSource::restore(c, ctx, &positions)?)
            }
            (SourceConfig::Datagen(c), SourcePosition::Datagen { next_line }) => {
                SourceRuntime::Datagen(sources::datagen::Datagen::restore(
                    c,
                    ctx,
                    Some(*next_line),
                )?)
            }
            (
                SourceConfig::Datagen(c),
                SourcePosition::DatagenRescaled {
                    next_line,
                    old_parallelism,
                    old_next_lines,
                },
            ) => {
                let done =
                    sources::datagen::DoneBefore::new(*old_parallelism, old_next_lines.clone())
                        .ok_or_else(|| {
                            OperatorError::Config(format!(
                            "source \"{}\": the checkpoint's position is corrupt: {} lines done \
                             before a rescale from parallelism {old_parallelism}; restore an \
                             older checkpoint",
                            ctx.operator_id,
                            old_next_lines.len()
                        ))
                        })?;
                SourceRuntime::Datagen(sources::datagen::Datagen::restore_rescaled(
                    c, ctx, *next_line, done,
                )?)
            }
            (SourceConfig::Kafka(c), SourcePosition::Kafka(offsets)) => SourceRuntime::Kafka(
                Box::new(sources::kafka::KafkaSource::new(c, ctx, Some(offsets))?),
            ),
            (other, position) => {
                let held = position.source_type();
                let now = match other {
                    SourceConfig::Socket(_) => "socket",
                    SourceConfig::File(_) => "file",
                    SourceConfig::Datagen(_) => "datagen",
                    SourceConfig::Kafka(_) => "kafka",
                };
                return Err(OperatorError::Config(format!(
                    "source \"{}\": the checkpoint holds the position of a `{held}` source, but \
                     the operator is now `type: {now}`; give the new source another `id` or \
                     start without restoring its state",
                    ctx.operator_id
                )));
            }
        })
    }
}

impl TransformConfig {
    /// Build subtask `ctx.subtask` of this transform, reading records of `input`.
    pub fn build(
        &self,
        input: &Schema,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Operator>, OperatorError> {
        Ok(match self {
            TransformConfig::FlatMap(c) => {
                Box::new(transforms::flat_map::FlatMap::new(c, input, ctx)?)
            }
            TransformConfig::Map(c) => Box::new(transforms::map::Map::new(c, input, ctx)?),
            TransformConfig::Filter(c) => Box::new(transforms::filter::Filter::new(c, input, ctx)?),
            TransformConfig::KeyBy(c) => Box::new(transforms::key_by::KeyBy::new(c, input, ctx)?),
            TransformConfig::Parse(c) => Box::new(transforms::parse::Parse::new(c, input, ctx)?),
            TransformConfig::Assign(c) => Box::new(transforms::assign::Assign::new(c, input, ctx)?),
            TransformConfig::Window(c) => Box::new(transforms::window::Window::new(c, input, ctx)?),
            TransformConfig::SideOutput(_) => Box::new(transforms::side_output::SideOutput),
        })
    }
}

impl SinkConfig {
    /// Build subtask `ctx.subtask` of this sink, reading records of `input`.
    pub fn build(
        &self,
        input: &Schema,
        ctx: &BuildContext,
    ) -> Result<Box<dyn Operator>, OperatorError> {
        Ok(match self {
            SinkConfig::Print(c) => Box::new(sinks::print::Print::new(c, input, ctx)?),
            SinkConfig::File(c) => Box::new(sinks::file::FileSink::new(c, input, ctx)?),
            SinkConfig::Blackhole(c) => Box::new(sinks::blackhole::Blackhole::new(c, input, ctx)?),
            SinkConfig::Kafka(c) => Box::new(sinks::kafka::KafkaSink::new(c, input, ctx)?),
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Source => "source",
            Role::Transform => "transform",
            Role::Sink => "sink",
        })
    }
}

/// Names longer than this get no "did you mean": comparing two names costs the product of
/// their lengths, and nobody mistypes a name this long by one letter.
pub const MAX_HINT_NAME_LEN: usize = 100;

/// The closest of `candidates` to `name` (Jaro-Winkler ≥ 0.8 or a small edit distance), for
/// "did you mean" hints.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    if name.len() > MAX_HINT_NAME_LEN {
        return None;
    }
    candidates
        .into_iter()
        .filter(|c| *c != name && c.len() <= MAX_HINT_NAME_LEN)
        .map(|c| {
            (
                c,
                strsim::jaro_winkler(name, c),
                strsim::levenshtein(name, c),
            )
        })
        .filter(|(c, jw, lev)| *jw >= 0.8 || (*lev <= 2 && *lev < c.len().max(name.len())))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _, _)| c)
}

/// `; did you mean "x"?` or nothing.
pub fn did_you_mean_suffix<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    match did_you_mean(name, candidates) {
        Some(c) => format!("; did you mean \"{c}\"?"),
        None => String::new(),
    }
}

/// The problem of a setting naming a field the input does not have.
pub fn unknown_field(setting: &str, name: &str, input: &Schema) -> Problem {
    Problem::new(
        setting,
        format!(
            "field \"{name}\" is not in the input {input}{}",
            did_you_mean_suffix(name, input.names())
        ),
    )
}

/// The input's field `name` of one of the types `allowed`, or the problem with it.
pub fn typed_field(
    setting: &str,
    name: &str,
    input: &Schema,
    allowed: &[crate::record::DataType],
) -> Result<(usize, crate::record::DataType), Problem> {
    let Some(idx) = input.index_of(name) else {
        return Err(unknown_field(setting, name, input));
    };
    let ty = input.fields[idx].ty;
    if allowed.contains(&ty) {
        return Ok((idx, ty));
    }
    let names: Vec<&str> = allowed.iter().map(|t| t.name()).collect();
    Err(Problem::new(
        setting,
        format!(
            "field \"{name}\" is {ty}, but this setting needs {}",
            names.join(" or ")
        ),
    ))
}

impl OperatorConfig {
    /// Parse one operator's settings: `type_name` decides the operator (with `has_inputs`
    /// deciding between the file source and the file sink), then `body` (its settings without
    /// `id`, `type`, `inputs`, `parallelism`) goes into that operator's config struct.
    ///
    /// Reports every unknown setting at once (with did-you-mean from the struct's own list of
    /// fields), then the first other problem serde finds, each with its setting's path.
    pub fn parse(
        type_name: &str,
        has_inputs: bool,
        body: serde_yaml::Mapping,
    ) -> Result<OperatorConfig, Vec<Problem>> {
        // `file` and `kafka` are both a source and a sink: `inputs` decides. Any other name
        // has one role.
        let role = if SOURCE_TYPES.contains(&type_name) && SINK_TYPES.contains(&type_name) {
            if has_inputs {
                Role::Sink
            } else {
                Role::Source
            }
        } else if SOURCE_TYPES.contains(&type_name) {
            Role::Source
        } else if TRANSFORM_TYPES.contains(&type_name) {
            Role::Transform
        } else {
            Role::Sink
        };
        OperatorConfig::parse_as(role, type_name, body)
    }
}

/// Every `type:` name once, in catalogue order.
pub fn all_types() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = Vec::new();
    for t in SOURCE_TYPES.iter().chain(TRANSFORM_TYPES).chain(SINK_TYPES) {
        if !all.contains(t) {
            all.push(t);
        }
    }
    all
}

fn unknown_type(name: &str) -> Problem {
    let all = all_types();
    Problem::new(
        "type",
        format!(
            "unknown operator type \"{name}\"{} (valid types: {})",
            did_you_mean_suffix(name, all.iter().copied()),
            all.join(", ")
        ),
    )
}

/// Deserialize an operator body into its config struct, reporting every unknown setting.
///
/// The body goes back through YAML text because serde_yaml's text deserializer tracks the
/// path of a nested error (`fields.one: invalid type`) and its value deserializer does not.
/// The first unknown setting's error lists every valid one, so all unknown settings are found
/// and removed at once: at most two parses, whatever the number of keys (one parse per unknown
/// key was quadratic: 2,000 of them took over a minute).
fn parse_body<T: serde::de::DeserializeOwned>(
    mut body: serde_yaml::Mapping,
) -> Result<T, Vec<Problem>> {
    let mut problems = Vec::new();
    loop {
        let text = serde_yaml::to_string(&body).unwrap_or_default();
        // An empty body serializes as `{}`, which is a valid empty mapping.
        let e = match serde_yaml::from_str::<T>(&text) {
            Ok(v) if problems.is_empty() => return Ok(v),
            Ok(_) => return Err(problems),
            Err(e) => e,
        };
        let (path, message) = split_serde_message(&e.to_string());
        let Some((field, expected)) = unknown_name(&message, "unknown field") else {
            problems.push(serde_problem(path, message));
            return Err(problems);
        };
        let unknown: Vec<&str> = if path.is_empty() && problems.is_empty() {
            body.keys()
                .filter_map(serde_yaml::Value::as_str)
                .filter(|k| !expected.iter().any(|e| e == k))
                .collect()
        } else {
            Vec::new()
        };
        if !unknown.contains(&field.as_str()) {
            problems.push(unknown_setting(&path, &field, &expected));
            return Err(problems);
        }
        let unknown: std::collections::HashSet<String> =
            unknown.into_iter().map(str::to_owned).collect();
        for k in body.keys().filter_map(serde_yaml::Value::as_str) {
            if unknown.contains(k) {
                problems.push(unknown_setting(&path, k, &expected));
            }
        }
        body.retain(|k, _| !k.as_str().is_some_and(|k| unknown.contains(k)));
    }
}

/// The problem of an unknown setting `field` (at `path` inside the body), with did-you-mean.
fn unknown_setting(path: &str, field: &str, expected: &[String]) -> Problem {
    let hint = did_you_mean_suffix(field, expected.iter().map(String::as_str));
    let known = if expected.is_empty() {
        "this operator has no settings of its own".to_string()
    } else {
        format!("valid settings: {}", expected.join(", "))
    };
    let at = if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    };
    Problem::new(at, format!("unknown setting \"{field}\"{hint} ({known})"))
}

/// `fields.one: invalid type: … at line 1 column 6` → (`fields.one`, `invalid type: …`).
fn split_serde_message(msg: &str) -> (String, String) {
    let msg = match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => &msg[..i],
        _ => msg,
    };
    if let Some((head, rest)) = msg.split_once(": ") {
        let is_path = !head.is_empty()
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.[]".contains(c));
        if is_path {
            return (head.to_string(), rest.to_string());
        }
    }
    (String::new(), msg.to_string())
}

/// ``unknown field `sepp`, expected one of `a`, `b` `` → (`sepp`, [`a`, `b`]).
fn unknown_name(msg: &str, what: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix(what)?.strip_prefix(" `")?;
    let (name, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((name.to_string(), expected))
}

/// A serde error other than an unknown field, reworded for people.
fn serde_problem(path: String, message: String) -> Problem {
    if let Some((name, _)) = unknown_name(&message, "missing field") {
        let at = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        return Problem::new(at, format!("missing required setting \"{name}\""));
    }
    if let Some((name, expected)) = unknown_name(&message, "unknown variant") {
        return Problem::new(
            path,
            format!(
                "unknown value \"{name}\"{} (valid values: {})",
                did_you_mean_suffix(&name, expected.iter().map(String::as_str)),
                expected.join(", ")
            ),
        );
    }
    Problem::new(path, message)
}
