//! Keyed state: per operator subtask, partitioned by key group, behind the interface that
//! checkpoints snapshot. Knows nothing of tasks or channels.
//!
//! - `keygroup`: the stable key hash, key groups and their assignment to subtasks (Flink's).
//! - `keyed`: the keyed value store that aggregates keep their per-key values in.
//! - `window`: window contents and timers (panes, sessions, accumulators) by key group.

pub mod keyed;
pub mod keygroup;
pub mod snapshot;
pub mod window;
