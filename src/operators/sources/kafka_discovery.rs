//! Which partitions a `kafka` source subtask reads and where each starts: the stable
//! assignment of partitions to subtasks, and the discovery that lists topics and resolves
//! starting offsets on a blocking thread (metadata, watermark and offset requests block).

use super::kafka::StartingOffsets;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// How long metadata, watermark and offset requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Which topics to read.
#[derive(Clone)]
pub(super) enum Topics {
    List(Vec<String>),
    Pattern(regex::Regex),
}

impl Topics {
    pub(super) fn matches(&self, topic: &str) -> bool {
        match self {
            Topics::List(l) => l.iter().any(|t| t == topic),
            Topics::Pattern(r) => {
                !topic.starts_with("__") && r.find(topic).is_some_and(|m| m.len() == topic.len())
            }
        }
    }
}

/// The subtask that owns partition `partition` of `topic` at parallelism `p` (see the module
/// docs): stable when partitions are added.
pub fn owner(topic: &str, partition: i32, p: u32) -> u32 {
    let p = p.max(1) as u64;
    let start = fnv1a64(topic.as_bytes()) % p;
    ((start + partition.max(0) as u64) % p) as u32
}

/// FNV-1a, 64 bit: a fixed hash every subtask and every run computes alike.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Where a newly found partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// A number already (from a checkpoint).
    At(i64),
    Earliest,
    Latest,
    Committed,
    Timestamp(i64),
}

/// Where a partition found now starts: the checkpoint's offset; else, at the first
/// discovery of a fresh job, the configured starting offsets; else (created later, or a
/// restored job that never saw it) the earliest offset.
pub(super) fn start_for(
    restored: Option<&HashMap<(String, i32), i64>>,
    first: bool,
    cfg: StartingOffsets,
    timestamp: Option<i64>,
    topic: &str,
    partition: i32,
) -> Start {
    if let Some(r) = restored {
        return match r.get(&(topic.to_string(), partition)) {
            Some(o) => Start::At(*o),
            None => Start::Earliest,
        };
    }
    if !first {
        return Start::Earliest;
    }
    match cfg {
        StartingOffsets::Earliest => Start::Earliest,
        StartingOffsets::Latest => Start::Latest,
        StartingOffsets::Committed => Start::Committed,
        StartingOffsets::Timestamp => Start::Timestamp(timestamp.unwrap_or(0)),
    }
}

/// One partition a discovery found for this subtask, its start resolved to a number.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) offset: i64,
    /// `starting-offsets: timestamp`: records before the first one at or after it are
    /// skipped.
    pub(super) skip_before: Option<i64>,
}

/// What a discovery (on a blocking thread) reports.
pub(super) struct Discovery {
    pub(super) found: Vec<Found>,
    /// Every partition seen (this subtask's or not), so the next discovery skips them.
    pub(super) seen: Vec<(String, i32)>,
}

pub(super) struct DiscoverArgs {
    pub(super) consumer: Arc<BaseConsumer<SourceContext>>,
    pub(super) topics: Topics,
    pub(super) known: HashSet<(String, i32)>,
    pub(super) subtask: u32,
    pub(super) parallelism: u32,
    pub(super) first: bool,
    pub(super) restored: Option<Arc<HashMap<(String, i32), i64>>>,
    pub(super) starting: StartingOffsets,
    pub(super) timestamp: Option<i64>,
}

