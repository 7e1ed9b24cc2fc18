//! Records in and out per operator and subtask: plain atomic counters, shared with whoever
//! reads them while the job runs (the REST API) and summed into the final report.
//!
//! Counters are bumped once per batch, never per record, with relaxed ordering: they are
//! statistics, not synchronisation.
//!
//! Batch gaps (for benchmarks): with [`set_batch_timing`] on, each subtask also records the
//! time between two consecutive batches it processed, in a histogram. A stall of the data
//! path (a slow synchronous snapshot, a blocked channel) shows up there as a long gap. Off by
//! default: then the cost is one relaxed load per batch; on, one `Instant::now()` per batch.

use crate::pipeline::OperatorId;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

static BATCH_TIMING: AtomicBool = AtomicBool::new(false);

/// Turns recording of batch gaps on or off for every job in this process (benchmarks).
pub fn set_batch_timing(on: bool) {
    if on {
        epoch();
    }
    BATCH_TIMING.store(on, Ordering::Relaxed);
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Histogram buckets per power of two (about 9% wide each).
const SUB_BUCKETS: u32 = 8;
/// Buckets: gaps from 1 µs to 2^32 µs (over an hour); longer ones land in the last.
const BUCKETS: usize = 32 * SUB_BUCKETS as usize;

fn bucket_of(micros: u64) -> usize {
    if micros <= 1 {
        return 0;
    }
    let log2 = 63 - micros.leading_zeros();
    // The next 3 bits below the leading one pick the sub-bucket.
    let frac = if log2 >= 3 {
        (micros >> (log2 - 3)) & 0x7
    } else {
        (micros << (3 - log2)) & 0x7
    };
    ((log2 * SUB_BUCKETS) as usize + frac as usize).min(BUCKETS - 1)
}

/// The largest gap (µs) that falls into bucket `b`.
fn bucket_upper(b: usize) -> u64 {
    let log2 = b as u32 / SUB_BUCKETS;
    let frac = (b as u32 % SUB_BUCKETS) as u64;
    let base = 1u64 << log2;
    base + ((frac + 1) * base) / SUB_BUCKETS as u64
}

/// Gaps between consecutive batches of one subtask (see [`set_batch_timing`]).
#[derive(Debug)]
pub struct BatchGaps {
    /// Nanoseconds since the process epoch at the last batch; 0 = none yet.
    last_ns: AtomicU64,
    max_ns: AtomicU64,
    buckets: Box<[AtomicU64]>,
}

impl Default for BatchGaps {
    fn default() -> Self {
        BatchGaps {
            last_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl BatchGaps {
    #[inline]
    fn record(&self) {
        // +1 so that a batch at the epoch itself still counts as "seen".
        let now = epoch().elapsed().as_nanos() as u64 + 1;
        let last = self.last_ns.swap(now, Ordering::Relaxed);
        if last == 0 {
            return;
        }
        let gap = now.saturating_sub(last);
        self.max_ns.fetch_max(gap, Ordering::Relaxed);
        self.buckets[bucket_of(gap / 1000)].fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the histogram so far.
    pub fn summary(&self) -> GapSummary {
        GapSummary {
            max: Duration::from_nanos(self.max_ns.load(Ordering::Relaxed)),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// Batch gaps of one or more subtasks, merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GapSummary {
    pub max: Duration,
    buckets: Vec<u64>,
}

impl GapSummary {
    /// Number of gaps recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Adds `other`'s gaps to these.
    pub fn merge(&mut self, other: &GapSummary) {
        self.max = self.max.max(other.max);
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }

    /// The gap at quantile `q` (0..=1), as the upper bound of its bucket (within ~12%), never
    /// above the largest gap seen.
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_micros(bucket_upper(b)).min(self.max);
            }
        }
        self.max
    }
}

#[derive(Debug, Default)]
pub struct SubtaskMetrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    /// Records the operator discarded (did not parse, too late for their window).
    pub records_discarded: AtomicU64,
    /// Gaps between batches, recorded only with [`set_batch_timing`] on.
    pub batch_gaps: BatchGaps,
}

impl SubtaskMetrics {
    #[inline]
    pub fn add(&self, records_in: usize, records_out: usize) {
        if BATCH_TIMING.load(Ordering::Relaxed) {
            self.batch_gaps.record();
        }
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

    pub fn records_discarded(&self) -> u64 {
        self.subtasks
            .iter()
            .map(|s| s.records_discarded.load(Ordering::Relaxed))
            .sum()
    }

    pub fn records_out(&self) -> u64 {
        self.subtasks
            .iter()
            .map(|s| s.records_out.load(Ordering::Relaxed))
            .sum()
    }

    /// Batch gaps of every subtask, merged (empty unless [`set_batch_timing`] was on).
    pub fn batch_gaps(&self) -> GapSummary {
        let mut all = GapSummary::default();
        for s in &self.subtasks {
            all.merge(&s.batch_gaps.summary());
        }
        all
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_monotonically_and_bound_their_gaps() {
        let mut prev = 0;
        for us in [
            1u64,
            2,
            3,
            7,
            8,
            9,
            15,
            100,
            999,
            1000,
            4_999,
            5_000,
            1 << 20,
        ] {
            let b = bucket_of(us);
            assert!(b >= prev, "bucket of {us} went down");
            assert!(bucket_upper(b) >= us, "bucket {b} upper bound below {us}");
            assert!(
                bucket_upper(b) <= us + us / 8 + 1,
                "bucket {b} too wide for {us}"
            );
            prev = b;
        }
    }

    #[test]
    fn quantiles_come_from_the_recorded_gaps() {
        let mut s = GapSummary {
            max: Duration::from_micros(5_000),
            buckets: vec![0; BUCKETS],
        };
        s.buckets[bucket_of(100)] = 99;
        s.buckets[bucket_of(5_000)] = 1;
        assert_eq!(s.count(), 100);
        let p50 = s.quantile(0.5);
        assert!(p50 >= Duration::from_micros(100) && p50 < Duration::from_micros(120));
        assert_eq!(s.quantile(1.0), Duration::from_micros(5_000));
        let mut merged = GapSummary::default();
        merged.merge(&s);
        merged.merge(&s);
        assert_eq!(merged.count(), 200);
    }
}
