//! The transactions of one exactly-once `kafka` sink subtask as a small state machine: what
//! each transactional id (`<prefix>-<subtask>-<slot>`) holds, and when it may be used again.
//! Plain data, no I/O: `kafka.rs` drives it and does the broker calls it asks for.
//!
//! ```text
//!  Free ──reserve──▶ Making ──made──▶ Ready ──open──▶ Open ──pre_commit(c)──▶ PreCommitted(c)
//!   ▲                                                                            │
//!   │                                                         complete(k ≥ c): commit it
//!   │                                                                            ▼
//!   └──── complete(k ≥ a) ◀── Committed { after: a } ◀──pre_commit(a)── Committed { after: None }
//! ```
//!
//! Why a committed slot waits: a restore commits the transactions its checkpoint lists
//! (`EndTxn` with their producer id and epoch). Kafka answers a commit that completed before
//! with success, but only while no newer producer initialised the id (then it answers
//! `PRODUCER_FENCED`, which also means "aborted by the broker after the transaction timeout"
//! and cannot be told apart). So a slot's id is initialised again only once a checkpoint
//! whose snapshot was taken after the commit has completed: no checkpoint a restore can pick
//! as the latest still lists the transaction, and every restore of a checkpoint that does
//! finds it at its epoch.

use std::fmt;

/// How many transactional ids (slots) one subtask may use: a steady run rotates through
/// three (open, pre-committed, committed and waiting); each checkpoint in a row that does not
/// complete holds one more. A restore aborts what is open under every id of the pool, so
/// the ids and producers of a job stay bounded by parallelism × pool, however often it
/// restarts (Flink's `FlinkKafkaProducer` keeps a pool of 5 the same way).
pub const ID_POOL: u32 = 8;

/// What one slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Not in use: its id may be initialised.
    Free,
    /// Its producer is being made (the id initialised) on a thread.
    Making,
    /// Its producer is made, no transaction open yet.
    Ready,
    /// Its transaction is open: records go there.
    Open,
    /// Flushed at the barrier of checkpoint `checkpoint`; committed when that checkpoint, or
    /// a later one, completes.
    PreCommitted { checkpoint: u64 },
    /// Committed; free once a checkpoint whose snapshot was taken after the commit (`after`,
    /// set at the next snapshot) completes.
    Committed { after: Option<u64> },
}

/// A transition the state machine does not allow: a bug in the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTransition {
    pub slot: u32,
    pub from: SlotState,
    pub to: &'static str,
}

impl fmt::Display for BadTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bug: transaction slot {} is {:?}, cannot become {}",
            self.slot, self.from, self.to
        )
    }
}

/// Every slot of the subtask, by number.
#[derive(Debug, Clone)]
pub struct Slots {
    states: Vec<SlotState>,
    /// Slots `0..pool` may be reserved; higher ones only hold what a restore of an older
    /// checkpoint committed, until they are free.
    pool: u32,
}

impl Slots {
    /// No slot used yet; new transactions take slots below `pool`.
    pub fn new(pool: u32) -> Slots {
        Slots {
            states: Vec::new(),
            pool,
        }
    }

    pub fn pool(&self) -> u32 {
        self.pool
    }

    /// One past the highest slot that holds anything (not free): what a checkpoint records.
    /// A free slot's transaction is committed and a checkpoint after it completed, so nothing
    /// is open under its id.
    pub fn held_len(&self) -> u32 {
        self.states
            .iter()
            .rposition(|s| *s != SlotState::Free)
            .map_or(0, |i| i as u32 + 1)
    }

    pub fn state(&self, slot: u32) -> SlotState {
        self.states
            .get(slot as usize)
            .copied()
            .unwrap_or(SlotState::Free)
    }

    fn set(
        &mut self,
        slot: u32,
        from: &[SlotState],
        to: SlotState,
        name: &'static str,
    ) -> Result<(), BadTransition> {
        let now = self.state(slot);
        if !from.contains(&now) {
            return Err(BadTransition {
                slot,
                from: now,
                to: name,
            });
        }
        if slot as usize >= self.states.len() {
            self.states.resize(slot as usize + 1, SlotState::Free);
        }
        self.states[slot as usize] = to;
        Ok(())
    }

