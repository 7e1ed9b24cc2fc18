//! What the checkpoint tests of the runtime plug in: an in-memory `CheckpointStore` that can
//! fail or hold its writes, a source with a position, a keyed counting operator with
//! snapshot/restore, and a sink that reports each batch.
#![allow(dead_code)]

use super::schema;
use floe::checkpoint::metadata::{
    BlobLocation, CheckpointMetadata, KeyedStateHandle, StateBlob, SubtaskStateMeta,
};
use floe::checkpoint::{
    CheckpointError, CheckpointId, CheckpointStore, CompletedCheckpoint, JobId, JobTermination,
    OperatorSnapshot, SubtaskSnapshot,
};
use floe::config::Config;
use floe::operators::sources::SourcePosition;
use floe::operators::{BuildContext, Operator, OperatorError, RestoredState, SourceEvent};
use floe::pipeline::plan::{Factory, Vertex};
use floe::pipeline::OperatorId;
use floe::record::{Batch, Column, StrColumnBuilder, Value};
use floe::runtime::{CheckpointOutcome, CheckpointingOptions, DynSource, TaskSource};
use floe::state::keyed::{KeyedSnapshot, KeyedStore};
use floe::state::keygroup::{hash_str, KeyGroupRange};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Everything the store was asked.
#[derive(Default)]
pub struct StoreLog {
    pub writes: Vec<SubtaskSnapshot>,
    pub completed: Vec<CheckpointMetadata>,
    pub aborted: Vec<CheckpointId>,
    pub terminated: Vec<JobTermination>,
}

/// An in-memory checkpoint store.
#[derive(Default)]
pub struct MemoryStore {
    pub log: Mutex<StoreLog>,
    /// Every `write_subtask` fails while set.
    pub fail_writes: AtomicBool,
    /// The checkpoints whose writes fail: a fault decided by the checkpoint's id, so a test
    /// that needs checkpoint N to fail does not race the coordinator's timer.
    fail_at: Option<FailAt>,
    /// When set, `write_subtask` reports its checkpoint here and waits until `release`.
    hold: Option<(Mutex<bool>, Condvar, UnboundedSender<CheckpointId>)>,
}

/// Which checkpoint ids a [`MemoryStore::failing_at`] store fails.
pub type FailAt = Box<dyn Fn(CheckpointId) -> bool + Send + Sync>;

impl MemoryStore {
    pub fn failing() -> Arc<MemoryStore> {
        let s = MemoryStore::default();
        s.fail_writes.store(true, Ordering::SeqCst);
        Arc::new(s)
    }

    /// A store whose writes for checkpoint `id` fail exactly when `fails(id)`.
    pub fn failing_at(fails: impl Fn(CheckpointId) -> bool + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(MemoryStore {
            fail_at: Some(Box::new(fails)),
            ..MemoryStore::default()
        })
    }

    /// A store whose writes wait for [`MemoryStore::release`]; the receiver gets the id of
    /// each write as it starts waiting.
    pub fn holding() -> (Arc<MemoryStore>, UnboundedReceiver<CheckpointId>) {
        let (tx, rx) = unbounded_channel();
        let s = MemoryStore {
            hold: Some((Mutex::new(false), Condvar::new(), tx)),
            ..MemoryStore::default()
        };
        (Arc::new(s), rx)
    }

    /// Lets every held and later write through.
    pub fn release(&self) {
        if let Some((open, cv, _)) = &self.hold {
            *open.lock().unwrap() = true;
            cv.notify_all();
        }
    }

    pub fn terminated(&self) -> Vec<JobTermination> {
        self.log.lock().unwrap().terminated.clone()
    }

    pub fn completed_ids(&self) -> Vec<u64> {
        let log = self.log.lock().unwrap();
        log.completed.iter().map(|m| m.checkpoint_id).collect()
    }

    /// The snapshots written for checkpoint `id`, by operator id and subtask.
    pub fn snapshots(&self, id: u64) -> BTreeMap<(String, u32), OperatorSnapshot> {
        let log = self.log.lock().unwrap();
        log.writes
            .iter()
            .filter(|w| w.checkpoint_id == CheckpointId(id))
            .map(|w| ((w.operator_id.0.clone(), w.subtask), w.state.clone()))
            .collect()
    }
}

