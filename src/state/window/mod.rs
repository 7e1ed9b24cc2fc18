//! Window contents and their timers as keyed state: per key group, the open windows of its
//! keys with one accumulator per aggregate, behind the interface checkpoints snapshot.
//!
//! Two layouts, by window kind:
//! - aligned windows (tumbling, sliding): all keys share a window's bounds, so a key group
//!   keeps one *pane* per window (`[start, end)`) with a hash table of its keys. A window's
//!   timer is its pane's: it fires when time reaches `end - 1` (Flink's
//!   `TimeWindow.maxTimestamp()`), every key at once, and is dropped at `end - 1 + lateness`.
//!   No timer per key: a record costs one table lookup;
//! - session windows: per key its sessions, merged as records arrive, and per key group the
//!   keys ordered by when their next session is due.
//!
//! Snapshots have a short synchronous part: a pane's table and a group's sessions sit behind
//! an [`Arc`], written through [`Arc::make_mut`], so a snapshot clones the `Arc`s and the
//! first write to a pane after it copies that pane. Deltas (incremental checkpoints) are
//! whole key groups: each group written since the previous snapshot, as it is now.
//!
//! It must not know about tasks, channels or files, nor about record types beyond the bytes
//! of a key: the operator hashes keys (once) and turns results into columns.

pub mod acc;
pub mod codec;

use crate::state::keyed::DeltaBase;
use crate::state::keygroup::KeyGroupRange;
use acc::{Acc, AggKind};
use codec::{Reader, Writer};
use hashbrown::HashTable;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Version of the group run format [`WindowSnapshot::encode_group`] writes.
pub const WINDOW_STATE_VERSION: u32 = 1;

/// Keys of at most this many bytes are kept inside their table entry.
const INLINE_KEY: usize = 8;

/// What a result is handed to: key, window start, window end, one accumulator per aggregate.
pub type Emit<'a> = dyn FnMut(&[u8], i64, i64, &[Acc]) + 'a;

/// Why window state bytes could not be read back.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WindowStateError {
    #[error("key group {key_group}: truncated or malformed window state")]
    Malformed { key_group: u32 },
    #[error(
        "the window's aggregates changed since the snapshot: it held [{then}], the pipeline \
         now asks for [{now}]; give the operator another `id` (its old state is then dropped \
         with -n) or restore without its state"
    )]
    Aggregates { then: String, now: String },
    #[error("bug: key group {key_group} is not one of this subtask's {range}")]
    WrongGroup {
        key_group: u32,
        range: KeyGroupRange,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: u64,
    key: [u8; INLINE_KEY],
    key_len: u32,
    /// Index of its first accumulator in the table's `accs`.
    acc: u32,
}

/// The keys of one window of one key group.
#[derive(Debug, Clone, Default)]
struct PaneTable {
    entries: HashTable<Entry>,
    /// Bytes of keys longer than [`INLINE_KEY`].
    arena: Vec<u8>,
    /// Accumulators, one run of `aggs.len()` per entry.
    accs: Vec<Acc>,
}

impl PaneTable {
    fn key<'a>(&'a self, e: &'a Entry) -> &'a [u8] {
        let len = e.key_len as usize;
        if len <= INLINE_KEY {
            &e.key[..len]
        } else {
            let off = u32::from_le_bytes([e.key[0], e.key[1], e.key[2], e.key[3]]) as usize;
            self.arena.get(off..off + len).unwrap_or(&[])
        }
    }

