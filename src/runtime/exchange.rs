//! The sending side of a task's outgoing edges: forward, rebalance (round-robin whole batches)
//! and hash (each record to the subtask owning its key group).
//!
//! The hash exchange hashes each key once (Flink's hash, `state::keygroup`), groups row indices
//! per target subtask and sends one batch per target made with `Batch::take`: text stays in the
//! shared buffer, only spans and row indices are copied. Row-index buffers are reused across
//! batches, so nothing is allocated per record.
//!
//! Barriers and `End` are broadcast to every downstream channel of every edge (docs/architecture.md#barrier-flow).
//! Sends wait when a channel is full: that wait is the backpressure that slows the source.

use crate::pipeline::plan::Exchange;
use crate::record::{Batch, Column};
use crate::runtime::channel::Sender;
use crate::runtime::message::Message;
use crate::state::keygroup::{
    hash_bool, hash_float, hash_int, java_string_hash_code, murmur_hash, operator_index,
};

/// A downstream channel closed: its subtask failed or the job is being cancelled.
#[derive(Debug)]
pub struct Disconnected;

/// One outgoing edge of one subtask.
pub struct OutputEdge {
    senders: Vec<Sender>,
    route: Route,
}

enum Route {
    /// One sender (forward, or any exchange into a single subtask).
    Single,
    Rebalance {
        next: usize,
    },
    Hash {
        key_column: usize,
        max_parallelism: u32,
        /// Key group → target subtask, precomputed (Flink's range formula).
        target_of_group: Vec<u32>,
        /// Row indices per target, reused across batches.
        rows: Vec<Vec<u32>>,
    },
}

impl OutputEdge {
    /// The edge of upstream subtask `subtask` over `senders` (one per downstream subtask it
    /// sends to: just one for forward).
    pub fn new(
        exchange: &Exchange,
        senders: Vec<Sender>,
        subtask: u32,
        max_parallelism: u32,
    ) -> OutputEdge {
        let n = senders.len();
        let route = match exchange {
            _ if n == 1 => Route::Single,
            Exchange::Forward => Route::Single,
            Exchange::Rebalance => Route::Rebalance {
                next: subtask as usize % n,
            },
            Exchange::Hash { key_column, .. } => Route::Hash {
                key_column: *key_column,
                max_parallelism,
                target_of_group: (0..max_parallelism)
                    .map(|g| operator_index(g, n as u32, max_parallelism))
                    .collect(),
                rows: vec![Vec::new(); n],
            },
        };
        OutputEdge { senders, route }
    }

    async fn send(&mut self, batch: Batch) -> Result<(), Disconnected> {
        match &mut self.route {
            Route::Single => send(&self.senders[0], Message::Data(batch)).await,
            Route::Rebalance { next } => {
                let i = *next;
                *next = (i + 1) % self.senders.len();
                send(&self.senders[i], Message::Data(batch)).await
            }
            // A keyed reader reads a main output: side-output records (another schema) are
            // not its.
            Route::Hash { .. } if batch.is_side_output() => Ok(()),
            Route::Hash {
                key_column,
                max_parallelism,
                target_of_group,
                rows,
            } => {
                route_by_key_group(
                    batch.column(*key_column),
                    *max_parallelism,
                    target_of_group,
                    rows,
                );
                for (target, rows) in rows.iter_mut().enumerate() {
                    if rows.is_empty() {
                        continue;
                    }
                    let part = batch.take(rows);
                    rows.clear();
                    send(&self.senders[target], Message::Data(part)).await?;
                }
                Ok(())
            }
        }
    }

    async fn broadcast(&self, make: impl Fn() -> Message) -> Result<(), Disconnected> {
        for s in &self.senders {
            send(s, make()).await?;
        }
        Ok(())
    }
}

async fn send(sender: &Sender, message: Message) -> Result<(), Disconnected> {
    sender.send(message).await.map_err(|_| Disconnected)
}

/// Appends each row's index to `rows[target]`, target = the subtask owning the row's key group.
pub fn route_by_key_group(
    keys: &Column,
    max_parallelism: u32,
    target_of_group: &[u32],
    rows: &mut [Vec<u32>],
) {
    let mut put = |i: usize, flink_hash: u32| {
        let group = flink_hash % max_parallelism;
        rows[target_of_group[group as usize] as usize].push(i as u32);
    };
    match keys {
        Column::Str(c) => {
            // Only Flink's 32-bit hash is needed here (`hash_str` would also spread a 64-bit
            // table hash the exchange never uses).
            for (i, key) in c.iter().enumerate() {
                put(i, murmur_hash(java_string_hash_code(key)));
            }
        }
        Column::Int(v) => v
            .iter()
            .enumerate()
            .for_each(|(i, &k)| put(i, hash_int(k).flink)),
        Column::Float(v) => v
            .iter()
            .enumerate()
            .for_each(|(i, &k)| put(i, hash_float(k).flink)),
        Column::Bool(v) => v
            .iter()
            .enumerate()
            .for_each(|(i, &k)| put(i, hash_bool(k).flink)),
    }
}

/// Every outgoing edge of one subtask.
#[derive(Default)]
pub struct Outputs {
    edges: Vec<OutputEdge>,
}

impl Outputs {
    pub fn new(edges: Vec<OutputEdge>) -> Self {
        Outputs { edges }
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Sends each batch of `batches` (drained, the vector kept for reuse) along every edge.
    pub async fn emit(&mut self, batches: &mut Vec<Batch>) -> Result<(), Disconnected> {
        if self.edges.is_empty() {
            batches.clear(); // a sink's chain: nothing leaves it
            return Ok(());
        }
        for batch in batches.drain(..) {
            if batch.is_empty() {
                continue;
            }
            // Fan-out: every edge but the last gets a clone (columns share their text buffers).
            let (last, rest) = self
                .edges
                .split_last_mut()
                .expect("edges checked non-empty");
            for edge in rest {
                edge.send(batch.clone()).await?;
            }
            last.send(batch).await?;
        }
        Ok(())
    }

    /// Sends `make()` to every downstream channel (barriers, `End`).
    pub async fn broadcast(&self, make: impl Fn() -> Message + Copy) -> Result<(), Disconnected> {
        for edge in &self.edges {
            edge.broadcast(make).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StrColumnBuilder;
    use crate::state::keygroup::KeyGroupRange;

    #[test]
    fn rows_go_to_the_subtask_owning_their_key_group() {
        let mut b = StrColumnBuilder::default();
        for k in ["a", "b", "key-1", "hello"] {
            b.push(k.as_bytes());
        }
        let table: Vec<u32> = (0..128).map(|g| operator_index(g, 4, 128)).collect();
        let mut rows = vec![Vec::new(); 4];
        route_by_key_group(&Column::Str(b.finish()), 128, &table, &mut rows);
        // Flink's vectors: a -> 2, b -> 0, key-1 -> 1, hello -> 1.
        assert_eq!(rows, vec![vec![1], vec![2, 3], vec![0], vec![]]);
        let mut rows = vec![Vec::new(); 4];
        route_by_key_group(&Column::Int(vec![0, 1, 42]), 128, &table, &mut rows);
        assert_eq!(rows, vec![vec![2], vec![], vec![0, 1], vec![]]);
        for g in 0..128 {
            assert!(KeyGroupRange::for_subtask(table[g as usize], 4, 128).contains(g));
        }
    }
}
