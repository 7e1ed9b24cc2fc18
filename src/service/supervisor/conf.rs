//! What a change of `flink-conf.yaml` does to running jobs: the changed keys split into those
//! a job takes live (`config::live::LIVE_KEYS`: interval, timeout, minimum pause, tolerable
//! failures, retention, inline threshold; applied at the job's next checkpoint) and those
//! that need a restart, which the supervisor names in the log.

use super::launch::StartedJob;
use crate::config::live::{self, ConfigDiff, LiveSettings};
use crate::config::{Config, Entry};

/// The changed keys of two loads' entries.
pub fn diff(old: &[Entry], new: &[Entry]) -> ConfigDiff {
    live::diff(old, new)
}

/// Hands the live settings of `cfg` to a running job (from its next checkpoint on, and to
/// every later attempt).
pub fn apply_live(job: &StartedJob, cfg: &Config) {
    job.handle.reconfigure(LiveSettings::from_config(cfg));
}
