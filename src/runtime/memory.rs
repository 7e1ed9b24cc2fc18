//! What a plan's channels cost before a record moves: one channel per (upstream subtask,
//! downstream subtask) pair of every edge that is not forward, each [`bytes_per_channel`],
//! plus each hash edge's routing table per upstream subtask. Pure arithmetic over the plan,
//! so that a plan too big for the machine is refused with these numbers instead of being
//! killed by the kernel halfway through wiring it.

use crate::pipeline::plan::{Exchange, Plan};
use crate::runtime::channel::bytes_per_channel;

/// One edge between two tasks, as wired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeCost {
    /// `"split" x4 to "count" x4 by hash(word)`.
    pub name: String,
    pub channels: u64,
    pub bytes: u64,
}

/// The memory a plan's channels take, edge by edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub channels: u64,
    pub bytes: u64,
    /// Bytes of one channel with its slots.
    pub per_channel: u64,
    /// The edge with the most channels, if any.
    pub largest: Option<EdgeCost>,
}

/// The channels and routing tables `runtime::run` would create for `plan` with `capacity`
/// batches per channel.
pub fn estimate(plan: &Plan, capacity: usize) -> MemoryEstimate {
    let per_channel = bytes_per_channel(capacity);
    let mut total = MemoryEstimate {
        channels: 0,
        bytes: 0,
        per_channel,
        largest: None,
    };
    for task in &plan.tasks {
        for input in &task.inputs {
            let Some(up) = plan.tasks.get(input.from) else {
                continue;
            };
            let (pu, pd) = (u64::from(up.parallelism), u64::from(task.parallelism));
            let channels = match input.exchange {
                Exchange::Forward => pu,
                _ => pu.saturating_mul(pd),
            };
            // Each upstream subtask: a sender per target; a hash edge also its key group →
            // target table, a row list per target and the list of the rows' routed keys.
            // Each downstream subtask: a receiver and two flags per input channel.
            let sender = std::mem::size_of::<usize>() as u64;
            let routing = match input.exchange {
                Exchange::Hash { .. } => pu.saturating_mul(
                    4 * u64::from(plan.max_parallelism)
                        + 3 * sender
                        + pd.saturating_mul(3 * sender),
                ),
                _ => 0,
            };
            let ends = channels.saturating_mul(2 * sender + 2);
            let bytes = channels
                .saturating_mul(per_channel)
                .saturating_add(routing)
                .saturating_add(ends);
            let edge = EdgeCost {
                name: format!(
                    "\"{}\" x{pu} to \"{}\" x{pd} by {}",
                    up.name(),
                    task.name(),
                    input.exchange
                ),
                channels,
                bytes,
            };
            total.channels = total.channels.saturating_add(channels);
            total.bytes = total.bytes.saturating_add(bytes);
            if total.largest.as_ref().is_none_or(|l| l.channels < channels) {
                total.largest = Some(edge);
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::plan::{PlanOperator, PlanTask, TaskInput};
    use crate::pipeline::OperatorId;

    fn task(name: &str, p: u32, inputs: Vec<TaskInput>) -> PlanTask {
        let factory = crate::pipeline::plan::Factory::Operator(std::sync::Arc::new(|_| {
            Err(crate::operators::OperatorError::Config("test".into()))
        }));
        PlanTask {
            parallelism: p,
            operators: vec![PlanOperator {
                id: OperatorId(name.into()),
                factory,
            }],
            inputs,
        }
    }

    #[test]
    fn a_hash_edge_costs_p_squared_channels_and_a_forward_edge_p() {
        let hash = Exchange::Hash {
            key_field: "word".into(),
            key_column: 0,
        };
        let plan = Plan {
            name: "t".into(),
            max_parallelism: 128,
            base_dir: ".".into(),
            tasks: vec![
                task("split", 4, vec![]),
                task(
                    "count",
                    4,
                    vec![TaskInput {
                        from: 0,
                        exchange: hash,
                    }],
                ),
                task(
                    "out",
                    4,
                    vec![TaskInput {
                        from: 1,
                        exchange: Exchange::Forward,
                    }],
                ),
            ],
        };
        let e = estimate(&plan, 4);
        assert_eq!(e.channels, 16 + 4);
        assert!(e.bytes >= 20 * e.per_channel, "{e:?}");
        let largest = e.largest.unwrap();
        assert_eq!(largest.channels, 16);
        assert_eq!(largest.name, "\"split\" x4 to \"count\" x4 by hash(word)");
    }
}
