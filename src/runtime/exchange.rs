//! The sending side of a task's outgoing edges: forward, rebalance (round-robin whole batches)
//! and hash (each record to the subtask owning its key group).
//!
//! The hash exchange hashes each key once (Flink's hash, `state::keygroup`), groups row indices
//! per target subtask and sends one batch per target made with `Batch::take`: text stays in the
//! shared buffer, only spans and row indices are copied. Row-index buffers are reused across
//! batches, so nothing is allocated per record. Each part of [`ROUTED_KEYS_MIN_ROWS`] rows or
//! more carries its rows' key groups and hash codes ([`RoutedKeys`]): the keyed operator it
//! goes to then does not hash the keys again (hashing twice was a tenth of the CPU of a word
//! count at parallelism 2). Smaller parts go without: for a few rows the allocation costs
//! more than hashing them again, and the memory budget's smallest part stays as it is.
//!
//! Barriers and `End` are broadcast to every downstream channel of every edge (docs/architecture.md#barrier-flow).
//! Sends wait when a channel is full: that wait is the backpressure that slows the source.

use crate::pipeline::plan::Exchange;
use crate::record::{Batch, Column, RoutedKey, RoutedKeys};
use crate::runtime::channel::Sender;
use crate::runtime::message::Message;
use crate::state::keygroup::{
    bool_hash_code, float_hash_code, int_hash_code, operator_index, str_hash_code, KeyGroups,
};