/// Lists the topics' partitions and resolves where the new ones of this subtask start.
/// Blocking: metadata, watermark and offset requests.
pub(super) fn discover(a: DiscoverArgs) -> Result<Discovery, String> {
    let metadata = match &a.topics {
        // One request per listed topic would create it with auto-creation on; ask for all.
        Topics::List(_) | Topics::Pattern(_) => a
            .consumer
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(|e| format!("cannot list the topics: {e}"))?,
    };
    let mut seen = Vec::new();
    let mut mine = Vec::new();
    for topic in metadata.topics() {
        if !a.topics.matches(topic.name()) || topic.error().is_some() {
            continue;
        }
        for p in topic.partitions() {
            let key = (topic.name().to_string(), p.id());
            if a.known.contains(&key) {
                continue;
            }
            seen.push(key.clone());
            if owner(topic.name(), p.id(), a.parallelism) == a.subtask {
                mine.push(key);
            }
        }
    }
    if a.first {
        if let Topics::List(list) = &a.topics {
            let missing: Vec<&String> = list
                .iter()
                .filter(|t| {
                    !metadata
                        .topics()
                        .iter()
                        .any(|m| m.name() == t.as_str() && m.error().is_none())
                })
                .collect();
            if !missing.is_empty() {
                tracing::warn!(topics = ?missing, "kafka source: topics not found yet; they are read once they exist");
            }
        }
    }
    let mut found = Vec::with_capacity(mine.len());
    for (topic, partition) in mine {
        let start = start_for(
            a.restored.as_deref(),
            a.first,
            a.starting,
            a.timestamp,
            &topic,
            partition,
        );
        let (low, high) = a
            .consumer
            .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
            .map_err(|e| format!("cannot read the offsets of {topic}-{partition}: {e}"))?;
        let offset = match start {
            Start::At(o) => o,
            Start::Earliest => low,
            Start::Latest => high,
            Start::Committed => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&topic, partition);
                let committed =
                    a.consumer
                        .committed_offsets(tpl, REQUEST_TIMEOUT)
                        .map_err(|e| {
                            format!("cannot read the committed offset of {topic}-{partition}: {e}")
                        })?;
                match committed
                    .find_partition(&topic, partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => o,
                    _ => low,
                }
            }
            Start::Timestamp(ts) => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&topic, partition, Offset::Offset(ts))
                    .map_err(|e| format!("bad timestamp {ts}: {e}"))?;
                let at = a
                    .consumer
                    .offsets_for_times(tpl, REQUEST_TIMEOUT)
                    .map_err(|e| {
                        format!("cannot find the offset of {topic}-{partition} at {ts}: {e}")
                    })?;
                match at.find_partition(&topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) if o >= 0 => o,
                    _ => high,
                }
            }
        };
        found.push(Found {
            topic,
            partition,
            offset,
            skip_before: match start {
                Start::Timestamp(ts) => Some(ts),
                _ => None,
            },
        });
    }
    Ok(Discovery { found, seen })
}

/// librdkafka's callbacks: client errors as warnings, without the end of a partition (which
/// `enable.partition.eof` reports there too, and which is no error here).
pub(super) struct SourceContext;

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::warn!(error = %error, reason, "kafka source: client error");
        }
    }
}

impl ConsumerContext for SourceContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_evenly_and_stay_put_when_partitions_are_added() {
        for p in 1..5u32 {
            let mut counts = vec![0; p as usize];
            for n in 0..(4 * p as i32) {
                counts[owner("words", n, p) as usize] += 1;
            }
            assert!(counts.iter().all(|c| *c == 4), "p={p}: {counts:?}");
        }
        // Partition n's owner depends on n and the topic only, never on how many there are.
        assert_eq!(owner("words", 0, 2), (fnv1a64(b"words") % 2) as u32);
        assert_ne!(owner("words", 0, 2), owner("words", 1, 2));
    }

    #[test]
    fn the_checkpoint_decides_then_the_setting_then_earliest() {
        let restored: HashMap<(String, i32), i64> = [(("t".to_string(), 0), 7)].into();
        let s = |r, first| start_for(r, first, StartingOffsets::Latest, None, "t", 0);
        assert_eq!(s(Some(&restored), true), Start::At(7));
        let other = start_for(Some(&restored), true, StartingOffsets::Latest, None, "t", 1);
        assert_eq!(other, Start::Earliest);
        assert_eq!(s(None, true), Start::Latest);
        assert_eq!(s(None, false), Start::Earliest);
        let ts = start_for(None, true, StartingOffsets::Timestamp, Some(5), "t", 0);
        assert_eq!(ts, Start::Timestamp(5));
    }

    #[test]
    fn a_pattern_matches_whole_names_and_skips_internal_topics() {
        let t = Topics::Pattern(regex::Regex::new("words-.*").unwrap());
        assert!(t.matches("words-1"));
        assert!(!t.matches("old-words-1"));
        let all = Topics::Pattern(regex::Regex::new(".*").unwrap());
        assert!(!all.matches("__consumer_offsets"));
    }
}
