//! Which partitions a `kafka` source subtask reads and where each starts: the stable
//! assignment of partitions to subtasks, and the discovery that lists topics and resolves
//! starting offsets on a blocking thread (metadata, watermark and offset requests block).

use super::kafka::StartingOffsets;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
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

/// This instance's share of every topic's partitions (`instance: "i/n"`): share `index`
/// (0-based) of `count` instances. Partition `n` of topic `t` belongs to instance
/// `owner(t, n, count)`; within it, to subtask `owner(t, n / count, p)`, so the partitions of
/// one instance spread evenly over its subtasks whatever the other instances' parallelism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub index: u32,
    pub count: u32,
}

impl Share {
    /// One instance reads everything.
    pub const ALL: Share = Share { index: 0, count: 1 };

    /// `"i/n"`, 1-based as written (`"1/2"`: the first of two instances).
    pub fn parse(text: &str) -> Result<Share, String> {
        let usage = "must be `i/n`, this instance's number i of n instances, 1 <= i <= n \
                     (like `1/2` on one machine and `2/2` on the other)";
        let (i, n) = text
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?)))
            .ok_or_else(|| format!("`{text}` {usage}"))?;
        if n == 0 || i == 0 || i > n {
            return Err(format!("`{text}` {usage}"));
        }
        Ok(Share {
            index: i - 1,
            count: n,
        })
    }
}

/// The subtask of this instance (at parallelism `p`) that reads partition `partition` of
/// `topic`, or `None` when another instance reads it. With [`Share::ALL`] it is
/// [`owner`]`(topic, partition, p)`.
pub fn reader(topic: &str, partition: i32, share: Share, p: u32) -> Option<u32> {
    let count = share.count.max(1);
    if owner(topic, partition, count) != share.index {
        return None;
    }
    Some(owner(topic, partition.max(0) / count as i32, p))
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
    pub(super) share: Share,
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
            if reader(topic.name(), p.id(), a.share, a.parallelism) == Some(a.subtask) {
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
        let offset = resolve_offset(&a.consumer, &topic, partition, start)?;
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

/// The offset a new partition starts at, asked of the broker. Blocking.
fn resolve_offset(
    consumer: &BaseConsumer<SourceContext>,
    topic: &str,
    partition: i32,
    start: Start,
) -> Result<i64, String> {
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        .map_err(|e| format!("cannot read the offsets of {topic}-{partition}: {e}"))?;
    Ok(match start {
        Start::At(o) => o,
        Start::Earliest => low,
        Start::Latest => high,
        Start::Committed => {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, partition);
            let committed = consumer
                .committed_offsets(tpl, REQUEST_TIMEOUT)
                .map_err(|e| {
                    format!("cannot read the committed offset of {topic}-{partition}: {e}")
                })?;
            match committed
                .find_partition(topic, partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => o,
                _ => low,
            }
        }
        Start::Timestamp(ts) => {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, partition, Offset::Offset(ts))
                .map_err(|e| format!("bad timestamp {ts}: {e}"))?;
            let at = consumer
                .offsets_for_times(tpl, REQUEST_TIMEOUT)
                .map_err(|e| {
                    format!("cannot find the offset of {topic}-{partition} at {ts}: {e}")
                })?;
            match at.find_partition(topic, partition).map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= 0 => o,
                _ => high,
            }
        }
    })
}

/// librdkafka's callbacks: client errors as warnings, without the end of a partition (which
/// `enable.partition.eof` reports there too, and which is no error here).
pub(super) struct SourceContext;

/// The end of a partition, which librdkafka reports per partition and, with
/// `enable.partition.eof`, also as a client-wide error: no error here.
pub(super) fn is_partition_eof(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    )
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !is_partition_eof(&error) {
            tracing::warn!(error = %error, reason, "kafka source: client error");
        }
    }
}

impl ConsumerContext for SourceContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_partition_is_no_error_however_librdkafka_reports_it() {
        assert!(is_partition_eof(&KafkaError::PartitionEOF(3)));
        assert!(is_partition_eof(&KafkaError::Global(
            RDKafkaErrorCode::PartitionEOF
        )));
        assert!(!is_partition_eof(&KafkaError::Global(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
    }

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
    fn instances_share_partitions_without_overlap_and_spread_them_over_their_subtasks() {
        for count in 1..4u32 {
            // Instances at different parallelism: every partition is read exactly once.
            let ps = [1u32, 2, 3];
            let mut per_subtask = std::collections::BTreeMap::new();
            for n in 0..36i32 {
                let readers: Vec<(u32, u32)> = (0..count)
                    .filter_map(|index| {
                        let p = ps[index as usize % 3];
                        reader("words", n, Share { index, count }, p).map(|s| (index, s))
                    })
                    .collect();
                assert_eq!(
                    readers.len(),
                    1,
                    "partition {n} of {count} instances: {readers:?}"
                );
                *per_subtask.entry(readers[0]).or_insert(0) += 1;
            }
            // 36 partitions over `count` instances, each spread evenly over its subtasks.
            for ((index, _), c) in &per_subtask {
                let p = ps[*index as usize % 3];
                assert_eq!(*c, 36 / count / p, "{count} instances: {per_subtask:?}");
            }
        }
        for n in 0..8 {
            assert_eq!(reader("t", n, Share::ALL, 3), Some(owner("t", n, 3)));
        }
    }

    #[test]
    fn an_instance_is_i_of_n() {
        assert_eq!(Share::parse("1/2"), Ok(Share { index: 0, count: 2 }));
        assert_eq!(Share::parse(" 2 / 2 "), Ok(Share { index: 1, count: 2 }));
        for bad in ["0/2", "3/2", "1/0", "1", "a/b", "-1/2", ""] {
            let e = Share::parse(bad).unwrap_err();
            assert!(e.contains("must be `i/n`"), "{bad}: {e}");
        }
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
