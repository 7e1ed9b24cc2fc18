//! `type: kafka` without inputs: records of Kafka topics (a list, or every topic a regex
//! matches), through librdkafka (the `rdkafka` crate, bundled build).
//!
//! Partitions, not consumer groups: the source assigns partitions itself (Kafka's `assign`,
//! never a group `subscribe`), so floe's checkpoints are the source of truth for offsets and a
//! rebalance never moves a partition behind the runtime's back. Partition `n` of topic `t`
//! belongs to subtask `(start(t) + n) % p`, where `start(t) = fnv1a64(t) % p` (Flink's
//! `KafkaTopicPartitionAssigner`, with a fixed hash): a partition added later never moves the
//! existing ones, and the partitions of one topic spread evenly.
//!
//! Several floe instances share the partitions with `instance: "i/n"`: instance i reads the
//! partitions [`reader`] gives it (see [`Share`]) and no other, so n jobs, each with its own
//! checkpoints, read every partition once between them.
//!
//! Position: per owned partition, the offset of the next record to emit
//! ([`SourcePosition::Kafka`]). A restore seeks every partition it has an offset for there; a
//! partition without one (created after the checkpoint) starts at its earliest offset, as
//! does every partition discovered while running. Restored at another parallelism, each
//! subtask gets the union of the old offsets and keeps those of the partitions it owns now.
//!
//! Without a restore, `starting-offsets` decides: `earliest`, `latest`, `committed` (the
//! group's committed offset, else earliest) or `timestamp` (the first record at or after
//! `starting-timestamp`, else the end; records before the first one at or after the
//! timestamp are skipped too, because tansu 0.6 answers every timestamp lookup with offset
//! 0). Offsets are resolved to numbers before the first
//! fetch, so a snapshot taken before any record still holds where the source stands.
//!
//! New partitions, and new topics matching `topic-pattern`, are looked for every
//! `discovery-interval` on a blocking thread (metadata requests block); the data path never
//! waits for them. `bounded: true` reads each partition found at the start up to its end and
//! then ends: the end is where librdkafka reports the consumer caught up with the partition
//! (the high watermark, with `read_committed` the last stable offset, past a commit marker at
//! the end). The end is not fixed from the offsets listed at the start: tansu 0.6 answers that
//! request with the last batch's base offset plus one. Records written while the source
//! catches up may therefore be read too.
//!
//! Each partition gets its own librdkafka queue (`split_partition_queue`), so the end of a
//! partition is known for that partition, and records of one partition are emitted in order.
//!
//! Event time (`event-time: {field, max-out-of-orderness, idle-timeout}`): each record's time
//! comes from a field of its format (a JSON field, or `timestamp`, the record's Kafka
//! timestamp, with `key-value`), and watermarks are per partition, as Flink's Kafka source
//! does: a subtask's watermark is the smallest of its partitions', and a partition without
//! records for `idle-timeout` stops holding it back.
//!
//! Offsets committed to the group (`commit-offsets`, for monitoring only; never read back by
//! a restore): the offsets of each snapshot are kept by checkpoint id, and committed
//! (asynchronously) when the runtime says that checkpoint completed, as Flink's
//! `KafkaSourceReader.notifyCheckpointComplete` does. An aborted checkpoint's offsets are
//! dropped; a completion also drops the offsets of every earlier checkpoint.

use super::duration_serde;
use super::kafka_discovery::{
    discover, is_partition_eof, DiscoverArgs, Discovery, SourceContext, Topics,
};
pub use super::kafka_discovery::{owner, reader, Share};
use super::kafka_records::Rows;
use super::{KafkaOffset, SourcePosition};
use crate::ids::CheckpointId;
use crate::operators::event_time::{
    EventTimeConfig, Timestamper, WatermarkEvent, WatermarkGenerator,
};
use crate::operators::{BuildContext, OperatorError, OperatorSpec, Problem, Source, SourceEvent};
use crate::record::{Batch, DataType, Schema, BATCH_SIZE};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long `next` waits when nothing came before answering `Idle`.
const IDLE_WAIT: Duration = Duration::from_millis(10);

