//! What a change of `flink-conf.yaml` does to running jobs: the changed keys, split into
//! those a job takes live and those that need a restart.
//!
//! The split is `config::live`'s once that lands on main; until then [`diff`] compares the
//! effective values key by key and treats every changed key as needing a restart, and
//! [`apply_live`] has nothing to hand over. Both are the only places to wire it.

use super::launch::StartedJob;
use crate::config::{Config, Entry};
use std::collections::BTreeMap;

/// The changed keys of two loads, by canonical name, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfDiff {
    /// Applied by a running job at its next checkpoint.
    pub live: Vec<String>,
    /// Applied only when the job starts again.
    pub restart: Vec<String>,
}

/// The keys whose effective value differs between two loads' entries.
pub fn diff(old: &[Entry], new: &[Entry]) -> ConfDiff {
    let map = |e: &[Entry]| -> BTreeMap<String, String> {
        e.iter().map(|e| (e.key.clone(), e.value.clone())).collect()
    };
    let (old, new) = (map(old), map(new));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    ConfDiff {
        live: Vec::new(),
        restart: keys
            .into_iter()
            .filter(|k| old.get(*k) != new.get(*k))
            .cloned()
            .collect(),
    }
}

/// Hands the live keys of `cfg` to a running job.
pub fn apply_live(job: &StartedJob, cfg: &Config) {
    let _ = (&job.handle, cfg);
}