    /// The index of the accumulators of `key` (hash `h`), and whether they were created
    /// just now from `init` (the key was new).
    #[inline]
    fn upsert(&mut self, h: u64, key: &[u8], init: impl Iterator<Item = Acc>) -> (usize, bool) {
        let PaneTable {
            entries,
            arena,
            accs,
        } = self;
        let found = entries.find(h, |e| {
            e.hash == h
                && e.key_len as usize == key.len()
                && if key.len() <= INLINE_KEY {
                    &e.key[..key.len()] == key
                } else {
                    let off = u32::from_le_bytes([e.key[0], e.key[1], e.key[2], e.key[3]]) as usize;
                    arena.get(off..off + key.len()) == Some(key)
                }
        });
        if let Some(e) = found {
            return (e.acc as usize, false);
        }
        let mut stored = [0u8; INLINE_KEY];
        if key.len() <= INLINE_KEY {
            stored[..key.len()].copy_from_slice(key);
        } else {
            stored[..4].copy_from_slice(&(arena.len() as u32).to_le_bytes());
            arena.extend_from_slice(key);
        }
        let at = accs.len();
        accs.extend(init);
        entries.insert_unique(
            h,
            Entry {
                hash: h,
                key: stored,
                key_len: key.len() as u32,
                acc: at as u32,
            },
            |e| e.hash,
        );
        (at, true)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// One aligned window of one key group.
#[derive(Debug, Clone)]
struct Pane {
    start: i64,
    end: i64,
    fired: bool,
    table: Arc<PaneTable>,
}

/// One session of one key.
#[derive(Debug, Clone, PartialEq)]
struct Session {
    start: i64,
    end: i64,
    fired: bool,
    accs: Vec<Acc>,
}

#[derive(Debug, Clone)]
struct KeySessions {
    /// When its next session is due (to fire, or to be dropped); its entry in `timers`.
    due: i64,
    sessions: Vec<Session>,
}

/// The sessions of one key group.
#[derive(Debug, Clone, Default)]
struct SessionTable {
    keys: hashbrown::HashMap<Box<[u8]>, KeySessions>,
    timers: BTreeSet<(i64, Box<[u8]>)>,
}

/// The windows of one key group.
#[derive(Debug, Clone, Default)]
struct Group {
    /// Aligned windows, by start.
    panes: Vec<Pane>,
    sessions: Arc<SessionTable>,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.panes.is_empty() && self.sessions.keys.is_empty()
    }

    /// The earliest time something of this group is due.
    fn due(&self, lateness: i64) -> i64 {
        let panes = self
            .panes
            .iter()
            .map(|p| pane_due(p.end, p.fired, lateness))
            .min()
            .unwrap_or(i64::MAX);
        let sessions = self.sessions.timers.first().map_or(i64::MAX, |(t, _)| *t);
        panes.min(sessions)
    }
}

/// When a window is next due: its firing (`end - 1`), or once fired, its cleanup.
fn pane_due(end: i64, fired: bool, lateness: i64) -> i64 {
    let max_ts = end.saturating_sub(1);
    if fired {
        max_ts.saturating_add(lateness)
    } else {
        max_ts
    }
}

/// What adding a record to a session did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAdd {
    /// Its session (after merging) was already past its allowed lateness: nothing changed.
    Late,
    Added,
}

/// Per-subtask window state, partitioned by key group.
#[derive(Debug, Clone)]
pub struct WindowStore {
    range: KeyGroupRange,
    max_parallelism: u32,
    aggs: Arc<[AggKind]>,
    lateness: i64,
    groups: Vec<Group>,
    /// The earliest time anything is due (`i64::MAX`: nothing).
    next_due: i64,
    /// Groups written since the last snapshot (kept only while `tracking`).
    dirty: Vec<bool>,
    tracking: bool,
    base: DeltaBase,
    next_sequence: u64,
}

impl WindowStore {
    /// Empty state for the key groups in `range`, with `aggs` per key and window and
    /// `lateness` ms of allowed lateness.
    pub fn new(
        range: KeyGroupRange,
        max_parallelism: u32,
        aggs: &[AggKind],
        lateness: i64,
    ) -> Self {
        WindowStore {
            range,
            max_parallelism,
            aggs: aggs.into(),
            lateness,
            groups: vec![Group::default(); range.len() as usize],
            next_due: i64::MAX,
            dirty: vec![false; range.len() as usize],
            tracking: false,
            base: DeltaBase::Empty,
            next_sequence: 0,
        }
    }

    pub fn range(&self) -> KeyGroupRange {
        self.range
    }

    pub fn max_parallelism(&self) -> u32 {
        self.max_parallelism
    }

    pub fn aggs(&self) -> &[AggKind] {
        &self.aggs
    }

    /// The earliest time (event or processing, as the operator keeps it) something is due.
    pub fn next_due(&self) -> Option<i64> {
        (self.next_due != i64::MAX).then_some(self.next_due)
    }

    /// Open windows (panes and sessions) and the (key, window) entries in them.
    pub fn size(&self) -> (usize, usize) {
        let mut windows = 0;
        let mut entries = 0;
        for g in &self.groups {
            windows += g.panes.len();
            entries += g.panes.iter().map(|p| p.table.len()).sum::<usize>();
            for k in g.sessions.keys.values() {
                windows += k.sessions.len();
                entries += k.sessions.len();
            }
        }
        (windows, entries)
    }

    #[inline]
    fn slot(&self, key_group: u32) -> Option<usize> {
        self.range
            .contains(key_group)
            .then(|| (key_group - self.range.start) as usize)
    }