/// Where a partition starts when no checkpoint says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartingOffsets {
    #[default]
    Earliest,
    Latest,
    Committed,
    Timestamp,
}

/// How a Kafka record becomes a floe record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaFormat {
    /// The value as one text field `line` (what `socket` and `file` give).
    #[default]
    Raw,
    /// The value is a JSON object; the `fields` it declares become typed fields.
    Json,
    /// Fields `key`, `value`, `headers` (a JSON object of text), `topic`, `partition`,
    /// `offset`, `timestamp` (ms since the epoch, -1 without one).
    KeyValue,
}

/// Which records a consumer sees of transactional producers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IsolationLevel {
    /// Committed transactions only (what an exactly-once pipeline downstream of another wants).
    #[default]
    ReadCommitted,
    ReadUncommitted,
}

fn default_discovery() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KafkaSourceConfig {
    /// `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// The topics to read; or `topic-pattern`.
    #[serde(default)]
    pub topics: Vec<String>,
    /// A regex every topic to read matches as a whole (`words-.*`).
    pub topic_pattern: Option<String>,
    /// The consumer group: where offsets are committed and `committed` reads them.
    pub group_id: Option<String>,
    #[serde(default)]
    pub starting_offsets: StartingOffsets,
    /// Milliseconds since the epoch, for `starting-offsets: timestamp`.
    pub starting_timestamp: Option<i64>,
    #[serde(default)]
    pub format: KafkaFormat,
    /// For `format: json`: field name → type (`str`, `int`, `float`, `bool`), in order.
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
    /// End at the end offsets present at the start.
    #[serde(default)]
    pub bounded: bool,
    /// Commit the offsets of checkpoints to the group (monitoring). Default: with a group.
    pub commit_offsets: Option<bool>,
    /// How often new partitions and topics are looked for; `0` turns it off.
    #[serde(default = "default_discovery", with = "duration_serde")]
    pub discovery_interval: Duration,
    #[serde(default)]
    pub isolation_level: IsolationLevel,
    /// `"i/n"`: this floe instance reads share i of n of every topic's partitions (scaling
    /// out over several instances); unset, it reads them all.
    pub instance: Option<String>,
    /// librdkafka settings passed through (`fetch.max.bytes: 1048576`).
    #[serde(default)]
    pub properties: BTreeMap<String, serde_yaml::Value>,
    /// Records carry event time from this field, with watermarks per partition.
    #[serde(default)]
    pub event_time: Option<EventTimeConfig>,
}

/// One declared JSON field.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: DataType,
}

/// librdkafka settings the source sets itself: a user's value would break it.
const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "isolation.level",
    "auto.offset.reset",
];

impl KafkaSourceConfig {
    /// The schema records get, by format.
    pub fn schema(&self) -> Schema {
        match self.format {
            KafkaFormat::Raw => Schema::new([("line", DataType::Str)]),
            KafkaFormat::Json => Schema::new(self.fields.iter().map(|f| (f.name.clone(), f.ty))),
            KafkaFormat::KeyValue => Schema::new([
                ("key", DataType::Str),
                ("value", DataType::Str),
                ("headers", DataType::Str),
                ("topic", DataType::Str),
                ("partition", DataType::Int),
                ("offset", DataType::Int),
                ("timestamp", DataType::Int),
            ]),
        }
    }

    /// This instance's share of the partitions (all without `instance`).
    pub fn share(&self) -> Result<Share, String> {
        self.instance
            .as_deref()
            .map_or(Ok(Share::ALL), Share::parse)
    }

    fn commits(&self) -> bool {
        self.commit_offsets.unwrap_or(self.group_id.is_some())
    }
}

