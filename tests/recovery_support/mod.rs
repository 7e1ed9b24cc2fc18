//! What the recovery tests plug in: a replayable source that can hold until a checkpoint
//! completed, an operator that fails on cue, a real `FsCheckpointStore` in a temp dir, and
//! a build closure for `failover::run` that restores the way `floe run` does.
#![allow(dead_code)]

#[path = "../runtime_support/mod.rs"]
mod runtime_support;

pub use runtime_support::checkpoints::{count_words, FinalCounts};
use runtime_support::{operator, schema};

use floe::checkpoint::restore;
use floe::checkpoint::storage::FsCheckpointStore;
use floe::checkpoint::JobId;
use floe::config::Config;
use floe::operators::sources::SourcePosition;
use floe::operators::{BuildContext, Operator, OperatorError, SourceEvent};
use floe::pipeline::plan::{Factory, Plan, Vertex};
use floe::pipeline::OperatorId;
use floe::record::{Batch, Column, StrColumnBuilder, Value};
use floe::runtime::failover::Attempt;
use floe::runtime::{CheckpointingOptions, DynSource, JobOptions, TaskSource};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Says, for one attempt's source, whether it may go on past `hold`.
pub type Release = Box<dyn FnMut() -> bool + Send>;

/// Records `n = 0 .. total` (None: for ever), word `w<n % 10>`, batches of 10. At `hold` it
/// waits (idle, so barriers still pass) until its release says go; `release` makes one per
/// attempt, when the source is built.
#[derive(Clone)]
pub struct Replay {
    pub total: Option<u64>,
    pub hold: u64,
    pub release: Arc<dyn Fn() -> Release + Send + Sync>,
    /// The position each subtask was built with, attempt by attempt.
    pub started_at: Arc<Mutex<Vec<Option<u64>>>>,
}

struct ReplaySource {
    spec: Replay,
    release: Release,
    released: bool,
    next: u64,
}

impl DynSource for ReplaySource {
    fn next(
        &mut self,
    ) -> Pin<Box<dyn Future<Output = Result<SourceEvent, OperatorError>> + Send + '_>> {
        Box::pin(async move {
            if self.spec.total.is_some_and(|t| self.next >= t) {
                return Ok(SourceEvent::End);
            }
            if self.next >= self.spec.hold && !self.released {
                self.released = (self.release)();
                if !self.released {
                    tokio::task::yield_now().await;
                    return Ok(SourceEvent::Idle);
                }
            }
            let mut ns = Vec::new();
            let mut words = StrColumnBuilder::default();
            for _ in 0..10 {
                ns.push(self.next as i64);
                words.push(format!("w{}", self.next % 10).as_bytes());
                self.next += 1;
            }
            Ok(SourceEvent::Batch(Batch::new(vec![
                Column::Int(ns),
                Column::Str(words.finish()),
            ])))
        })
    }

    fn position(&self) -> Option<SourcePosition> {
        Some(SourcePosition::Datagen {
            next_line: self.next,
        })
    }
}

pub fn replay(id: &str, spec: Replay) -> Vertex {
    Vertex {
        id: OperatorId(id.into()),
        inputs: vec![],
        parallelism: Some(1),
        required_parallelism: None,
        key_field: None,
        keyed: false,
        input_schema: None,
        output_schema: schema(),
        factory: Factory::Source(Arc::new(move |ctx: &BuildContext, restored| {
            let position = restored
                .map(|r| {
                    floe::operators::sources::position::restore_position(
                        r,
                        ctx.subtask,
                        ctx.parallelism,
                    )
                })
                .transpose()?
                .flatten();
            let next = match position {
                Some(SourcePosition::Datagen { next_line }) => Some(next_line),
                _ => None,
            };
            spec.started_at.lock().unwrap().push(next);
            Ok(TaskSource::Dyn(Box::new(ReplaySource {
                release: (spec.release)(),
                released: false,
                spec: spec.clone(),
                next: next.unwrap_or(0),
            })))
        })),
    }
}

