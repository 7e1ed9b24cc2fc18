//! `type: assign`: event time from a field, mid-pipeline (Flink's
//! `assignTimestampsAndWatermarks`), for records that get their time field only after a
//! source (a `parse` step, say).
//!
//! Each record is stamped with its field's time (an `int` of milliseconds since the epoch,
//! or RFC 3339 text) and each subtask makes bounded out-of-orderness watermarks from what
//! it saw. Watermarks from upstream are not passed on (these replace them), except the final
//! one of a finished input, which fires every window downstream. A record whose time cannot
//! be read fails the job or is dropped, as `on-error` says.

use crate::operators::event_time::{millis, Timestamper, WatermarkEvent, WatermarkGenerator};
use crate::operators::sources::duration_serde;
use crate::operators::transforms::parse::{BadRecords, OnError};
use crate::operators::{BuildContext, Operator, OperatorError, OperatorSpec, Problem};
use crate::record::{Batch, Schema};
use std::time::Duration;
use tokio::time::Instant;

/// What a user writes under `type: assign`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AssignConfig {
    /// The field with each record's time: `int` ms since the epoch, or `str` RFC 3339.
    pub field: String,
    #[serde(default, with = "duration_serde")]
    pub max_out_of_orderness: Duration,
    #[serde(default)]
    pub on_error: OnError,
}

impl AssignConfig {
    fn event_time(&self) -> crate::operators::event_time::EventTimeConfig {
        crate::operators::event_time::EventTimeConfig {
            field: self.field.clone(),
            max_out_of_orderness: self.max_out_of_orderness,
            idle_timeout: None,
        }
    }
}

impl OperatorSpec for AssignConfig {
    fn output_schema(&self, input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        let Some(input) = input else {
            return Err(vec![Problem::new("", "assign needs an input")]);
        };
        self.event_time().check(input, "").map_err(|p| vec![p])?;
        Ok(input.clone())
    }

    fn makes_event_time(&self, _input: bool) -> bool {
        true
    }
}

/// A running `assign` subtask.
pub struct Assign {
    stamper: Timestamper,
    generator: WatermarkGenerator,
    bad: BadRecords,
    seen: u64,
    made: Option<i64>,
}

impl Assign {
    pub fn new(
        c: &AssignConfig,
        input: &Schema,
        ctx: &BuildContext,
    ) -> Result<Self, OperatorError> {
        let stamper = c
            .event_time()
            .check(input, "")
            .map_err(|p| OperatorError::Config(format!("{}: {}", p.field, p.message)))?;
        Ok(Assign {
            stamper,
            generator: WatermarkGenerator::new(millis(c.max_out_of_orderness), None, 1),
            bad: BadRecords::new("assign", ctx, c.on_error),
            seen: 0,
            made: None,
        })
    }
}

impl Operator for Assign {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        let first = self.seen;
        self.seen += batch.len() as u64;
        let bad = &mut self.bad;
        let mut dropped = Vec::new();
        let ts = self.stamper.timestamps(&batch.columns, &mut |row, why| {
            let at = format!("record {} of this subtask", first + row as u64 + 1);
            bad.report(&at, b"", why)?;
            dropped.push(row as u32);
            Ok(())
        })?;
        let now = Instant::now();
        self.generator
            .observe(0, ts.iter().copied().filter(|&t| t != i64::MIN), now);
        let mut batch = batch.with_timestamps(Some(ts));
        if !dropped.is_empty() {
            let rows: Vec<u32> = (0..batch.len() as u32)
                .filter(|r| dropped.binary_search(r).is_err())
                .collect();
            batch = batch.take(&rows);
        }
        if !batch.is_empty() {
            out.push(batch);
        }
        if let Some(WatermarkEvent::Advance(w)) = self.generator.poll(now) {
            self.made = Some(w);
        }
        Ok(())
    }

    fn take_watermark(&mut self) -> Option<i64> {
        self.made.take()
    }

    /// Upstream watermarks stop here, but for the final one (the input has finished).
    fn on_watermark(
        &mut self,
        watermark: i64,
        _out: &mut Vec<Batch>,
    ) -> Result<Option<i64>, OperatorError> {
        Ok((watermark == i64::MAX).then_some(i64::MAX))
    }

    fn records_discarded(&self) -> u64 {
        self.bad.count()
    }
}