/// Problems with `bootstrap-servers` and `properties`, shared with the sink.
pub(crate) fn check_client_settings(
    bootstrap: &str,
    properties: &BTreeMap<String, serde_yaml::Value>,
    reserved: &[&str],
    problems: &mut Vec<Problem>,
) {
    if bootstrap.trim().is_empty() {
        problems.push(Problem::new(
            "bootstrap-servers",
            "must name at least one broker as host:port (like `127.0.0.1:9092`)",
        ));
    } else {
        for server in bootstrap.split(',') {
            let server = server.trim();
            let ok = server
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                problems.push(Problem::new(
                    "bootstrap-servers",
                    format!("`{server}` is not host:port (like `127.0.0.1:9092`)"),
                ));
            }
        }
    }
    let before = problems.len();
    for (key, value) in properties {
        if reserved.contains(&key.as_str()) {
            problems.push(Problem::new(
                format!("properties.{key}"),
                "is set by floe itself; use the operator's own setting instead",
            ));
        } else if touches_the_machine(key) {
            // Checked by librdkafka when the job's client is made: only then, after a
            // service's check of what a submitted job may touch, is the file read.
            continue;
        } else if let Some(text) = property_text(value) {
            // librdkafka's own check of the name and value (an unknown key, a value out of
            // range, a feature this build lacks), without creating a client.
            if let Err(e) = rdkafka::ClientConfig::new()
                .set(key, &text)
                .create_native_config()
            {
                problems.push(Problem::new(
                    format!("properties.{key}"),
                    format!("librdkafka refuses it: {}", librdkafka_reason(&e)),
                ));
            }
        } else {
            problems.push(Problem::new(
                format!("properties.{key}"),
                "must be a string, number or boolean",
            ));
        }
    }
    if problems.len() == before && !properties.is_empty() {
        check_client(properties, problems);
    }
}

/// Settings each valid alone may still not make a client (a SASL mechanism this build of
/// librdkafka has no provider for): librdkafka makes one without brokers (it connects to
/// nothing, so making and closing it never waits on the network) and says why not.
fn check_client(properties: &BTreeMap<String, serde_yaml::Value>, problems: &mut Vec<Problem>) {
    let mut config = rdkafka::ClientConfig::new();
    // Its warnings (a consumer's property on this producer) are not the user's concern.
    config.set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg);
    for (k, v) in properties {
        if let Some(v) = property_text(v).filter(|_| !touches_the_machine(k)) {
            config.set(k, v);
        }
    }
    let made: Result<rdkafka::producer::BaseProducer, _> = config.create();
    if let Err(e) = made {
        problems.push(Problem::new(
            "properties",
            format!(
                "librdkafka cannot make a client with these settings: {}",
                librdkafka_reason(&e)
            ),
        ));
    }
}

/// A property naming a file (`ssl.ca.location`, `sasl.kerberos.keytab`, …), code to load
/// (`plugin.library.paths`: librdkafka loads it as soon as it is set) or a command to run
/// (`sasl.kerberos.kinit.cmd`). Validation never hands these to librdkafka: it must not read,
/// load or run anything, least of all for a pipeline submitted to `floe serve`, whose
/// submission check (what a submitted job may touch) comes after validation.
fn touches_the_machine(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    key.ends_with(".location")
        || matches!(
            key.as_str(),
            "sasl.kerberos.keytab" | "plugin.library.paths" | "sasl.kerberos.kinit.cmd"
        )
}

/// librdkafka's sentence in a configuration error, without rdkafka's wrapping.
fn librdkafka_reason(e: &rdkafka::error::KafkaError) -> String {
    match e {
        rdkafka::error::KafkaError::ClientConfig(_, description, _, _) => description.clone(),
        other => other.to_string(),
    }
}

/// A regex error on one line (the crate's spans several, with a caret under the pattern).
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_start_matches("error: ").to_string())
        .unwrap_or(text)
}