/// Passes batches on; fails on the first record with `n >= at` while `armed` (and disarms
/// itself when `once`).
pub struct Boom {
    at: i64,
    armed: Arc<AtomicBool>,
    once: bool,
}

impl Operator for Boom {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        let hit =
            (0..batch.len()).any(|i| matches!(batch.row(i)[0], Value::Int(n) if n >= self.at));
        if hit && self.armed.load(Ordering::SeqCst) {
            if self.once {
                self.armed.store(false, Ordering::SeqCst);
            }
            return Err(OperatorError::Data(format!(
                "injected failure at n >= {}",
                self.at
            )));
        }
        out.push(batch);
        Ok(())
    }
}

pub fn boom(id: &str, input: usize, at: u64, armed: &Arc<AtomicBool>, once: bool) -> Vertex {
    let armed = armed.clone();
    operator(id, &[input], Some(1), move |_| {
        Box::new(Boom {
            at: at as i64,
            armed: armed.clone(),
            once,
        })
    })
}

/// Checkpoints every 20 ms into `dir`, `num_retained` kept, state files above 1 KiB.
pub fn config(dir: &Path, num_retained: u32) -> Config {
    let mut c = Config::default();
    c.checkpointing.interval = Some(Duration::from_millis(20));
    c.state.checkpoints_dir = Some(dir.display().to_string());
    c.state.num_retained = num_retained;
    c.state.inline_threshold = 1024;
    c
}

/// A release that opens once `store` completed a checkpoint newer than it held when the
/// attempt's source was built, taken while the source `src` waited at `hold` (its position
/// is `hold`). So the checkpoint a restart restores has the source at `hold`, however late the
/// first barrier reached the source on a slow machine.
pub fn after_checkpoint_at_hold(
    store: &Arc<FsCheckpointStore>,
    hold: u64,
) -> Arc<dyn Fn() -> Release + Send + Sync> {
    let store = store.clone();
    Arc::new(move || {
        let store = store.clone();
        let base = store.latest_retained().map_or(0, |r| r.0);
        let mut checked = base;
        Box::new(move || {
            let Some((id, dir)) = store.latest_retained() else {
                return false;
            };
            if id <= checked {
                return false;
            }
            checked = id;
            source_position(&dir.to_path_buf()) == Some(hold)
        })
    })
}

/// The position of subtask 0 of operator `src` in the checkpoint in `dir`.
fn source_position(dir: &Path) -> Option<u64> {
    let loaded = floe::checkpoint::storage::load(dir).ok()?;
    let src = loaded
        .metadata
        .operators
        .iter()
        .find(|o| o.operator_id == "src")?;
    match SourcePosition::from_blob(src.subtasks.first()?.operator.as_ref()?) {
        Ok(SourcePosition::Datagen { next_line }) => Some(next_line),
        _ => None,
    }
}

pub fn store(c: &Config, job_id: &JobId, name: &str) -> Arc<FsCheckpointStore> {
    Arc::new(FsCheckpointStore::new(&c.state, &c.checkpointing, job_id.clone(), name).unwrap())
}

/// What `floe run` does per attempt: map and load the restore snapshot, checkpoint into the
/// attempt's store.
pub fn attempt_options(
    c: &Config,
    job_id: &JobId,
    plan: &Plan,
    attempt: &Attempt<'_>,
) -> Result<(Plan, JobOptions), restore::RestoreError> {
    let mut options = JobOptions::new(plan.name.clone());
    if let Some(s) = attempt.restore {
        options.restore = Some(restore::prepare(s, plan, false, false)?.1);
    }
    if let Some(store) = &attempt.store {
        options.checkpointing = Some(CheckpointingOptions {
            config: c.checkpointing.clone(),
            store: store.clone(),
            job_id: job_id.clone(),
            first_id: attempt.first_checkpoint_id,
        });
    }
    Ok((plan.clone(), options))
}

/// Polls `cond` until it holds; panics with `what` after a deadline far above a normal run.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
