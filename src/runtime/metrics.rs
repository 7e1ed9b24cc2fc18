//! Records in and out per operator and subtask: plain atomic counters, shared with whoever
//! reads them while the job runs (the REST API) and summed into the final report.
//!
//! Counters are bumped once per batch, never per record, with relaxed ordering: they are
//! statistics, not synchronisation.

use crate::pipeline::OperatorId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct SubtaskMetrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
}

impl SubtaskMetrics {
    #[inline]
    pub fn add(&self, records_in: usize, records_out: usize) {
        if records_in > 0 {
            self.records_in
                .fetch_add(records_in as u64, Ordering::Relaxed);
        }
        if records_out > 0 {
            self.records_out
                .fetch_add(records_out as u64, Ordering::Relaxed);
        }
    }
}

/// One operator's counters, one entry per subtask.
#[derive(Debug)]
pub struct OperatorMetrics {
    pub id: OperatorId,
    pub subtasks: Vec<SubtaskMetrics>,
}

impl OperatorMetrics {
    pub fn new(id: OperatorId, parallelism: u32) -> Self {
        OperatorMetrics {
            id,
            subtasks: (0..parallelism)
                .map(|_| SubtaskMetrics::default())
                .collect(),
        }
    }

    pub fn records_in(&self) -> u64 {
        self.subtasks
            .iter()
            .map(|s| s.records_in.load(Ordering::Relaxed))
            .sum()
    }

    pub fn records_out(&self) -> u64 {
        self.subtasks
            .iter()
            .map(|s| s.records_out.load(Ordering::Relaxed))
            .sum()
    }
}

/// Every operator's counters, in plan order (task by task, chain order within a task).
#[derive(Debug, Default)]
pub struct JobMetrics {
    pub operators: Vec<Arc<OperatorMetrics>>,
    /// How many times barrier alignment held back an input channel (EXACTLY_ONCE and
    /// savepoints); stays 0 under AT_LEAST_ONCE.
    pub channels_blocked: Arc<AtomicU64>,
}

impl JobMetrics {
    pub fn channels_blocked(&self) -> u64 {
        self.channels_blocked.load(Ordering::Relaxed)
    }

    pub fn operator(&self, id: &str) -> Option<&OperatorMetrics> {
        self.operators.iter().find(|o| o.id.0 == id).map(|o| &**o)
    }
}