/// A property value as librdkafka takes it.
pub(crate) fn property_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl OperatorSpec for KafkaSourceConfig {
    fn makes_event_time(&self, _input: bool) -> bool {
        self.event_time.is_some()
    }

    fn output_schema(&self, _input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        let mut problems = Vec::new();
        check_client_settings(
            &self.bootstrap_servers,
            &self.properties,
            RESERVED,
            &mut problems,
        );
        match (&self.topic_pattern, self.topics.is_empty()) {
            (None, true) => problems.push(Problem::new(
                "topics",
                "name the topics to read (`topics: [words]`) or set `topic-pattern`",
            )),
            (Some(_), false) => problems.push(Problem::new(
                "topic-pattern",
                "set either `topics` or `topic-pattern`, not both",
            )),
            (Some(p), true) => {
                if let Err(e) = regex::Regex::new(p) {
                    problems.push(Problem::new(
                        "topic-pattern",
                        format!("not a valid regex: {}", one_line(&e)),
                    ));
                }
            }
            (None, false) => {
                for (i, t) in self.topics.iter().enumerate() {
                    if t.trim().is_empty() {
                        problems.push(Problem::new(format!("topics[{i}]"), "is empty"));
                    }
                }
            }
        }
        match (self.starting_offsets, self.starting_timestamp) {
            (StartingOffsets::Timestamp, None) => problems.push(Problem::new(
                "starting-timestamp",
                "`starting-offsets: timestamp` needs `starting-timestamp` (milliseconds since the epoch)",
            )),
            (StartingOffsets::Timestamp, Some(_)) | (_, None) => {}
            (_, Some(_)) => problems.push(Problem::new(
                "starting-timestamp",
                "is only read with `starting-offsets: timestamp`",
            )),
        }
        if self.group_id.is_none() {
            if self.starting_offsets == StartingOffsets::Committed {
                problems.push(Problem::new(
                    "group-id",
                    "`starting-offsets: committed` needs the group whose offsets to read",
                ));
            }
            if self.commit_offsets == Some(true) {
                problems.push(Problem::new(
                    "group-id",
                    "`commit-offsets: true` needs the group to commit to",
                ));
            }
        }
        match self.format {
            KafkaFormat::Json if self.fields.is_empty() => problems.push(Problem::new(
                "fields",
                "`format: json` needs the fields to take from each object, like \
                 `fields: [{name: word, type: str}, {name: n, type: int}]`",
            )),
            KafkaFormat::Json => {
                let mut seen = HashSet::new();
                for (i, f) in self.fields.iter().enumerate() {
                    if f.name.is_empty() || !seen.insert(f.name.as_str()) {
                        problems.push(Problem::new(
                            format!("fields[{i}].name"),
                            format!("\"{}\" is empty or declared twice", f.name),
                        ));
                    }
                }
            }
            KafkaFormat::Raw | KafkaFormat::KeyValue if !self.fields.is_empty() => {
                problems.push(Problem::new(
                    "fields",
                    "is only read with `format: json` (raw gives `line`, key-value its own fields)",
                ))
            }
            KafkaFormat::Raw | KafkaFormat::KeyValue => {}
        }
        if let Err(e) = self.share() {
            problems.push(Problem::new("instance", e));
        }
        if let Some(et) = &self.event_time {
            if let Err(p) = et.check(&self.schema(), "event-time.") {
                problems.push(p);
            }
        }
        if problems.is_empty() {
            Ok(self.schema())
        } else {
            Err(problems)
        }
    }
}

/// One partition this subtask reads.
struct Part {
    topic: String,
    partition: i32,
    queue: rdkafka::consumer::base_consumer::PartitionQueue<SourceContext>,
    /// The offset of the next record to emit (the position).
    next: i64,
    /// Bounded: read to its end.
    done: bool,
    /// Skip records until one has at least this timestamp (see [`Found`]).
    skip_before: Option<i64>,
}

/// One running Kafka source subtask.
pub struct KafkaSource {
    operator_id: String,
    subtask: u32,
    parallelism: u32,
    /// This instance's share of the partitions (`instance`).
    share: Share,
    cfg: Arc<KafkaSourceConfig>,
    topics: Topics,
    consumer: Arc<BaseConsumer<SourceContext>>,
    parts: Vec<Part>,
    known: HashSet<(String, i32)>,
    restored: Option<Arc<HashMap<(String, i32), i64>>>,
    discovering: Option<JoinHandle<Result<Discovery, String>>>,
    /// The first discovery finished: records may flow.
    started: bool,
    last_discovery: Option<Instant>,
    /// Round-robin over the partitions, so a busy one does not starve the others.
    cursor: usize,
    /// The column types of the records (the schema of `format`), for each batch.
    types: Vec<DataType>,
    /// Offsets of snapshots whose checkpoint has not completed yet, oldest first, kept only
    /// when `commit-offsets` is on (see the module docs).
    pending_commits: VecDeque<(CheckpointId, Vec<KafkaOffset>)>,
    /// With `event-time`: the time field's reader and the watermarks, one split per entry of
    /// `parts`.
    stamp: Option<(Timestamper, WatermarkGenerator)>,
}

