//! When the exactly-once `file` sink finishes a part file: its `rolling:` settings, Flink's
//! `DefaultRollingPolicy` (`withMaxPartSize`, `withRolloverInterval`,
//! `withInactivityInterval`, with Flink's defaults: 128 MB, 60 s, 60 s). Pure decisions over
//! a part's size and ages; the sink measures and acts.
//!
//! - a part is finished as soon as a write brings it to `max-part-size`;
//! - at each checkpoint barrier, also when it is `rollover-interval` old or no record came
//!   for `inactivity-interval` (Flink checks these on a processing-time timer; floe at the
//!   barriers, which are the only moments a finished part can be committed anyway).
//!
//! A part that is not finished stays open across checkpoints: each checkpoint records how
//! many of its bytes it covers, and a restore cuts the file back to that. So the number of
//! part files grows with the data and the time, not with the checkpoints.
//! `rollover-interval: 0` finishes a part at every checkpoint (Flink's
//! `OnCheckpointRollingPolicy`): output visible as soon as its checkpoint completes, one file
//! per checkpoint.

use crate::operators::sources::duration_serde;
use std::time::Duration;

/// The `rolling:` block of a `file` sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RollingConfig {
    /// A part is finished once it holds this many bytes (`128 mb`, `1 gb`, or bytes).
    #[serde(default = "default_max_part_size", with = "memory_serde")]
    pub max_part_size: u64,
    /// A part is finished at the first checkpoint after it is this old.
    #[serde(default = "default_interval", with = "duration_serde")]
    pub rollover_interval: Duration,
    /// A part is finished at the first checkpoint after no record came for this long.
    #[serde(default = "default_interval", with = "duration_serde")]
    pub inactivity_interval: Duration,
}

fn default_max_part_size() -> u64 {
    128 << 20
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}

impl Default for RollingConfig {
    fn default() -> Self {
        RollingConfig {
            max_part_size: default_max_part_size(),
            rollover_interval: default_interval(),
            inactivity_interval: default_interval(),
        }
    }
}

/// What the policy looks at: a part's size, how long ago it was opened and last written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartClock {
    pub size: u64,
    pub age: Duration,
    pub idle: Duration,
}

impl RollingConfig {
    /// After a write: whether the part is full.
    pub fn roll_on_write(&self, size: u64) -> bool {
        size >= self.max_part_size
    }

    /// At a checkpoint barrier: whether the part is full, old or idle enough to finish.
    pub fn roll_at_checkpoint(&self, p: PartClock) -> bool {
        self.roll_on_write(p.size)
            || p.age >= self.rollover_interval
            || p.idle >= self.inactivity_interval
    }

    /// What is wrong with the settings, as `(field, message)`.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if self.max_part_size == 0 {
            out.push((
                "rolling.max-part-size",
                "must be at least 1 byte (e.g. 128 mb, Flink's default)",
            ));
        }
        out
    }
}

/// A memory size in a pipeline file: bytes, or Flink's text form (`128 mb`).
pub(crate) mod memory_serde {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match <Raw as serde::Deserialize>::deserialize(d)? {
            Raw::Bytes(b) => Ok(b),
            Raw::Text(t) => crate::config::values::parse_memory(&t).map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid memory size '{t}': {e}; e.g. 128 mb, 1 gb or a number of bytes"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(size: u64, age: u64, idle: u64) -> PartClock {
        PartClock {
            size,
            age: Duration::from_secs(age),
            idle: Duration::from_secs(idle),
        }
    }

    #[test]
    fn flinks_defaults_roll_by_size_on_write_and_by_time_at_checkpoints() {
        let p = RollingConfig::default();
        assert_eq!(p.max_part_size, 128 * 1024 * 1024);
        assert!(!p.roll_on_write(1000));
        assert!(p.roll_on_write(128 * 1024 * 1024));
        assert!(!p.roll_at_checkpoint(clock(1000, 59, 1)));
        assert!(p.roll_at_checkpoint(clock(1000, 60, 1)), "rollover");
        assert!(p.roll_at_checkpoint(clock(1000, 5, 60)), "inactivity");
        assert!(p.roll_at_checkpoint(clock(200 << 20, 0, 0)), "size");
    }

    #[test]
    fn a_zero_rollover_interval_rolls_at_every_checkpoint() {
        let p = RollingConfig {
            rollover_interval: Duration::ZERO,
            ..RollingConfig::default()
        };
        assert!(p.roll_at_checkpoint(clock(1, 0, 0)));
    }

    #[test]
    fn the_block_parses_flinks_forms() {
        let c: RollingConfig = serde_yaml::from_str(
            "max-part-size: 1 mb\nrollover-interval: 10 min\ninactivity-interval: 500",
        )
        .unwrap();
        assert_eq!(c.max_part_size, 1 << 20);
        assert_eq!(c.rollover_interval, Duration::from_secs(600));
        assert_eq!(c.inactivity_interval, Duration::from_millis(500));
        let e = serde_yaml::from_str::<RollingConfig>("max-part-size: lots").unwrap_err();
        assert!(e.to_string().contains("invalid memory size 'lots'"), "{e}");
        assert!(serde_yaml::from_str::<RollingConfig>("max-size: 1").is_err());
        assert_eq!(RollingConfig::default().problems(), vec![]);
        let zero = RollingConfig {
            max_part_size: 0,
            ..RollingConfig::default()
        };
        assert_eq!(zero.problems().len(), 1);
    }
}