    #[inline]
    fn touch(&mut self, idx: usize) {
        if self.tracking {
            self.dirty[idx] = true;
        }
    }

    /// Adds one record of `key` (in `key_group`, table hash `hash`) to the aligned window
    /// `[start, end)`: `vals` are the aggregates' input values, `ts` its timestamp, `time`
    /// the current time. Returns whether the window has fired (a late record within the
    /// allowed lateness, or the first record of a window whose end has passed: the caller
    /// emits the key's result with [`WindowStore::emit_key`]).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn add_aligned(
        &mut self,
        key_group: u32,
        hash: u64,
        key: &[u8],
        start: i64,
        end: i64,
        vals: &[crate::record::Value<'_>],
        ts: i64,
        time: i64,
    ) -> Result<bool, WindowStateError> {
        let idx = self.slot(key_group).ok_or(WindowStateError::WrongGroup {
            key_group,
            range: self.range,
        })?;
        self.touch(idx);
        let aggs = &self.aggs;
        let group = &mut self.groups[idx];
        let pos = match group.panes.iter().position(|p| p.start == start) {
            Some(p) => p,
            None => {
                let at = group.panes.partition_point(|p| p.start < start);
                // A window whose end has passed fires with its first record.
                let fired = end.saturating_sub(1) <= time;
                group.panes.insert(
                    at,
                    Pane {
                        start,
                        end,
                        fired,
                        table: Arc::default(),
                    },
                );
                self.next_due = self.next_due.min(pane_due(end, fired, self.lateness));
                at
            }
        };
        let pane = &mut group.panes[pos];
        let table = Arc::make_mut(&mut pane.table);
        let k = aggs.len();
        let init = aggs
            .iter()
            .zip(vals)
            .map(|(&kind, &v)| Acc::init(kind, v, ts));
        let (at, created) = table.upsert(hash, key, init);
        if !created {
            for (acc, (&kind, &v)) in table.accs[at..at + k].iter_mut().zip(aggs.iter().zip(vals)) {
                acc.apply(kind, v, ts);
            }
        }
        Ok(pane.fired)
    }

    /// Emits the current result of `key` in the aligned window starting at `start`.
    pub fn emit_key(&self, key_group: u32, hash: u64, key: &[u8], start: i64, emit: &mut Emit<'_>) {
        let Some(idx) = self.slot(key_group) else {
            return;
        };
        let k = self.aggs.len();
        for p in self.groups[idx].panes.iter().filter(|p| p.start == start) {
            let t = &p.table;
            if let Some(e) = t.entries.find(hash, |e| e.hash == hash && t.key(e) == key) {
                let a = e.acc as usize;
                emit(key, p.start, p.end, &t.accs[a..a + k]);
            }
        }
    }