impl KafkaSource {
    /// Subtask `ctx.subtask`, resuming at `position` when restored.
    pub fn new(
        c: &KafkaSourceConfig,
        ctx: &BuildContext,
        position: Option<&[KafkaOffset]>,
    ) -> Result<Self, OperatorError> {
        let topics = match &c.topic_pattern {
            Some(p) => Topics::Pattern(regex::Regex::new(p).map_err(|e| {
                OperatorError::Config(format!(
                    "`topic-pattern` {p}: not a valid regex: {}",
                    one_line(&e)
                ))
            })?),
            None => Topics::List(c.topics.clone()),
        };
        let share = c
            .share()
            .map_err(|e| OperatorError::Config(format!("`instance` {e}")))?;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &c.bootstrap_servers)
            .set(
                "group.id",
                c.group_id
                    .clone()
                    .unwrap_or_else(|| format!("floe-{}", ctx.operator_id)),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set(
                "isolation.level",
                match c.isolation_level {
                    IsolationLevel::ReadCommitted => "read_committed",
                    IsolationLevel::ReadUncommitted => "read_uncommitted",
                },
            )
            .set(
                "client.id",
                format!("floe-{}-{}", ctx.operator_id, ctx.subtask),
            );
        for (k, v) in &c.properties {
            if let Some(v) = property_text(v) {
                config.set(k, v);
            }
        }
        let consumer: BaseConsumer<SourceContext> =
            config.create_with_context(SourceContext).map_err(|e| {
                OperatorError::Config(format!(
                    "kafka source \"{}\": cannot create the consumer: {e}",
                    ctx.operator_id
                ))
            })?;
        let restored = position.map(|offsets| {
            Arc::new(
                offsets
                    .iter()
                    .map(|o| ((o.topic.clone(), o.partition), o.offset))
                    .collect::<HashMap<_, _>>(),
            )
        });
        let stamp = match &c.event_time {
            None => None,
            Some(et) => Some((
                et.check(&c.schema(), "event-time.")
                    .map_err(|p| OperatorError::Config(format!("`{}` {}", p.field, p.message)))?,
                et.generator(1),
            )),
        };
        Ok(KafkaSource {
            stamp,
            operator_id: ctx.operator_id.clone(),
            subtask: ctx.subtask,
            parallelism: ctx.parallelism.max(1),
            share,
            cfg: Arc::new(c.clone()),
            topics,
            consumer: Arc::new(consumer),
            parts: Vec::new(),
            known: HashSet::new(),
            restored,
            discovering: None,
            started: false,
            last_discovery: None,
            cursor: 0,
            types: c.schema().fields.iter().map(|f| f.ty).collect(),
            pending_commits: VecDeque::new(),
        })
    }

    fn start_discovery(&mut self) {
        let args = DiscoverArgs {
            consumer: self.consumer.clone(),
            topics: self.topics.clone(),
            known: self.known.clone(),
            subtask: self.subtask,
            parallelism: self.parallelism,
            share: self.share,
            first: !self.started,
            restored: self.restored.clone(),
            starting: self.cfg.starting_offsets,
            timestamp: self.cfg.starting_timestamp,
        };
        self.last_discovery = Some(Instant::now());
        self.discovering = Some(tokio::task::spawn_blocking(move || discover(args)));
    }

    /// Takes in what a finished discovery found: each partition gets its own queue, then is
    /// assigned at its offset.
    fn adopt(&mut self, d: Discovery) -> Result<(), OperatorError> {
        self.known.extend(d.seen);
        if d.found.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for f in &d.found {
            let queue = self
                .consumer
                .split_partition_queue(&f.topic, f.partition)
                .ok_or_else(|| {
                    OperatorError::Config(format!(
                        "kafka source \"{}\": cannot read {}-{} (invalid topic name?)",
                        self.operator_id, f.topic, f.partition
                    ))
                })?;
            tpl.add_partition_offset(&f.topic, f.partition, Offset::Offset(f.offset))
                .map_err(|e| self.kafka_error("cannot assign partitions", e))?;
            tracing::info!(
                operator = %self.operator_id,
                subtask = self.subtask,
                topic = %f.topic,
                partition = f.partition,
                offset = f.offset,
                "kafka source reads a partition"
            );
            self.parts.push(Part {
                topic: f.topic.clone(),
                partition: f.partition,
                queue,
                next: f.offset,
                done: false,
                skip_before: f.skip_before,
            });
        }
        self.consumer
            .incremental_assign(&tpl)
            .map_err(|e| self.kafka_error("cannot assign partitions", e))
    }