    /// The lowest free slot of the pool, now `Making`; `None` when every slot of the pool
    /// holds a transaction.
    pub fn reserve(&mut self) -> Option<u32> {
        let slot = (0..self.pool).find(|s| self.state(*s) == SlotState::Free)?;
        self.set(slot, &[SlotState::Free], SlotState::Making, "Making")
            .ok()?;
        Some(slot)
    }

    /// The producer of `slot` is made (its id initialised).
    pub fn made(&mut self, slot: u32) -> Result<(), BadTransition> {
        self.set(
            slot,
            &[SlotState::Making, SlotState::Free],
            SlotState::Ready,
            "Ready",
        )
    }

    /// Making the producer of `slot` failed: it is free again.
    pub fn unmade(&mut self, slot: u32) -> Result<(), BadTransition> {
        self.set(slot, &[SlotState::Making], SlotState::Free, "Free")
    }

    /// A slot with a producer made or being made, for the next transaction: the lowest
    /// ready one, else the lowest being made.
    pub fn next(&self) -> Option<u32> {
        let find = |want: SlotState| self.states.iter().position(|s| *s == want);
        find(SlotState::Ready)
            .or_else(|| find(SlotState::Making))
            .map(|s| s as u32)
    }

    /// The transaction of `slot` (ready, or being made: the caller waits for it) is open.
    pub fn open(&mut self, slot: u32) -> Result<(), BadTransition> {
        if let Some(open) = self.current() {
            return Err(BadTransition {
                slot: open,
                from: SlotState::Open,
                to: "Open next to another open one",
            });
        }
        self.set(
            slot,
            &[SlotState::Ready, SlotState::Making],
            SlotState::Open,
            "Open",
        )
    }

    /// The slot whose transaction is open.
    pub fn current(&self) -> Option<u32> {
        self.states
            .iter()
            .position(|s| *s == SlotState::Open)
            .map(|s| s as u32)
    }

    /// At checkpoint `checkpoint`'s barrier: the open transaction (if any) is pre-committed
    /// for it, and slots committed since the last snapshot wait for this checkpoint.
    /// Returns the pre-committed slot.
    pub fn pre_commit(&mut self, checkpoint: u64) -> Option<u32> {
        for s in &mut self.states {
            if *s == (SlotState::Committed { after: None }) {
                *s = SlotState::Committed {
                    after: Some(checkpoint),
                };
            }
        }
        let open = self.current()?;
        self.states[open as usize] = SlotState::PreCommitted { checkpoint };
        Some(open)
    }

    /// Checkpoint `checkpoint` completed: the slots pre-committed for it or an earlier one,
    /// oldest checkpoint first, to commit now (they become `Committed`); slots committed
    /// before a snapshot this checkpoint covers are free again.
    pub fn complete(&mut self, checkpoint: u64) -> Vec<u32> {
        let mut due: Vec<(u64, u32)> = Vec::new();
        for (i, s) in self.states.iter_mut().enumerate() {
            match *s {
                SlotState::Committed { after: Some(a) } if a <= checkpoint => {
                    *s = SlotState::Free;
                }
                SlotState::PreCommitted { checkpoint: c } if c <= checkpoint => {
                    due.push((c, i as u32));
                    *s = SlotState::Committed { after: None };
                }
                _ => {}
            }
        }
        due.sort();
        due.into_iter().map(|(_, slot)| slot).collect()
    }