impl CheckpointStore for MemoryStore {
    fn write_subtask(
        &self,
        snapshot: SubtaskSnapshot,
    ) -> Result<SubtaskStateMeta, CheckpointError> {
        if let Some((open, cv, entered)) = &self.hold {
            let _ = entered.send(snapshot.checkpoint_id);
            let mut o = open.lock().unwrap();
            while !*o {
                o = cv.wait(o).unwrap();
            }
        }
        let id = snapshot.checkpoint_id;
        if self.fail_writes.load(Ordering::SeqCst) || self.fail_at.as_ref().is_some_and(|f| f(id)) {
            return Err(CheckpointError::Other(format!(
                "cannot write mem://chk-{}: disk full (test)",
                snapshot.checkpoint_id
            )));
        }
        let mut meta = SubtaskStateMeta {
            subtask: snapshot.subtask,
            key_groups: None,
            keyed: None,
            keyed_format: None,
            operator: None,
        };
        match &snapshot.state {
            OperatorSnapshot::Blob { blob, .. } => meta.operator = Some(blob.clone()),
            OperatorSnapshot::Keyed(k) => {
                let range = k.range();
                meta.key_groups = Some((range.start, range.end));
                meta.keyed_format = Some(k.format());
                meta.keyed = Some(KeyedStateHandle::Full(StateBlob {
                    location: BlobLocation::Inline(Vec::new()),
                    size: snapshot.state.keyed_values().map_or(0, |k| k.len()) as u64,
                    groups: Vec::new(),
                }));
            }
        }
        self.log.lock().unwrap().writes.push(snapshot);
        Ok(meta)
    }

    fn complete(
        &self,
        metadata: CheckpointMetadata,
    ) -> Result<CompletedCheckpoint, CheckpointError> {
        let id = metadata.checkpoint_id;
        self.log.lock().unwrap().completed.push(metadata);
        Ok(CompletedCheckpoint {
            checkpoint_id: CheckpointId(id),
            path: floe::checkpoint::storage::Location::Local(PathBuf::from(format!(
                "mem/chk-{id}"
            ))),
            size: 100 + id,
        })
    }

    fn abort(&self, checkpoint_id: CheckpointId) {
        self.log.lock().unwrap().aborted.push(checkpoint_id);
    }

    fn terminate(&self, how: JobTermination) {
        self.log.lock().unwrap().terminated.push(how);
    }
}

/// Checkpointing every `interval` into `store`, other settings Flink's defaults.
pub fn checkpointing(store: Arc<MemoryStore>, interval: Duration) -> CheckpointingOptions {
    let mut config = Config::default().checkpointing;
    config.interval = Some(interval);
    CheckpointingOptions {
        config,
        store,
        job_id: JobId("0123456789abcdef0123456789abcdef".into()),
        first_id: 1,
    }
}

/// A source emitting records `n = 0, 1, 2...` with word `<name><n % 10>`, in batches of
/// `size`, `batches` of them (None = for ever). Its position is the next `n`.
#[derive(Clone)]
pub struct Counting {
    pub name: String,
    pub size: usize,
    pub batches: Option<u64>,
}

/// What a [`counting_source_logged`] source heard, per subtask: `Snapshot(id)` at each
/// barrier, then each checkpoint outcome.
pub type SourceLog = Arc<Mutex<Vec<(u32, SourceHeard)>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceHeard {
    Snapshot(u64),
    Outcome(CheckpointOutcome),
}

struct CountingSource {
    spec: Counting,
    next: u64,
    emitted: u64,
    subtask: u32,
    log: Option<SourceLog>,
}