    fn kafka_error(&self, what: &str, e: KafkaError) -> OperatorError {
        OperatorError::Data(format!(
            "kafka source \"{}\" subtask {}: {what}: {e}",
            self.operator_id, self.subtask
        ))
    }

    /// Checks on a running discovery, and starts one when due. `Err` if it failed.
    async fn drive_discovery(&mut self) -> Result<(), OperatorError> {
        if let Some(handle) = &self.discovering {
            if !handle.is_finished() {
                return Ok(());
            }
            let handle = self.discovering.take().expect("checked above");
            let result = handle.await.map_err(|e| {
                OperatorError::Data(format!("bug: kafka partition discovery panicked: {e}"))
            })?;
            match result {
                Ok(d) => {
                    self.adopt(d)?;
                    self.started = true;
                }
                // The first discovery must succeed (a wrong address fails the job, and the
                // restart strategy decides); later ones are retried at the next interval.
                Err(e) if !self.started => {
                    return Err(OperatorError::Data(format!(
                        "kafka source \"{}\" subtask {}: {e} (bootstrap-servers: {})",
                        self.operator_id, self.subtask, self.cfg.bootstrap_servers
                    )))
                }
                Err(e) => {
                    tracing::warn!(operator = %self.operator_id, error = %e, "kafka partition discovery failed; retrying later")
                }
            }
            return Ok(());
        }
        let due = match self.last_discovery {
            None => true,
            Some(_) if self.cfg.bounded => false,
            Some(_) if self.cfg.discovery_interval.is_zero() => false,
            Some(t) => t.elapsed() >= self.cfg.discovery_interval,
        };
        if due {
            self.start_discovery();
        }
        Ok(())
    }

