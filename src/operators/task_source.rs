//! The source a task runs: a catalogue source, or one given as a trait object (tests, and
//! sources outside the catalogue later).

use crate::ids::{CheckpointId, CheckpointOutcome};
use crate::operators::event_time::WatermarkEvent;
use crate::operators::sources::SourcePosition;
use crate::operators::{OperatorError, SourceEvent, SourceRuntime};
use std::future::Future;
use std::pin::Pin;

/// A source usable as a trait object: `next` returns a boxed future (one allocation per call,
/// fine for sources outside the hot catalogue path). The contract is [`crate::operators::Source`]'s:
/// return within about 100 ms, `Idle` when nothing came.
pub trait DynSource: Send {
    #[allow(clippy::type_complexity)]
    fn next(
        &mut self,
    ) -> Pin<Box<dyn Future<Output = Result<SourceEvent, OperatorError>> + Send + '_>>;

    /// As [`crate::operators::Source::position`]: where the source is, for a snapshot.
    /// `None`: cannot replay.
    fn position(&self) -> Option<SourcePosition> {
        None
    }

    /// As [`crate::operators::Source::snapshot_position`].
    fn snapshot_position(&mut self, _checkpoint: CheckpointId) -> Option<SourcePosition> {
        self.position()
    }

    /// A checkpoint's outcome, as [`crate::operators::Source::notify_checkpoint_complete`]
    /// and [`crate::operators::Source::notify_checkpoint_aborted`].
    fn notify(&mut self, _outcome: CheckpointOutcome) -> Result<(), OperatorError> {
        Ok(())
    }

    /// As [`crate::operators::Source::watermark`].
    fn watermark(&mut self) -> Option<WatermarkEvent> {
        None
    }
}

/// One built source subtask.
pub enum TaskSource {
    Catalogue(SourceRuntime),
    Dyn(Box<dyn DynSource>),
}

impl TaskSource {
    pub async fn next(&mut self) -> Result<SourceEvent, OperatorError> {
        match self {
            TaskSource::Catalogue(s) => s.next().await,
            TaskSource::Dyn(s) => s.next().await,
        }
    }

    /// Where the source is now: cheap (a copy of an offset).
    pub fn position(&self) -> Option<SourcePosition> {
        match self {
            TaskSource::Catalogue(s) => s.position(),
            TaskSource::Dyn(s) => s.position(),
        }
    }

    /// The position for a snapshot of checkpoint `checkpoint`: called at a barrier, between
    /// two `next` calls, on the task's thread.
    pub fn snapshot_position(&mut self, checkpoint: CheckpointId) -> Option<SourcePosition> {
        match self {
            TaskSource::Catalogue(s) => s.snapshot_position(checkpoint),
            TaskSource::Dyn(s) => s.snapshot_position(checkpoint),
        }
    }

    /// With event time, the source's watermark news, after a `next`.
    pub fn watermark(&mut self) -> Option<WatermarkEvent> {
        match self {
            TaskSource::Catalogue(s) => s.watermark(),
            TaskSource::Dyn(s) => s.watermark(),
        }
    }

    /// Records the source dropped (`on-error: drop`).
    pub fn records_discarded(&self) -> u64 {
        match self {
            TaskSource::Catalogue(s) => s.records_discarded(),
            TaskSource::Dyn(_) => 0,
        }
    }

    /// A checkpoint's outcome, between two `next` calls, in the order the driver decided.
    pub fn notify(&mut self, outcome: CheckpointOutcome) -> Result<(), OperatorError> {
        match self {
            TaskSource::Catalogue(s) => s.notify(outcome),
            TaskSource::Dyn(s) => s.notify(outcome),
        }
    }
}