impl DynSource for CountingSource {
    fn next(
        &mut self,
    ) -> Pin<Box<dyn Future<Output = Result<SourceEvent, OperatorError>> + Send + '_>> {
        Box::pin(async move {
            if self.spec.batches.is_some_and(|b| self.emitted >= b) {
                return Ok(SourceEvent::End);
            }
            let mut ns = Vec::with_capacity(self.spec.size);
            let mut words = StrColumnBuilder::default();
            for _ in 0..self.spec.size {
                ns.push(self.next as i64);
                words.push(format!("{}{}", self.spec.name, self.next % 10).as_bytes());
                self.next += 1;
            }
            self.emitted += 1;
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

    fn snapshot_position(&mut self, checkpoint: CheckpointId) -> Option<SourcePosition> {
        self.heard(SourceHeard::Snapshot(checkpoint.0));
        self.position()
    }

    fn notify(&mut self, outcome: CheckpointOutcome) -> Result<(), OperatorError> {
        self.heard(SourceHeard::Outcome(outcome));
        Ok(())
    }
}

impl CountingSource {
    fn heard(&self, what: SourceHeard) {
        if let Some(log) = &self.log {
            log.lock().unwrap().push((self.subtask, what));
        }
    }
}

pub fn counting_source(id: &str, parallelism: Option<u32>, spec: Counting) -> Vertex {
    counting_source_logged(id, parallelism, spec, None)
}

/// [`counting_source`] whose subtasks log their snapshots and checkpoint outcomes.
pub fn counting_source_logged(
    id: &str,
    parallelism: Option<u32>,
    spec: Counting,
    log: Option<SourceLog>,
) -> Vertex {
    Vertex {
        id: OperatorId(id.into()),
        inputs: vec![],
        parallelism,
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
            let next = match &position {
                Some(SourcePosition::Datagen { next_line }) => *next_line,
                Some(other) => {
                    return Err(OperatorError::Config(format!(
                        "unexpected position {other:?}"
                    )))
                }
                None => 0,
            };
            Ok(TaskSource::Dyn(Box::new(CountingSource {
                spec: spec.clone(),
                next,
                emitted: 0,
                subtask: ctx.subtask,
                log: log.clone(),
            })))
        })),
    }
}

/// Final counts of every [`CountWords`] subtask, by word, filled in `finish`.
pub type FinalCounts = Arc<Mutex<BTreeMap<String, u64>>>;

/// Keyed by `word`: counts records per word in a `KeyedStore`, passes batches on.
pub struct CountWords {
    store: KeyedStore,
    finals: FinalCounts,
}

impl Operator for CountWords {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        for i in 0..batch.len() {
            let Value::Str(w) = batch.row(i)[1] else {
                return Err(OperatorError::Data("expected a word".into()));
            };
            let v = self
                .store
                .get_or_insert(hash_str(w), w, 0)
                .map_err(|e| OperatorError::Data(e.to_string()))?;
            *v += 1;
        }
        out.push(batch);
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        let mut finals = self.finals.lock().unwrap();
        for (_, g) in self.store.groups() {
            for (k, v) in g.iter() {
                *finals
                    .entry(String::from_utf8_lossy(k).into_owned())
                    .or_default() += v;
            }
        }
        Ok(())
    }

    fn snapshot_state(&mut self) -> Option<OperatorSnapshot> {
        Some(OperatorSnapshot::Keyed(Arc::new(self.store.snapshot())))
    }

    fn restore_state(&mut self, state: RestoredState) -> Result<(), OperatorError> {
        let RestoredState::Keyed(runs) = state else {
            return Err(OperatorError::Config("test: expected keyed state".into()));
        };
        if runs.range != self.store.range() {
            return Err(OperatorError::Config("restored key groups differ".into()));
        }
        self.store = floe::state::snapshot::restore_keyed_values(&runs)
            .map_err(|e| OperatorError::Config(e.to_string()))?;
        Ok(())
    }
}

pub fn count_words(
    id: &str,
    inputs: &[usize],
    parallelism: Option<u32>,
    finals: &FinalCounts,
) -> Vertex {
    let finals = finals.clone();
    let mut v = super::operator(id, inputs, parallelism, move |ctx| {
        Box::new(CountWords {
            store: KeyedStore::new(
                KeyGroupRange::for_subtask(ctx.subtask, ctx.parallelism, ctx.max_parallelism),
                ctx.max_parallelism,
            ),
            finals: finals.clone(),
        })
    });
    v.keyed = true;
    v.key_field = Some("word".into());
    v
}

/// Per word prefix (the source's name), the sum of counts in keyed snapshots.
pub fn counts_by_prefix<'a>(
    snapshots: impl IntoIterator<Item = &'a KeyedSnapshot>,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for s in snapshots {
        for (_, g) in s.groups() {
            for (k, v) in g.iter() {
                let word = String::from_utf8_lossy(k);
                let prefix: String = word.chars().take_while(|c| c.is_alphabetic()).collect();
                *out.entry(prefix).or_default() += v;
            }
        }
    }
    out
}

/// A sink that sends `()` for every batch it gets.
pub struct Notify(pub UnboundedSender<usize>);

impl Operator for Notify {
    fn process(&mut self, batch: Batch, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        let _ = self.0.send(batch.len());
        Ok(())
    }
}

pub fn notify(
    id: &str,
    inputs: &[usize],
    parallelism: Option<u32>,
    tx: UnboundedSender<usize>,
) -> Vertex {
    super::operator(id, inputs, parallelism, move |_| {
        Box::new(Notify(tx.clone()))
    })
}