    /// Commits `offsets` to the group, asynchronously: monitoring only, so a failure is
    /// logged, never fatal.
    fn commit(&self, offsets: &[KafkaOffset]) {
        let mut tpl = TopicPartitionList::new();
        for o in offsets {
            let _ = tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.offset));
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(operator = %self.operator_id, error = %e, "kafka source: committing offsets to the group failed");
            }
        }
    }

    /// Polls the partitions round-robin into one batch.
    fn poll_batch(&mut self) -> Result<Option<Batch>, OperatorError> {
        let mut rows = Rows::new(&self.types);
        // With event time, each row's partition (index in `parts`) and offset.
        let mut origin: Vec<(u32, i64)> = Vec::new();
        let n = self.parts.len();
        let mut idle_rounds = 0;
        while rows.len < BATCH_SIZE && idle_rounds < n {
            let idx = self.cursor % n;
            self.cursor = idx + 1;
            let part = &mut self.parts[idx];
            if part.done {
                idle_rounds += 1;
                continue;
            }
            let mut got = false;
            // A few records of this partition at a time keeps the partitions interleaved.
            for _ in 0..256 {
                if rows.len >= BATCH_SIZE {
                    break;
                }
                match part.queue.poll(Duration::ZERO) {
                    None => break,
                    Some(Ok(m)) => {
                        got = true;
                        if m.offset() < part.next {
                            continue;
                        }
                        if let Some(ts) = part.skip_before {
                            if m.timestamp().to_millis().is_some_and(|t| t < ts) {
                                part.next = m.offset() + 1;
                                continue;
                            }
                            part.skip_before = None;
                        }
                        rows.push(&m, &self.cfg, &self.operator_id)?;
                        if self.stamp.is_some() {
                            origin.push((idx as u32, m.offset()));
                        }
                        part.next = m.offset() + 1;
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => {
                        part.done = self.cfg.bounded;
                        break;
                    }
                    Some(Err(e)) => {
                        return Err(OperatorError::Data(format!(
                            "kafka source \"{}\": reading {}-{}: {e}",
                            self.operator_id, part.topic, part.partition
                        )))
                    }
                }
            }
            if got {
                idle_rounds = 0;
            } else {
                idle_rounds += 1;
            }
        }
        if rows.len == 0 {
            return Ok(None);
        }
        let mut batch = rows.finish();
        if self.stamp.is_some() {
            self.stamp_batch(&mut batch, &origin)?;
        }
        Ok(Some(batch))
    }

    /// Sets the records' times and feeds them to their partitions' watermarks. A time that
    /// cannot be read fails the job, as a record that does not parse does.
    fn stamp_batch(
        &mut self,
        batch: &mut Batch,
        origin: &[(u32, i64)],
    ) -> Result<(), OperatorError> {
        let Some((stamper, generator)) = &mut self.stamp else {
            return Ok(());
        };
        let (parts, operator) = (&self.parts, &self.operator_id);
        let ts = stamper.timestamps(&batch.columns, &mut |row, why| {
            let (idx, offset) = origin[row];
            let part = &parts[idx as usize];
            Err(OperatorError::Data(format!(
                "kafka source \"{operator}\": the record at {}-{} offset {offset}: {why}",
                part.topic, part.partition
            )))
        })?;
        let now = Instant::now();
        generator.ensure_splits(parts.len());
        for (&t, &(idx, _)) in ts.iter().zip(origin) {
            generator.observe(idx as usize, [t], now);
        }
        batch.set_timestamps(Some(ts));
        Ok(())
    }

    async fn next_event(&mut self) -> Result<SourceEvent, OperatorError> {
        self.drive_discovery().await?;
        // Serves librdkafka's callbacks and errors; records all go to partition queues.
        if let Some(Err(e)) = self.consumer.poll(Duration::ZERO) {
            if !is_partition_eof(&e) {
                tracing::warn!(operator = %self.operator_id, error = %e, "kafka source: client error");
            }
        }
        if !self.started {
            tokio::time::sleep(IDLE_WAIT).await;
            return Ok(SourceEvent::Idle);
        }
        if let Some(batch) = self.poll_batch()? {
            return Ok(SourceEvent::Batch(batch));
        }
        if self.cfg.bounded && self.parts.iter().all(|p| p.done) {
            return Ok(SourceEvent::End);
        }
        tokio::time::sleep(IDLE_WAIT).await;
        Ok(SourceEvent::Idle)
    }

    /// The offsets of the partitions this subtask reads.
    pub fn offsets(&self) -> Vec<KafkaOffset> {
        let mut out: Vec<KafkaOffset> = self
            .parts
            .iter()
            .map(|p| KafkaOffset {
                topic: p.topic.clone(),
                partition: p.partition,
                offset: p.next,
            })
            .collect();
        // Restored offsets of this subtask's partitions not read yet (the first discovery is
        // still running, or it skipped a partition whose metadata had an error) must survive
        // a checkpoint taken meanwhile: a later restore would start them at the earliest.
        if let Some(r) = &self.restored {
            out.extend(
                r.iter()
                    .filter(|((t, p), _)| {
                        reader(t, *p, self.share, self.parallelism) == Some(self.subtask)
                            && !self
                                .parts
                                .iter()
                                .any(|part| part.topic == *t && part.partition == *p)
                    })
                    .map(|((t, p), o)| KafkaOffset {
                        topic: t.clone(),
                        partition: *p,
                        offset: *o,
                    }),
            );
        }
        out.sort();
        out
    }
}

impl Drop for KafkaSource {
    /// librdkafka's close and destroy wait for the client's threads and broker connections
    /// (a broker that does not answer holds them up): on a thread of their own, never on the
    /// async worker that drops the source. A discovery still running holds a clone and
    /// closes it when done.
    fn drop(&mut self) {
        let consumer = self.consumer.clone();
        let spawned = std::thread::Builder::new()
            .name("kafka-consumer-close".into())
            .spawn(move || {
                // The source's own reference goes when this drop returns; a discovery's when
                // it ends. The last one closes the client, here.
                let deadline = Instant::now() + Duration::from_secs(120);
                while Arc::strong_count(&consumer) > 1 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                drop(consumer);
            });
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "kafka source: no thread to close the consumer on");
        }
    }
}