    /// Adds one record of `key` at `ts` to its sessions with `gap`, merging the sessions it
    /// touches (Flink's `intersects`: `[ts, ts + gap)` meets or overlaps them). `time` is the
    /// current event time: a merged session whose cleanup time has passed takes nothing (the
    /// record is late); one whose end has passed fires at once into `emit` (a late record
    /// within the allowed lateness).
    #[allow(clippy::too_many_arguments)]
    pub fn add_session(
        &mut self,
        key_group: u32,
        key: &[u8],
        ts: i64,
        gap: i64,
        vals: &[crate::record::Value<'_>],
        time: i64,
        emit: &mut Emit<'_>,
    ) -> Result<SessionAdd, WindowStateError> {
        let idx = self.slot(key_group).ok_or(WindowStateError::WrongGroup {
            key_group,
            range: self.range,
        })?;
        let (lateness, aggs) = (self.lateness, self.aggs.clone());
        let mut start = ts;
        let mut end = ts.saturating_add(gap);
        let existing = self.groups[idx].sessions.keys.get(key);
        let touching = |s: &Session, start: i64, end: i64| s.start <= end && s.end >= start;
        if let Some(ks) = existing {
            // Sessions of a key never touch each other, so one pass finds the merged bounds.
            for s in ks
                .sessions
                .iter()
                .filter(|s| touching(s, ts, ts.saturating_add(gap)))
            {
                start = start.min(s.start);
                end = end.max(s.end);
            }
        }
        if pane_due(end, true, lateness) <= time {
            return Ok(SessionAdd::Late);
        }
        self.touch(idx);
        let table = Arc::make_mut(&mut self.groups[idx].sessions);
        let mut accs: Vec<Acc> = aggs
            .iter()
            .zip(vals)
            .map(|(&kind, &v)| Acc::init(kind, v, ts))
            .collect();
        let entry = table.keys.entry(key.into()).or_insert_with(|| KeySessions {
            due: i64::MAX,
            sessions: Vec::new(),
        });
        let old_due = entry.due;
        let mut kept = Vec::with_capacity(entry.sessions.len());
        for s in entry.sessions.drain(..) {
            if touching(&s, start, end) {
                for ((a, &kind), b) in accs.iter_mut().zip(aggs.iter()).zip(s.accs) {
                    a.merge(kind, b);
                }
            } else {
                kept.push(s);
            }
        }
        let fired = end.saturating_sub(1) <= time;
        if fired {
            emit(key, start, end, &accs);
        }
        let at = kept.partition_point(|s| s.start < start);
        kept.insert(
            at,
            Session {
                start,
                end,
                fired,
                accs,
            },
        );
        entry.sessions = kept;
        let new_due = entry
            .sessions
            .iter()
            .map(|s| pane_due(s.end, s.fired, lateness))
            .min()
            .unwrap_or(i64::MAX);
        entry.due = new_due;
        if old_due != new_due {
            if old_due != i64::MAX {
                table.timers.remove(&(old_due, Box::from(key)));
            }
            table.timers.insert((new_due, key.into()));
        }
        self.next_due = self.next_due.min(new_due);
        Ok(SessionAdd::Added)
    }

    /// Time reached `time`: every window whose end has passed (`end - 1 <= time`) and has
    /// not fired emits each of its keys' results into `emit`; every window whose allowed
    /// lateness has passed too is dropped. Groups in order, windows by start.
    pub fn fire(&mut self, time: i64, emit: &mut Emit<'_>) {
        if time < self.next_due {
            return;
        }
        let (lateness, k) = (self.lateness, self.aggs.len());
        let mut next = i64::MAX;
        for idx in 0..self.groups.len() {
            if self.groups[idx].due(lateness) > time {
                next = next.min(self.groups[idx].due(lateness));
                continue;
            }
            self.touch(idx);
            let group = &mut self.groups[idx];
            group.panes.retain_mut(|p| {
                if !p.fired && p.end.saturating_sub(1) <= time {
                    let t = &p.table;
                    for e in t.entries.iter() {
                        let a = e.acc as usize;
                        emit(t.key(e), p.start, p.end, &t.accs[a..a + k]);
                    }
                    p.fired = true;
                }
                pane_due(p.end, true, lateness) > time
            });
            fire_sessions(&mut group.sessions, time, lateness, emit);
            next = next.min(group.due(lateness));
        }
        self.next_due = next;
    }

    /// A consistent copy of the state for a checkpoint: `Arc` clones of every pane and
    /// session table (nothing proportional to the keys), and the groups written since the
    /// previous snapshot.
    pub fn snapshot(&mut self) -> WindowSnapshot {
        let changed = if self.tracking {
            Some(std::mem::replace(
                &mut self.dirty,
                vec![false; self.groups.len()],
            ))
        } else {
            None
        };
        let sequence = self.next_sequence;
        let snap = WindowSnapshot {
            range: self.range,
            max_parallelism: self.max_parallelism,
            aggs: self.aggs.clone(),
            groups: self.groups.clone(),
            changed,
            sequence,
            delta_base: self.base,
        };
        self.next_sequence += 1;
        self.base = DeltaBase::Snapshot(sequence);
        self.tracking = true;
        snap
    }

    /// Restore: replaces the contents of `key_group` with a run written by
    /// [`WindowSnapshot::encode_group`]. Runs of one group apply in order, so the last one
    /// (the newest delta) wins. Call [`WindowStore::finish_restore`] after the last.
    pub fn restore_group(&mut self, key_group: u32, run: &[u8]) -> Result<(), WindowStateError> {
        let idx = self.slot(key_group).ok_or(WindowStateError::WrongGroup {
            key_group,
            range: self.range,
        })?;
        let group = decode_group(run, &self.aggs, key_group, self.lateness)?;
        self.groups[idx] = group;
        Ok(())
    }

    /// Ends a restore: what was restored is the base of the next delta.
    pub fn finish_restore(&mut self) {
        self.next_due = self
            .groups
            .iter()
            .map(|g| g.due(self.lateness))
            .min()
            .unwrap_or(i64::MAX);
        self.dirty = vec![false; self.groups.len()];
        self.tracking = true;
        self.base = DeltaBase::Restored;
        self.next_sequence = 0;
    }
}

/// Fires and drops the sessions of one group that are due at `time`.
fn fire_sessions(table: &mut Arc<SessionTable>, time: i64, lateness: i64, emit: &mut Emit<'_>) {
    if table.timers.first().is_none_or(|(t, _)| *t > time) {
        return;
    }
    let table = Arc::make_mut(table);
    while let Some((due, key)) = table.timers.first().cloned() {
        if due > time {
            break;
        }
        table.timers.pop_first();
        let Some(ks) = table.keys.get_mut(&key) else {
            continue;
        };
        ks.sessions.retain_mut(|s| {
            if !s.fired && s.end.saturating_sub(1) <= time {
                emit(&key, s.start, s.end, &s.accs);
                s.fired = true;
            }
            pane_due(s.end, true, lateness) > time
        });
        if ks.sessions.is_empty() {
            table.keys.remove(&key);
        } else {
            let next = ks
                .sessions
                .iter()
                .map(|s| pane_due(s.end, s.fired, lateness))
                .min()
                .unwrap_or(i64::MAX);
            ks.due = next;
            table.timers.insert((next, key));
        }
    }
}

/// A frozen copy of a [`WindowStore`], for the asynchronous part of a checkpoint.
#[derive(Debug, Clone)]
pub struct WindowSnapshot {
    pub range: KeyGroupRange,
    pub max_parallelism: u32,
    aggs: Arc<[AggKind]>,
    groups: Vec<Group>,
    /// Groups written since the snapshot before; `None`: all (the first after a fresh start).
    changed: Option<Vec<bool>>,
    sequence: u64,
    delta_base: DeltaBase,
}

impl WindowSnapshot {
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    pub fn delta_base(&self) -> DeltaBase {
        self.delta_base
    }

