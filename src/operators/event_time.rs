//! Event time: a record's timestamp taken from one of its fields, and the watermarks a source
//! (or an `assign` step) derives from the timestamps it has seen.
//!
//! Watermarks are Flink's bounded out-of-orderness: after records up to time `t`, the
//! watermark is `t - max-out-of-orderness - 1`, a promise that no record at or before it
//! follows. A source keeps one generator per subtask with one entry per split (a Kafka
//! partition; a whole subtask for other sources): the subtask's watermark is the smallest of
//! its splits'. A split that has had no record for `idle-timeout` is idle and does not hold
//! the watermark back; when all are idle the subtask says so downstream, so a silent source
//! does not stop time for the rest of the job.
//!
//! Everything here is plain logic with time passed in: the runtime sends what it decides.

use crate::operators::Problem;
use crate::record::{Column, DataType, Schema};
use std::time::Duration;
use tokio::time::Instant;

/// What a watermark source tells the runtime after it produced records or waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkEvent {
    /// Event time has advanced to this (milliseconds since the epoch).
    Advance(i64),
    /// No split of this subtask had records for the idle timeout.
    Idle,
}

/// `event-time:` of a source, and the settings of `type: assign`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EventTimeConfig {
    /// The field with each record's time: an `int` of milliseconds since the epoch, or `str`
    /// RFC 3339 text (`2024-05-01T12:00:00.250Z`, `2024-05-01T14:00:00+02:00`).
    pub field: String,
    /// How late a record may come behind the latest one seen and still be on time.
    #[serde(default, with = "crate::operators::sources::duration_serde")]
    pub max_out_of_orderness: Duration,
    /// A split (partition) without records for this long stops holding the watermark back.
    #[serde(default, with = "crate::operators::sources::opt_duration_serde")]
    pub idle_timeout: Option<Duration>,
}

impl EventTimeConfig {
    /// Checks `field` against the records' schema; `at` is the settings' path
    /// (`event-time.` for a source, empty for `assign`).
    pub fn check(&self, schema: &Schema, at: &str) -> Result<Timestamper, Problem> {
        let field = format!("{at}field");
        let (column, ty) = crate::operators::typed_field(
            &field,
            &self.field,
            schema,
            &[DataType::Int, DataType::Str],
        )?;
        Ok(Timestamper {
            column,
            rfc3339: ty == DataType::Str,
        })
    }

    /// A generator for these settings, with `splits` splits.
    pub fn generator(&self, splits: usize) -> WatermarkGenerator {
        WatermarkGenerator::new(millis(self.max_out_of_orderness), self.idle_timeout, splits)
    }
}

/// A duration in whole milliseconds, saturating.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Reads the timestamps of a batch from its event-time column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamper {
    column: usize,
    rfc3339: bool,
}

impl Timestamper {
    /// The timestamp of every record; for a record whose time cannot be read, `bad(row, why)`
    /// decides (an error fails the call) and the record gets `i64::MIN`, which the caller
    /// drops.
    pub fn timestamps(
        &self,
        columns: &[Column],
        bad: &mut dyn FnMut(usize, &str) -> Result<(), crate::operators::OperatorError>,
    ) -> Result<Vec<i64>, crate::operators::OperatorError> {
        match columns.get(self.column) {
            Some(Column::Int(v)) => Ok(v.clone()),
            Some(Column::Str(c)) if self.rfc3339 => {
                let mut out = Vec::with_capacity(c.len());
                for (row, text) in c.iter().enumerate() {
                    match parse_rfc3339(text) {
                        Ok(t) => out.push(t),
                        Err(why) => {
                            bad(row, &why)?;
                            out.push(i64::MIN);
                        }
                    }
                }
                Ok(out)
            }
            _ => Err(crate::operators::OperatorError::Config(format!(
                "bug: the event-time column {} is not of its checked type",
                self.column
            ))),
        }
    }
}

/// Milliseconds since the epoch of RFC 3339 text.
pub fn parse_rfc3339(text: &[u8]) -> Result<i64, String> {
    let s = std::str::from_utf8(text).map_err(|_| "the time is not UTF-8 text".to_string())?;
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            format!(
                "the time \"{}\" is not RFC 3339 ({e}); write it like 2024-05-01T12:00:00.250Z",
                crate::text::escape(s)
            )
        })
}

/// One split's progress.
#[derive(Debug, Clone, Copy)]
struct Split {
    /// The largest timestamp seen (`i64::MIN`: none yet).
    max: i64,
    /// When the split last had a record; `None` until its first.
    last_active: Option<Instant>,
    idle: bool,
}