impl Source for KafkaSource {
    async fn next(&mut self) -> Result<SourceEvent, OperatorError> {
        self.next_event().await
    }

    fn watermark(&mut self) -> Option<WatermarkEvent> {
        let (_, generator) = self.stamp.as_mut()?;
        // Partitions found since the last records count from now on (idle or not).
        generator.ensure_splits(self.parts.len());
        generator.poll(Instant::now())
    }

    /// Per partition the next offset.
    fn position(&self) -> Option<SourcePosition> {
        Some(SourcePosition::Kafka(self.offsets()))
    }

    /// The position, kept for the group commit at `checkpoint`'s completion when
    /// `commit-offsets` is on.
    fn snapshot_position(&mut self, checkpoint: CheckpointId) -> Option<SourcePosition> {
        let offsets = self.offsets();
        if self.cfg.commits() {
            self.pending_commits
                .push_back((checkpoint, offsets.clone()));
        }
        Some(SourcePosition::Kafka(offsets))
    }

    /// Commits the offsets of `checkpoint` (the newest snapshot at or before it) to the group.
    fn notify_checkpoint_complete(
        &mut self,
        checkpoint: CheckpointId,
    ) -> Result<(), OperatorError> {
        let mut newest = None;
        while self
            .pending_commits
            .front()
            .is_some_and(|(id, _)| *id <= checkpoint)
        {
            newest = self.pending_commits.pop_front();
        }
        if let Some((_, offsets)) = newest {
            self.commit(&offsets);
        }
        Ok(())
    }

    fn notify_checkpoint_aborted(&mut self, checkpoint: CheckpointId) -> Result<(), OperatorError> {
        self.pending_commits.retain(|(id, _)| *id != checkpoint);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> KafkaSourceConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn librdkafka_checks_the_properties_names_and_values() {
        let p = |yaml: &str| {
            let c = config(&format!(
                "bootstrap-servers: b:9092\ntopics: [t]\nproperties: {yaml}"
            ));
            c.output_schema(None).err().unwrap_or_default()
        };
        assert!(p("{fetch.max.bytes: 1048576}").is_empty());
        let typo = p("{fetch.max.byte: 1}");
        assert_eq!(typo[0].field, "properties.fetch.max.byte");
        assert!(
            typo[0].message.contains("librdkafka refuses it"),
            "{typo:?}"
        );
        let range = p("{fetch.max.bytes: -3}");
        assert_eq!(range[0].field, "properties.fetch.max.bytes", "{range:?}");
    }

    #[test]
    fn validation_reads_loads_and_runs_nothing_a_property_names() {
        // librdkafka loads a plugin as soon as `plugin.library.paths` is set (and fails on a
        // missing one), and reads `*.location` files when a client is made: validation hands
        // it neither, so these pass here and are refused, if at all, when the job starts.
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.so").display().to_string();
        let c = config(&format!(
            "bootstrap-servers: b:9092\ntopics: [t]\nproperties: {{plugin.library.paths: \
             '{missing}', ssl.ca.location: '{missing}', sasl.kerberos.keytab: '{missing}'}}"
        ));
        assert_eq!(c.output_schema(None).err(), None);
        assert!(touches_the_machine(" SSL.Keystore.Location"));
        assert!(!touches_the_machine("security.protocol"));
    }

    #[test]
    fn settings_are_checked_together() {
        let c = config(
            "bootstrap-servers: nohost\nstarting-offsets: committed\nformat: json\nproperties: {group.id: x}",
        );
        let problems = c.output_schema(None).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "bootstrap-servers",
                "properties.group.id",
                "topics",
                "group-id",
                "fields"
            ]
        );
        let ok = config("bootstrap-servers: 127.0.0.1:9092\ntopics: [a]\nformat: key-value");
        assert_eq!(ok.output_schema(None).unwrap().len(), 7);
    }
}
