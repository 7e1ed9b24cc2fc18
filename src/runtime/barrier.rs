//! Barrier alignment: the decision, as plain synchronous code.
//!
//! A subtask with several input channels feeds this aligner with what arrives ("barrier n on
//! channel i", "channel i ended") and does what it answers: block a channel (stop polling it),
//! take the snapshot and forward the barrier, release the blocked channels. It knows no
//! channels, clocks or tasks (docs/architecture.md#barrier-flow).
//!
//! - EXACTLY_ONCE (aligned): once barrier n arrived on a channel, that channel is blocked until
//!   barrier n arrived on every channel; then snapshot, forward, unblock all. Records behind the
//!   barrier therefore wait and belong to the next checkpoint.
//! - AT_LEAST_ONCE: nothing is ever blocked; snapshot when the last barrier n arrives. Records
//!   that overtook on fast channels are in the state and will be replayed: duplicates.
//! - Savepoint barriers are always aligned.
//! - A channel that ended counts as having delivered every later barrier.
//! - A newer barrier while aligning an older one aborts the older checkpoint (as Flink does
//!   with one concurrent checkpoint) and starts aligning the newer one.

use crate::runtime::message::{Barrier, BarrierKind, CheckpointId};

pub use crate::config::CheckpointingMode;

/// What the subtask must do after telling the aligner about a barrier or an ended channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Stop polling the channel the barrier came on.
    pub block: bool,
    /// An older alignment given up: that checkpoint cannot complete here. Blocked channels are
    /// released.
    pub aborted: Option<CheckpointId>,
    /// Every channel delivered this barrier: snapshot now, forward it, release all channels.
    pub snapshot: Option<Barrier>,
}

/// The alignment state of one subtask's input channels.
#[derive(Debug)]
pub struct BarrierAligner {
    mode: CheckpointingMode,
    ended: Vec<bool>,
    /// The barrier being aligned and the channels it arrived on.
    pending: Option<Barrier>,
    arrived: Vec<bool>,
    blocked: Vec<bool>,
    /// The last checkpoint snapshotted or aborted: older barriers are stale.
    last_done: Option<CheckpointId>,
}

impl BarrierAligner {
    pub fn new(channels: usize, mode: CheckpointingMode) -> Self {
        BarrierAligner {
            mode,
            ended: vec![false; channels],
            pending: None,
            arrived: vec![false; channels],
            blocked: vec![false; channels],
            last_done: None,
        }
    }

    /// Whether channel `i` must not be polled now.
    pub fn is_blocked(&self, channel: usize) -> bool {
        self.blocked[channel]
    }

    /// The checkpoint being aligned, if any.
    pub fn pending(&self) -> Option<CheckpointId> {
        self.pending.map(|b| b.checkpoint_id)
    }

    /// Barrier `barrier` arrived on `channel`.
    pub fn on_barrier(&mut self, channel: usize, barrier: Barrier) -> Decision {
        let mut decision = Decision::default();
        if self
            .last_done
            .is_some_and(|done| barrier.checkpoint_id <= done)
        {
            return decision; // stale: its checkpoint was completed or aborted already
        }
        match self.pending {
            Some(p) if p.checkpoint_id == barrier.checkpoint_id => {}
            Some(p) if p.checkpoint_id > barrier.checkpoint_id => return decision,
            Some(p) => {
                decision.aborted = Some(p.checkpoint_id);
                self.reset();
                self.pending = Some(barrier);
            }
            None => self.pending = Some(barrier),
        }
        self.arrived[channel] = true;
        if self.complete() {
            decision.snapshot = Some(barrier);
            self.last_done = Some(barrier.checkpoint_id);
            self.reset();
        } else if self.aligns(barrier) {
            self.blocked[channel] = true;
            decision.block = true;
        }
        decision
    }

    /// Channel `channel` ended: it delivers no more barriers, so nobody waits for it.
    pub fn on_end(&mut self, channel: usize) -> Decision {
        self.ended[channel] = true;
        self.blocked[channel] = false;
        let mut decision = Decision::default();
        if let Some(barrier) = self.pending {
            if self.complete() {
                decision.snapshot = Some(barrier);
                self.last_done = Some(barrier.checkpoint_id);
                self.reset();
            }
        }
        decision
    }

