//! Which settings a running job can take without a restart, and what changed between two
//! loads of the configuration.
//!
//! `floe serve` reloads `flink-conf.yaml` when it changes. The keys in [`LIVE_KEYS`] (the
//! checkpoint interval, timeout, minimum pause, tolerable failures, retention and the inline
//! threshold) apply to a running job at its next checkpoint ([`LiveSettings`], handed to
//! `FailoverHandle::reconfigure`); every other changed key needs the job restarted, and
//! [`diff`] names it so that the log can say so.

use super::{Config, Entry};
use std::collections::BTreeMap;
use std::time::Duration;

/// The canonical names of the keys a running job applies live.
pub const LIVE_KEYS: [&str; 6] = [
    "execution.checkpointing.interval",
    "execution.checkpointing.timeout",
    "execution.checkpointing.min-pause",
    "execution.checkpointing.tolerable-failed-checkpoints",
    "execution.checkpointing.num-retained",
    "execution.checkpointing.data-inline-threshold",
];

/// The settings of [`LIVE_KEYS`], typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveSettings {
    /// `None`: no periodic checkpoints (savepoints still work).
    pub interval: Option<Duration>,
    pub timeout: Duration,
    pub min_pause: Duration,
    pub tolerable_failed: u32,
    pub num_retained: u32,
    /// Bytes.
    pub inline_threshold: u64,
}

impl LiveSettings {
    pub fn from_config(c: &Config) -> LiveSettings {
        LiveSettings {
            interval: c.checkpointing.interval,
            timeout: c.checkpointing.timeout,
            min_pause: c.checkpointing.min_pause,
            tolerable_failed: c.checkpointing.tolerable_failed,
            num_retained: c.state.num_retained,
            inline_threshold: c.state.inline_threshold,
        }
    }

    /// `c` with these settings in place of its own.
    pub fn apply_to(&self, c: &mut Config) {
        c.checkpointing.interval = self.interval;
        c.checkpointing.timeout = self.timeout;
        c.checkpointing.min_pause = self.min_pause;
        c.checkpointing.tolerable_failed = self.tolerable_failed;
        c.state.num_retained = self.num_retained;
        c.state.inline_threshold = self.inline_threshold;
    }
}

/// What changed between two loads, by canonical key name, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Changed keys that a running job applies at its next checkpoint.
    pub live: Vec<String>,
    /// Changed keys that take effect only when the job is started again.
    pub restart: Vec<String>,
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.restart.is_empty()
    }
}

/// The keys whose effective value differs between `old` and `new` (the `entries` of two
/// loads), split into live and restart keys. Values are compared as written, so `1 s` and
/// `1000 ms` count as a change; a live key whose typed value did not change applies as a
/// no-op.
pub fn diff(old: &[Entry], new: &[Entry]) -> ConfigDiff {
    let old: BTreeMap<&str, &str> = old
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    let new: BTreeMap<&str, &str> = new
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    let mut keys: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out = ConfigDiff::default();
    for key in keys {
        if old.get(key) == new.get(key) {
            continue;
        }
        if LIVE_KEYS.contains(&key) {
            out.live.push(key.to_string());
        } else {
            out.restart.push(key.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, LoadOptions};

    fn entries(conf: &str) -> (Config, Vec<Entry>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flink-conf.yaml"), conf).unwrap();
        let loaded = load(&LoadOptions {
            conf_dir: Some(dir.path().to_path_buf()),
            pipeline_settings: vec![],
            dynamic: vec![],
        })
        .unwrap();
        (loaded.config, loaded.entries)
    }

    #[test]
    fn live_keys_are_known_canonical_keys() {
        for k in LIVE_KEYS {
            let spec = crate::config::keys::lookup(k).expect(k);
            assert_eq!(spec.canonical, k);
        }
    }

    #[test]
    fn splits_changed_keys_into_live_and_restart() {
        let (_, a) = entries(
            "execution.checkpointing.interval: 1 s\nstate.checkpoints.num-retained: 1\n\
             parallelism.default: 1\n",
        );
        let (_, b) = entries(
            "execution.checkpointing.interval: 5 s\nstate.checkpoints.num-retained: 3\n\
             parallelism.default: 2\nstate.backend.incremental: true\n",
        );
        let d = diff(&a, &b);
        assert_eq!(
            d.live,
            [
                "execution.checkpointing.interval",
                "execution.checkpointing.num-retained"
            ]
        );
        assert_eq!(
            d.restart,
            ["execution.checkpointing.incremental", "parallelism.default"]
        );
    }

    #[test]
    fn same_text_is_no_change() {
        let (_, a) = entries("execution.checkpointing.interval: 1 s\n");
        let (_, b) = entries("# a comment\nexecution.checkpointing.interval: 1 s\n");
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn settings_round_trip_through_a_config() {
        let (a, _) = entries("execution.checkpointing.interval: 1 s\n");
        let (b, _) = entries(
            "execution.checkpointing.interval: 7 s\nexecution.checkpointing.timeout: 30 s\n\
             state.checkpoints.num-retained: 4\nstate.backend.fs.memory-threshold: 1 kb\n\
             execution.checkpointing.tolerable-failed-checkpoints: 2\n\
             execution.checkpointing.min-pause: 100 ms\n",
        );
        let live = LiveSettings::from_config(&b);
        assert_eq!(live.interval, Some(Duration::from_secs(7)));
        assert_eq!(live.inline_threshold, 1024);
        let mut c = a.clone();
        live.apply_to(&mut c);
        assert_eq!(LiveSettings::from_config(&c), live);
        // Nothing else moved.
        assert_eq!(c.parallelism_default, a.parallelism_default);
        assert_eq!(c.state.incremental, a.state.incremental);
    }
}