/// Bounded out-of-orderness watermarks of one subtask over its splits.
#[derive(Debug, Clone)]
pub struct WatermarkGenerator {
    out_of_orderness: i64,
    idle_timeout: Option<Duration>,
    splits: Vec<Split>,
    /// The last watermark handed out (`i64::MIN`: none).
    emitted: i64,
    /// Whether the subtask last said it is idle.
    idle: bool,
    /// When the generator was made: a split that never had a record goes idle after the
    /// timeout counted from here.
    started: Option<Instant>,
}

impl WatermarkGenerator {
    pub fn new(out_of_orderness: i64, idle_timeout: Option<Duration>, splits: usize) -> Self {
        WatermarkGenerator {
            out_of_orderness,
            idle_timeout,
            splits: vec![
                Split {
                    max: i64::MIN,
                    last_active: None,
                    idle: false,
                };
                splits.max(1)
            ],
            emitted: i64::MIN,
            idle: false,
            started: None,
        }
    }

    /// Makes room for `n` splits (a Kafka partition found later); new ones start empty.
    pub fn ensure_splits(&mut self, n: usize) {
        if n > self.splits.len() {
            self.splits.resize(
                n,
                Split {
                    max: i64::MIN,
                    last_active: None,
                    idle: false,
                },
            );
        }
    }

    /// Records of `split` with these timestamps arrived at `now`.
    pub fn observe(
        &mut self,
        split: usize,
        timestamps: impl IntoIterator<Item = i64>,
        now: Instant,
    ) {
        self.ensure_splits(split + 1);
        let s = &mut self.splits[split];
        let mut any = false;
        for t in timestamps {
            s.max = s.max.max(t);
            any = true;
        }
        if any {
            s.last_active = Some(now);
            s.idle = false;
        }
    }

    /// What to send now, if anything: a higher watermark, or that the subtask went idle.
    pub fn poll(&mut self, now: Instant) -> Option<WatermarkEvent> {
        let started = *self.started.get_or_insert(now);
        if let Some(timeout) = self.idle_timeout {
            for s in &mut self.splits {
                let since = s.last_active.unwrap_or(started);
                if now.saturating_duration_since(since) >= timeout {
                    s.idle = true;
                }
            }
        }
        let active = self.splits.iter().filter(|s| !s.idle);
        let Some(min) = active.map(|s| s.max).min() else {
            if self.idle {
                return None;
            }
            self.idle = true;
            return Some(WatermarkEvent::Idle);
        };
        let wm = if min == i64::MIN {
            i64::MIN
        } else {
            min.saturating_sub(self.out_of_orderness).saturating_sub(1)
        };
        if wm > self.emitted {
            self.emitted = wm;
            self.idle = false;
            return Some(WatermarkEvent::Advance(wm));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness_as_flink() {
        let now = Instant::now();
        let mut g = WatermarkGenerator::new(100, None, 1);
        assert_eq!(g.poll(now), None, "nothing seen, nothing to say");
        g.observe(0, [1000, 1500, 1200], now);
        assert_eq!(g.poll(now), Some(WatermarkEvent::Advance(1399)));
        assert_eq!(g.poll(now), None, "only higher watermarks go out");
        g.observe(0, [900], now);
        assert_eq!(g.poll(now), None);
        g.observe(0, [2000], now);
        assert_eq!(g.poll(now), Some(WatermarkEvent::Advance(1899)));
    }

    #[test]
    fn the_slowest_split_holds_time_back_until_it_is_idle() {
        let t0 = Instant::now();
        let mut g = WatermarkGenerator::new(0, Some(Duration::from_secs(5)), 2);
        g.observe(0, [10_000], t0);
        assert_eq!(g.poll(t0), None, "split 1 has seen nothing");
        g.observe(1, [3_000], t0);
        assert_eq!(g.poll(t0), Some(WatermarkEvent::Advance(2_999)));
        let t1 = t0 + Duration::from_secs(3);
        g.observe(0, [12_000], t1);
        assert_eq!(g.poll(t1), None);
        let t2 = t0 + Duration::from_secs(6);
        assert_eq!(
            g.poll(t2),
            Some(WatermarkEvent::Advance(11_999)),
            "split 1 idle"
        );
        let t3 = t0 + Duration::from_secs(9);
        assert_eq!(g.poll(t3), Some(WatermarkEvent::Idle), "both idle");
        assert_eq!(g.poll(t3), None);
        g.observe(1, [20_000], t3);
        assert_eq!(g.poll(t3), Some(WatermarkEvent::Advance(19_999)));
    }

    #[test]
    fn rfc3339_with_offsets_and_fractions() {
        assert_eq!(parse_rfc3339(b"1970-01-01T00:00:01.250Z"), Ok(1250));
        assert_eq!(parse_rfc3339(b"1970-01-01T02:00:00+02:00"), Ok(0));
        let e = parse_rfc3339(b"yesterday").unwrap_err();
        assert!(e.contains("not RFC 3339"), "{e}");
    }
}