    fn aligns(&self, barrier: Barrier) -> bool {
        self.mode == CheckpointingMode::ExactlyOnce || barrier.kind == BarrierKind::Savepoint
    }

    fn complete(&self) -> bool {
        self.arrived
            .iter()
            .zip(&self.ended)
            .all(|(&arrived, &ended)| arrived || ended)
    }

    fn reset(&mut self) {
        self.pending = None;
        self.arrived.iter_mut().for_each(|a| *a = false);
        self.blocked.iter_mut().for_each(|b| *b = false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barrier(n: u64) -> Barrier {
        Barrier {
            checkpoint_id: CheckpointId(n),
            timestamp: 0,
            kind: BarrierKind::Checkpoint,
        }
    }

    #[test]
    fn exactly_once_blocks_until_every_channel_delivered() {
        let mut a = BarrierAligner::new(3, CheckpointingMode::ExactlyOnce);
        let d = a.on_barrier(0, barrier(1));
        assert!(d.block && d.snapshot.is_none());
        assert!(a.is_blocked(0) && !a.is_blocked(1));
        let d = a.on_barrier(2, barrier(1));
        assert!(d.block && d.snapshot.is_none());
        assert!(a.is_blocked(2));
        let d = a.on_barrier(1, barrier(1));
        assert!(!d.block);
        assert_eq!(d.snapshot, Some(barrier(1)));
        assert!((0..3).all(|i| !a.is_blocked(i)), "all released");
        assert_eq!(a.pending(), None);
    }

    #[test]
    fn at_least_once_never_blocks_and_snapshots_on_the_last() {
        let mut a = BarrierAligner::new(2, CheckpointingMode::AtLeastOnce);
        let d = a.on_barrier(1, barrier(4));
        assert_eq!(d, Decision::default());
        assert!(!a.is_blocked(1));
        let d = a.on_barrier(0, barrier(4));
        assert_eq!(d.snapshot, Some(barrier(4)));
    }

    #[test]
    fn savepoints_align_even_at_least_once() {
        let mut a = BarrierAligner::new(2, CheckpointingMode::AtLeastOnce);
        let sp = Barrier {
            kind: BarrierKind::Savepoint,
            ..barrier(2)
        };
        assert!(a.on_barrier(0, sp).block);
        assert_eq!(a.on_barrier(1, sp).snapshot, Some(sp));
    }

    #[test]
    fn a_single_channel_snapshots_at_once() {
        let mut a = BarrierAligner::new(1, CheckpointingMode::ExactlyOnce);
        let d = a.on_barrier(0, barrier(1));
        assert!(!d.block);
        assert_eq!(d.snapshot, Some(barrier(1)));
    }

    #[test]
    fn an_ended_channel_does_not_hold_alignment() {
        let mut a = BarrierAligner::new(2, CheckpointingMode::ExactlyOnce);
        assert!(a.on_barrier(0, barrier(1)).block);
        let d = a.on_end(1);
        assert_eq!(d.snapshot, Some(barrier(1)));
        assert!(!a.is_blocked(0));
        // Later barriers need only the live channel.
        assert_eq!(a.on_barrier(0, barrier(2)).snapshot, Some(barrier(2)));
    }

    #[test]
    fn a_newer_barrier_aborts_the_older_alignment() {
        let mut a = BarrierAligner::new(2, CheckpointingMode::ExactlyOnce);
        assert!(a.on_barrier(0, barrier(1)).block);
        let d = a.on_barrier(1, barrier(2));
        assert_eq!(d.aborted, Some(CheckpointId(1)));
        assert!(d.block && a.is_blocked(1) && !a.is_blocked(0));
        // The late barrier 1 on channel 0 is stale now.
        assert_eq!(a.on_barrier(0, barrier(1)), Decision::default());
        assert_eq!(a.on_barrier(0, barrier(2)).snapshot, Some(barrier(2)));
        // And a repeat of a completed checkpoint is ignored.
        assert_eq!(a.on_barrier(0, barrier(2)), Decision::default());
    }
}