    /// Each key group with windows, as a run: `(key group, bytes, entries)`.
    pub fn full(&self) -> impl Iterator<Item = (u32, Vec<u8>, u64)> + '_ {
        self.range
            .iter()
            .zip(&self.groups)
            .filter(|(_, g)| !g.is_empty())
            .map(|(kg, g)| {
                let (bytes, n) = self.encode_group(g);
                (kg, bytes, n)
            })
    }

    /// Each key group written since the previous snapshot, as it is now (an empty run for a
    /// group that became empty: it replaces what the base held).
    pub fn delta(&self) -> impl Iterator<Item = (u32, Vec<u8>, u64)> + '_ {
        self.range
            .iter()
            .zip(&self.groups)
            .enumerate()
            .filter(|(i, (_, g))| match &self.changed {
                None => !g.is_empty(),
                Some(c) => c[*i],
            })
            .map(|(_, (kg, g))| {
                let (bytes, n) = self.encode_group(g);
                (kg, bytes, n)
            })
    }

    /// How many groups a delta would hold (to choose between a delta and a full write).
    pub fn delta_len(&self) -> usize {
        match &self.changed {
            None => self.groups.iter().filter(|g| !g.is_empty()).count(),
            Some(c) => c.iter().filter(|d| **d).count(),
        }
    }

    /// One group's run: the aggregate codes, then its panes, then its sessions.
    fn encode_group(&self, g: &Group) -> (Vec<u8>, u64) {
        let k = self.aggs.len();
        let mut w = Writer::with_capacity(64);
        w.varint(k as u64);
        for a in self.aggs.iter() {
            w.u8(a.code());
        }
        let mut entries = 0u64;
        w.varint(g.panes.len() as u64);
        for p in &g.panes {
            w.zigzag(p.start);
            w.zigzag(p.end);
            w.u8(p.fired as u8);
            let t = &p.table;
            w.varint(t.entries.len() as u64);
            for e in t.entries.iter() {
                w.bytes(t.key(e));
                w.u64(e.hash);
                let a = e.acc as usize;
                for acc in &t.accs[a..a + k] {
                    acc.write(&mut w);
                }
                entries += 1;
            }
        }
        w.varint(g.sessions.keys.len() as u64);
        for (key, ks) in &g.sessions.keys {
            w.bytes(key);
            w.varint(ks.sessions.len() as u64);
            for s in &ks.sessions {
                w.zigzag(s.start);
                w.zigzag(s.end);
                w.u8(s.fired as u8);
                for acc in &s.accs {
                    acc.write(&mut w);
                }
                entries += 1;
            }
        }
        (w.finish(), entries)
    }
}

