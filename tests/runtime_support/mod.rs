//! Test sources and operators for the runtime tests, plugged into plans through vertex
//! factories (the catalogue is not needed to run the runtime).
#![allow(dead_code)]

pub mod checkpoints;

use floe::operators::{BuildContext, Operator, OperatorError, SourceEvent};
use floe::pipeline::plan::{Factory, Vertex};
use floe::pipeline::OperatorId;
use floe::record::{Batch, Column, DataType, Schema, StrColumnBuilder, Value};
use floe::runtime::{DynSource, TaskSource};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// `{n: int, word: str}`: what [`Numbers`] produces.
pub fn schema() -> Schema {
    Schema::new([("n", DataType::Int), ("word", DataType::Str)])
}

/// Record `seq` of subtask `s`: n = s * 1_000_000 + seq, word = `w<n % vocab>`.
pub fn record_n(subtask: u32, seq: u64) -> i64 {
    subtask as i64 * 1_000_000 + seq as i64
}

/// A source emitting `batches` batches (None = for ever) of `size` records per subtask.
#[derive(Clone)]
pub struct NumbersSpec {
    pub batches: Option<u64>,
    pub size: usize,
    pub vocab: i64,
    /// Records emitted, over all subtasks.
    pub produced: Arc<AtomicU64>,
    /// When set: records the sink consumed; the source tracks the most ever in flight.
    pub consumed: Option<Arc<AtomicU64>>,
    pub max_in_flight: Arc<AtomicU64>,
}

impl NumbersSpec {
    pub fn new(batches: Option<u64>, size: usize) -> Self {
        NumbersSpec {
            batches,
            size,
            vocab: 50,
            produced: Arc::default(),
            consumed: None,
            max_in_flight: Arc::default(),
        }
    }
}

pub struct Numbers {
    spec: NumbersSpec,
    subtask: u32,
    seq: u64,
    emitted: u64,
}

impl DynSource for Numbers {
    fn next(
        &mut self,
    ) -> Pin<Box<dyn Future<Output = Result<SourceEvent, OperatorError>> + Send + '_>> {
        Box::pin(async move {
            if self.spec.batches.is_some_and(|b| self.emitted >= b) {
                return Ok(SourceEvent::End);
            }
            if let Some(consumed) = &self.spec.consumed {
                let in_flight =
                    self.spec.produced.load(Ordering::SeqCst) - consumed.load(Ordering::SeqCst);
                self.spec
                    .max_in_flight
                    .fetch_max(in_flight, Ordering::SeqCst);
            }
            let mut ns = Vec::with_capacity(self.spec.size);
            let mut words = StrColumnBuilder::default();
            for _ in 0..self.spec.size {
                let n = record_n(self.subtask, self.seq);
                self.seq += 1;
                ns.push(n);
                words.push(format!("w{}", n % self.spec.vocab).as_bytes());
            }
            self.emitted += 1;
            self.spec
                .produced
                .fetch_add(self.spec.size as u64, Ordering::SeqCst);
            Ok(SourceEvent::Batch(Batch::new(vec![
                Column::Int(ns),
                Column::Str(words.finish()),
            ])))
        })
    }
}

pub fn numbers(id: &str, parallelism: Option<u32>, spec: NumbersSpec) -> Vertex {
    Vertex {
        id: OperatorId(id.into()),
        inputs: vec![],
        parallelism,
        required_parallelism: None,
        key_field: None,
        keyed: false,
        input_schema: None,
        output_schema: schema(),
        factory: Factory::Source(Arc::new(move |ctx: &BuildContext, _| {
            Ok(TaskSource::Dyn(Box::new(Numbers {
                spec: spec.clone(),
                subtask: ctx.subtask,
                seq: 0,
                emitted: 0,
            })))
        })),
    }
}

/// A transform or sink vertex built by `make` for each subtask.
pub fn operator<F>(id: &str, inputs: &[usize], parallelism: Option<u32>, make: F) -> Vertex
where
    F: Fn(&BuildContext) -> Box<dyn Operator> + Send + Sync + 'static,
{
    Vertex {
        id: OperatorId(id.into()),
        inputs: inputs.to_vec(),
        parallelism,
        required_parallelism: None,
        key_field: None,
        keyed: false,
        input_schema: Some(schema()),
        output_schema: schema(),
        factory: Factory::Operator(Arc::new(move |ctx| Ok(make(ctx)))),
    }
}

/// One record a [`Collect`] sink saw.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    pub subtask: u32,
    pub n: i64,
    pub word: String,
}

/// What every subtask of a collecting sink saw, and how often `finish` ran.
#[derive(Clone, Default)]
pub struct Collected {
    pub records: Arc<Mutex<Vec<Seen>>>,
    pub finishes: Arc<AtomicUsize>,
    pub consumed: Arc<AtomicU64>,
}

impl Collected {
    pub fn sorted_ns(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.records.lock().unwrap().iter().map(|s| s.n).collect();
        v.sort_unstable();
        v
    }
}

/// A sink keeping every record; optionally sleeping per batch to be slow.
pub struct Collect {
    pub into: Collected,
    pub subtask: u32,
    pub delay: Option<std::time::Duration>,
}

impl Operator for Collect {
    fn process(&mut self, batch: Batch, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        let mut records = self.into.records.lock().unwrap();
        for i in 0..batch.len() {
            let row = batch.row(i);
            let (Value::Int(n), Value::Str(w)) = (row[0], row[1]) else {
                return Err(OperatorError::Data("unexpected record".into()));
            };
            records.push(Seen {
                subtask: self.subtask,
                n,
                word: String::from_utf8_lossy(w).into_owned(),
            });
        }
        self.into
            .consumed
            .fetch_add(batch.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        self.into.finishes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

pub fn collect(id: &str, inputs: &[usize], parallelism: Option<u32>, into: &Collected) -> Vertex {
    let into = into.clone();
    operator(id, inputs, parallelism, move |ctx| {
        Box::new(Collect {
            into: into.clone(),
            subtask: ctx.subtask,
            delay: None,
        })
    })
}

/// Passes batches on unchanged, counting `finish` calls.
pub struct PassThrough {
    pub finishes: Arc<AtomicUsize>,
}

impl Operator for PassThrough {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        out.push(batch);
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        self.finishes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

pub fn pass(
    id: &str,
    inputs: &[usize],
    parallelism: Option<u32>,
    finishes: &Arc<AtomicUsize>,
) -> Vertex {
    let finishes = finishes.clone();
    operator(id, inputs, parallelism, move |_| {
        Box::new(PassThrough {
            finishes: finishes.clone(),
        })
    })
}
