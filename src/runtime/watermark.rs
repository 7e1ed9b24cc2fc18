//! Watermarks at a subtask with several input channels: Flink's status watermark valve.
//!
//! Each channel carries its upstream subtask's watermarks in order with its records. The
//! subtask's event time is the smallest watermark over its channels, so it never passes a
//! record still on its way. A channel that said it is idle (its source had nothing for the
//! idle timeout) does not count; when all are idle the subtask is idle too and says so
//! downstream. A channel that ended sends nothing more and stops counting as well. A channel
//! that becomes active again counts from when its watermark catches up with the subtask's,
//! so the subtask's watermark never goes back.
//!
//! Plain logic, no channels: the operator task feeds it what the gate delivers and sends on
//! what it returns.

/// What the subtask sends on after a change at one of its channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValveOutput {
    /// Its event time advanced to this.
    Advance(i64),
    /// Every channel is idle (or ended while others are idle).
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Channel {
    watermark: i64,
    idle: bool,
    ended: bool,
    /// Counts for the minimum: active, and caught up with the subtask's watermark.
    aligned: bool,
}

/// The watermark state of one subtask's input channels.
#[derive(Debug, Clone)]
pub struct WatermarkValve {
    channels: Vec<Channel>,
    /// What was last sent on (`i64::MIN`: nothing).
    last: i64,
    /// Whether the subtask last said it is idle.
    idle: bool,
}

impl WatermarkValve {
    pub fn new(channels: usize) -> Self {
        WatermarkValve {
            channels: vec![
                Channel {
                    watermark: i64::MIN,
                    idle: false,
                    ended: false,
                    aligned: true,
                };
                channels
            ],
            last: i64::MIN,
            idle: false,
        }
    }

    /// The subtask's event time so far (`i64::MIN` before any watermark).
    pub fn current(&self) -> i64 {
        self.last
    }

    /// Channel `i` delivered a watermark.
    pub fn on_watermark(&mut self, i: usize, watermark: i64) -> Option<ValveOutput> {
        let last = self.last;
        let c = self.channels.get_mut(i)?;
        if c.ended {
            return None;
        }
        c.idle = false;
        c.watermark = c.watermark.max(watermark);
        if !c.aligned && c.watermark >= last {
            c.aligned = true;
        }
        self.settle()
    }

    /// Channel `i` delivered records: it is active again if it was idle.
    pub fn on_data(&mut self, i: usize) -> Option<ValveOutput> {
        let c = self.channels.get_mut(i)?;
        if !c.idle {
            return None;
        }
        self.activate(i)
    }

    /// Channel `i` says its upstream is idle.
    pub fn on_idle(&mut self, i: usize) -> Option<ValveOutput> {
        let c = self.channels.get_mut(i)?;
        if c.ended || c.idle {
            return None;
        }
        c.idle = true;
        c.aligned = false;
        self.settle()
    }

    /// Channel `i` ended: nothing more comes on it.
    pub fn on_end(&mut self, i: usize) -> Option<ValveOutput> {
        let c = self.channels.get_mut(i)?;
        c.ended = true;
        c.aligned = false;
        self.settle()
    }

    fn activate(&mut self, i: usize) -> Option<ValveOutput> {
        let last = self.last;
        let c = &mut self.channels[i];
        c.idle = false;
        c.aligned = c.watermark >= last;
        if self.idle {
            // The subtask was idle: it is active again from its watermark so far.
            self.idle = false;
            if self.last > i64::MIN {
                return Some(ValveOutput::Advance(self.last));
            }
        }
        None
    }

    /// The new minimum over the channels that count, or the subtask going idle.
    fn settle(&mut self) -> Option<ValveOutput> {
        let live: Vec<&Channel> = self.channels.iter().filter(|c| !c.ended).collect();
        if !live.is_empty() && live.iter().all(|c| c.idle) {
            if self.idle {
                return None;
            }
            self.idle = true;
            return Some(ValveOutput::Idle);
        }
        let min = self
            .channels
            .iter()
            .filter(|c| c.aligned && !c.idle && !c.ended)
            .map(|c| c.watermark)
            .min();
        match min {
            Some(m) if m > self.last => {
                self.last = m;
                self.idle = false;
                Some(ValveOutput::Advance(m))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ValveOutput::{Advance, Idle};

    #[test]
    fn the_minimum_over_channels_and_only_upwards() {
        let mut v = WatermarkValve::new(2);
        assert_eq!(v.on_watermark(0, 100), None, "channel 1 has said nothing");
        assert_eq!(v.on_watermark(1, 50), Some(Advance(50)));
        assert_eq!(v.on_watermark(1, 200), Some(Advance(100)));
        assert_eq!(
            v.on_watermark(0, 90),
            None,
            "a channel's watermark never goes back"
        );
        assert_eq!(v.on_watermark(0, 300), Some(Advance(200)));
        assert_eq!(v.current(), 200);
    }

    #[test]
    fn idle_channels_do_not_hold_time_back() {
        let mut v = WatermarkValve::new(3);
        v.on_watermark(0, 10);
        v.on_watermark(1, 20);
        assert_eq!(v.on_idle(2), Some(Advance(10)));
        assert_eq!(v.on_idle(0), Some(Advance(20)));
        assert_eq!(v.on_idle(1), Some(Idle));
        assert_eq!(v.on_idle(1), None);
        // Channel 2 wakes up behind the subtask: it counts once it catches up.
        assert_eq!(v.on_data(2), Some(Advance(20)));
        assert_eq!(v.on_watermark(2, 15), None);
        assert_eq!(v.on_watermark(2, 40), Some(Advance(40)));
    }

    #[test]
    fn an_ended_channel_stops_counting() {
        let mut v = WatermarkValve::new(2);
        v.on_watermark(0, 10);
        assert_eq!(v.on_end(1), Some(Advance(10)));
        assert_eq!(v.on_watermark(0, i64::MAX), Some(Advance(i64::MAX)));
        assert_eq!(v.on_end(0), None);
    }
}