/// The name of the window state's run format.
pub const WINDOW_FORMAT: &str = "window";

impl crate::state::KeyedStateSnapshot for WindowSnapshot {
    fn format(&self) -> crate::state::StateFormat {
        crate::state::StateFormat::new(WINDOW_FORMAT, WINDOW_STATE_VERSION)
    }

    fn range(&self) -> KeyGroupRange {
        self.range
    }

    fn sequence(&self) -> u64 {
        self.sequence
    }

    fn delta_base(&self) -> DeltaBase {
        self.delta_base
    }

    fn encode_full(&self) -> crate::state::EncodedBlob {
        crate::state::snapshot::encode_runs(self.full())
    }

    fn encode_delta(&self) -> crate::state::EncodedBlob {
        crate::state::snapshot::encode_runs(self.delta())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl WindowStore {
    /// The state of a subtask from restored runs of the window format.
    pub fn restore(&mut self, runs: &crate::state::KeyedRuns) -> Result<(), String> {
        runs.format
            .check(WINDOW_FORMAT, WINDOW_STATE_VERSION)
            .map_err(|e| e.to_string())?;
        if runs.range != self.range || runs.max_parallelism != self.max_parallelism {
            return Err(format!(
                "bug: the restore handed key groups {} of max parallelism {} to the subtask owning {} of {}",
                runs.range, runs.max_parallelism, self.range, self.max_parallelism
            ));
        }
        for (g, run) in &runs.runs {
            self.restore_group(*g, run).map_err(|e| e.to_string())?;
        }
        self.finish_restore();
        Ok(())
    }
}

fn names(aggs: &[AggKind]) -> String {
    aggs.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
}

/// A group back from its run, checking the aggregates are the store's.
fn decode_group(
    run: &[u8],
    aggs: &[AggKind],
    key_group: u32,
    lateness: i64,
) -> Result<Group, WindowStateError> {
    let bad = WindowStateError::Malformed { key_group };
    let mut r = Reader::new(run);
    let k = r.count().ok_or(bad.clone())?;
    let mut then = Vec::with_capacity(k);
    for _ in 0..k {
        then.push(r.u8().and_then(AggKind::from_code).ok_or(bad.clone())?);
    }
    if then != aggs {
        return Err(WindowStateError::Aggregates {
            then: names(&then),
            now: names(aggs),
        });
    }
    let group = read_group(&mut r, aggs, lateness).ok_or(bad.clone())?;
    if !r.is_empty() {
        return Err(bad);
    }
    Ok(group)
}

fn read_accs(r: &mut Reader<'_>, aggs: &[AggKind]) -> Option<Vec<Acc>> {
    aggs.iter().map(|&kind| Acc::read(kind, r)).collect()
}

fn read_group(r: &mut Reader<'_>, aggs: &[AggKind], lateness: i64) -> Option<Group> {
    let mut group = Group::default();
    for _ in 0..r.count()? {
        let (start, end, fired) = (r.zigzag()?, r.zigzag()?, r.u8()? != 0);
        let mut table = PaneTable::default();
        for _ in 0..r.count()? {
            let key = r.bytes()?;
            let hash = r.u64()?;
            let accs = read_accs(r, aggs)?;
            let (_, created) = table.upsert(hash, key, accs.into_iter());
            // A key listed twice in one window is not something floe writes.
            if !created {
                return None;
            }
        }
        group.panes.push(Pane {
            start,
            end,
            fired,
            table: Arc::new(table),
        });
    }
    group.panes.sort_by_key(|p| p.start);
    let mut sessions = SessionTable::default();
    for _ in 0..r.count()? {
        let key: Box<[u8]> = r.bytes()?.into();
        let mut list = Vec::new();
        for _ in 0..r.count()? {
            let (start, end, fired) = (r.zigzag()?, r.zigzag()?, r.u8()? != 0);
            list.push(Session {
                start,
                end,
                fired,
                accs: read_accs(r, aggs)?,
            });
        }
        list.sort_by_key(|s| s.start);
        let due = list
            .iter()
            .map(|s| pane_due(s.end, s.fired, lateness))
            .min()?;
        sessions.timers.insert((due, key.clone()));
        if sessions
            .keys
            .insert(
                key,
                KeySessions {
                    due,
                    sessions: list,
                },
            )
            .is_some()
        {
            return None;
        }
    }
    group.sessions = Arc::new(sessions);
    Some(group)
}

#[cfg(test)]
mod tests;
