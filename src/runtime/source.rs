//! The source a task runs: a catalogue source, or one given as a trait object (tests, and
//! sources outside the catalogue later).

use crate::checkpoint::SourcePosition;
use crate::operators::{OperatorError, Source, SourceEvent, SourceRuntime};
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

    /// As [`Source::position`]: where the source is, for a snapshot. `None`: cannot replay.
    fn position(&self) -> Option<SourcePosition> {
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

    /// Where the source is now: called between two `next` calls, on the task's thread, so it
    /// must be cheap (a copy of an offset).
    pub fn position(&self) -> Option<SourcePosition> {
        match self {
            TaskSource::Catalogue(SourceRuntime::Socket(s)) => Source::position(s),
            TaskSource::Catalogue(SourceRuntime::File(s)) => Source::position(s),
            TaskSource::Catalogue(SourceRuntime::Datagen(s)) => Source::position(s),
            TaskSource::Dyn(s) => s.position(),
        }
    }
}