/// The fewest rows of a part that carries its routed keys (see the module's doc).
pub const ROUTED_KEYS_MIN_ROWS: usize = 64;

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
        router: Router,
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
                router: Router::new(n as u32, max_parallelism),
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
            Route::Hash { key_column, router } => {
                let column = *key_column;
                router.route(batch.column(column));
                for target in 0..router.rows.len() {
                    let Some(part) = router.part(&batch, target, column) else {
                        continue;
                    };
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

/// The hash exchange's routing of one upstream subtask: which rows of a batch go to which
/// downstream subtask, with their routed keys. Its buffers are reused across batches.
pub struct Router {
    groups: KeyGroups,
    /// Key group → target subtask, precomputed (Flink's range formula).
    target_of_group: Vec<u32>,
    /// Row indices per target.
    rows: Vec<Vec<u32>>,
    /// Every row's routed key, in row order (a part's are gathered from these).
    all: Vec<RoutedKey>,
}

impl Router {
    /// Routing to `targets` subtasks by key groups of `max_parallelism`.
    pub fn new(targets: u32, max_parallelism: u32) -> Router {
        let n = targets as usize;
        Router {
            groups: KeyGroups::new(max_parallelism),
            target_of_group: (0..max_parallelism)
                .map(|g| operator_index(g, targets, max_parallelism))
                .collect(),
            rows: vec![Vec::new(); n],
            all: Vec::new(),
        }
    }

    /// Appends each row's index to `rows[target]`, target = the subtask owning the row's key
    /// group, and keeps every row's routed key (key group and Java `hashCode`).
    pub fn route(&mut self, keys: &Column) {
        let groups = self.groups;
        let all = &mut self.all;
        all.clear();
        // First every row's routed key: no row waits for another's, so the CPU overlaps the
        // hashes; then the rows go to their targets (each append waits for the previous
        // append to the same target).
        match keys {
            Column::Str(c) => all.extend((0..c.len()).map(|i| groups.route(str_hash_code(c, i)))),
            Column::Int(v) => all.extend(v.iter().map(|&k| groups.route(int_hash_code(k)))),
            Column::Float(v) => all.extend(v.iter().map(|&k| groups.route(float_hash_code(k)))),
            Column::Bool(v) => all.extend(v.iter().map(|&k| groups.route(bool_hash_code(k)))),
        }
        for (i, key) in all.iter().enumerate() {
            let target = self.target_of_group[key.key_group as usize] as usize;
            self.rows[target].push(i as u32);
        }
    }

    /// The rows of `batch` routed to `target` (none: `None`), with their routed keys for key
    /// column `column` if there are [`ROUTED_KEYS_MIN_ROWS`] of them; clears the target's rows.
    fn part(&mut self, batch: &Batch, target: usize, column: usize) -> Option<Batch> {
        let rows = &mut self.rows[target];
        if rows.is_empty() {
            return None;
        }
        let mut part = batch.take(rows);
        if rows.len() >= ROUTED_KEYS_MIN_ROWS {
            part = part.with_routed_keys(RoutedKeys {
                column,
                max_parallelism: self.groups.max_parallelism(),
                keys: rows.iter().map(|&i| self.all[i as usize]).collect(),
            });
        }
        rows.clear();
        Some(part)
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
    use crate::runtime::channel::channel;
    use crate::state::keygroup::KeyGroupRange;

    fn key(key_group: u32, hash_code: i32) -> RoutedKey {
        RoutedKey {
            key_group,
            hash_code,
        }
    }

    #[test]
    fn rows_go_to_the_subtask_owning_their_key_group() {
        let mut b = StrColumnBuilder::default();
        for k in ["a", "b", "key-1", "hello"] {
            b.push(k.as_bytes());
        }
        let mut router = Router::new(4, 128);
        router.route(&Column::Str(b.finish()));
        // Flink's vectors: a -> 2, b -> 0, key-1 -> 1, hello -> 1.
        assert_eq!(router.rows, vec![vec![1], vec![2, 3], vec![0], vec![]]);
        // Each row's key group and hashCode (Flink's vectors too).
        let want = vec![
            key(81, 97),
            key(22, 98),
            key(54, 101943363),
            key(35, 99162322),
        ];
        assert_eq!(router.all, want);
        let mut router = Router::new(4, 128);
        router.route(&Column::Int(vec![0, 1, 42]));
        assert_eq!(router.rows, vec![vec![2], vec![], vec![0, 1], vec![]]);
        assert_eq!(router.all, vec![key(94, 0), key(86, 1), key(29, 42)]);
        for g in 0..128 {
            let owner = router.target_of_group[g as usize];
            assert!(KeyGroupRange::for_subtask(owner, 4, 128).contains(g));
        }
    }

    /// What one batch of int keys `0..n` sends to two subtasks: per part, its keys and its
    /// routed keys if it carries them.
    async fn parts_of(n: i64) -> Vec<(Vec<i64>, Option<Vec<RoutedKey>>)> {
        let ((tx0, mut rx0), (tx1, mut rx1)) = (channel(4), channel(4));
        let exchange = Exchange::Hash {
            key_field: "k".into(),
            key_column: 1,
        };
        let mut edge = OutputEdge::new(&exchange, vec![tx0, tx1], 0, 128);
        let batch = Batch::new(vec![
            Column::Bool(vec![true; n as usize]),
            Column::Int((0..n).collect()),
        ]);
        edge.send(batch).await.unwrap();
        drop(edge);
        let mut parts = Vec::new();
        for rx in [&mut rx0, &mut rx1] {
            while let Some(Message::Data(part)) = rx.recv().await {
                let Column::Int(ks) = part.column(1) else {
                    panic!("int keys")
                };
                let routed = part.routed_keys(1, 128).map(<[RoutedKey]>::to_vec);
                assert!(part.routed_keys(0, 128).is_none() && part.routed_keys(1, 256).is_none());
                parts.push((ks.clone(), routed));
            }
        }
        parts
    }

    #[tokio::test]
    async fn large_parts_carry_each_rows_routed_key_and_small_parts_none() {
        let groups = KeyGroups::new(128);
        let parts = parts_of(1000).await;
        assert_eq!(parts.len(), 2);
        for (ks, routed) in parts {
            assert!(ks.len() >= ROUTED_KEYS_MIN_ROWS);
            let want: Vec<RoutedKey> = ks.iter().map(|&k| groups.route(int_hash_code(k))).collect();
            assert_eq!(routed, Some(want));
        }
        let parts = parts_of(10).await;
        assert_eq!(parts.iter().map(|(ks, _)| ks.len()).sum::<usize>(), 10);
        assert!(
            parts.iter().all(|(_, routed)| routed.is_none()),
            "{parts:?}"
        );
    }
}