    /// The pre-committed slots with their checkpoints, oldest first: what a snapshot lists.
    pub fn pending(&self) -> Vec<(u32, u64)> {
        let mut p: Vec<(u32, u64)> = self
            .states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                SlotState::PreCommitted { checkpoint } => Some((i as u32, *checkpoint)),
                _ => None,
            })
            .collect();
        p.sort_by_key(|(slot, c)| (*c, *slot));
        p
    }

    /// A restore committed the transaction of `slot` (listed by the checkpoint): it waits
    /// like one committed in this run.
    pub fn committed_at_restore(&mut self, slot: u32) -> Result<(), BadTransition> {
        self.set(
            slot,
            &[SlotState::Free],
            SlotState::Committed { after: None },
            "Committed",
        )
    }

    /// Slots whose producers exist now (ready, open or pre-committed): what a stop, an end
    /// or a drop must close.
    pub fn in_use(&self) -> impl Iterator<Item = (u32, SlotState)> + '_ {
        self.states.iter().enumerate().filter_map(|(i, s)| {
            matches!(
                s,
                SlotState::Ready | SlotState::Open | SlotState::PreCommitted { .. }
            )
            .then_some((i as u32, *s))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two checkpoints of a steady run: slots rotate through three ids, and none is made
    /// again before a checkpoint taken after its commit completes.
    #[test]
    fn a_committed_slot_is_reused_only_after_a_later_checkpoint_completes() {
        let mut s = Slots::new(ID_POOL);
        let first = s.reserve().unwrap();
        s.made(first).unwrap();
        s.open(s.next().unwrap()).unwrap();
        assert_eq!(s.current(), Some(0));
        // Checkpoint 1: slot 0 pre-committed; the next transaction's producer in slot 1.
        assert_eq!(s.pre_commit(1), Some(0));
        assert_eq!(s.reserve(), Some(1));
        assert_eq!(s.pending(), vec![(0, 1)]);
        s.made(1).unwrap();
        s.open(1).unwrap();
        // Checkpoint 1 completes: slot 0 is committed, not free.
        assert_eq!(s.complete(1), vec![0]);
        assert_eq!(s.state(0), SlotState::Committed { after: None });
        assert_eq!(s.reserve(), Some(2), "slot 0 still waits");
        // Checkpoint 2's snapshot is taken after slot 0's commit; its completion frees it.
        assert_eq!(s.pre_commit(2), Some(1));
        assert_eq!(s.state(0), SlotState::Committed { after: Some(2) });
        s.made(2).unwrap();
        s.open(2).unwrap();
        assert_eq!(s.complete(2), vec![1]);
        assert_eq!(s.state(0), SlotState::Free);
        assert_eq!(s.reserve(), Some(0));
        assert_eq!(s.held_len(), 3);
    }

    #[test]
    fn a_late_completion_commits_every_older_pre_commit_in_order() {
        let mut s = Slots::new(ID_POOL);
        for c in 1..=3 {
            let slot = s.reserve().unwrap();
            s.made(slot).unwrap();
            s.open(slot).unwrap();
            s.pre_commit(c);
        }
        assert_eq!(s.pending(), vec![(0, 1), (1, 2), (2, 3)]);
        assert_eq!(s.complete(2), vec![0, 1]);
        assert_eq!(s.pending(), vec![(2, 3)]);
        // An aborted checkpoint changes nothing: 3 waits for the next completion.
        assert_eq!(s.complete(3), vec![2]);
    }

    #[test]
    fn slots_committed_at_a_restore_wait_too_and_wrong_moves_are_refused() {
        let mut s = Slots::new(ID_POOL);
        s.committed_at_restore(1).unwrap();
        assert_eq!(s.reserve(), Some(0));
        assert_eq!(s.reserve(), Some(2));
        assert!(s.committed_at_restore(0).is_err());
        s.made(0).unwrap();
        s.open(0).unwrap();
        let err = s.open(2).unwrap_err();
        assert_eq!(err.slot, 0);
        assert!(err.to_string().starts_with("bug: "), "{err}");
        s.pre_commit(5);
        assert_eq!(s.state(1), SlotState::Committed { after: Some(5) });
        assert_eq!(s.complete(5), vec![0]);
        assert_eq!(s.state(1), SlotState::Free);
    }

    /// The pool bounds the slots: when every one holds a transaction there is none to
    /// reserve, and a slot above it (committed by a restore of an older checkpoint) is
    /// never reserved once free.
    #[test]
    fn slots_come_from_the_pool_only() {
        let mut s = Slots::new(2);
        s.committed_at_restore(40).unwrap();
        assert_eq!(s.held_len(), 41);
        for c in 1..=2 {
            let slot = s.reserve().unwrap();
            s.made(slot).unwrap();
            s.open(slot).unwrap();
            s.pre_commit(c);
        }
        assert_eq!(
            s.reserve(),
            None,
            "both slots hold pre-committed transactions"
        );
        assert_eq!(s.complete(2), vec![0, 1]);
        assert_eq!(s.pre_commit(3), None);
        s.complete(3);
        assert_eq!(s.state(40), SlotState::Free);
        assert_eq!(s.held_len(), 0);
        assert_eq!(s.reserve(), Some(0));
        assert_eq!(s.reserve(), Some(1));
        assert_eq!(s.reserve(), None);
    }
}
