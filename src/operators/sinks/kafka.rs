//! `type: kafka` with inputs: records into a Kafka topic, as text (`print`'s form) or JSON
//! objects, keyed by a field if `key-field` says so (librdkafka's default partitioner then
//! puts equal keys into one partition).
//!
//! Delivery (`delivery-guarantee`, by default the job's checkpointing mode):
//!
//! - **none**: records are handed to librdkafka and flushed when the input ends.
//! - **at-least-once**: as above, and every checkpoint's barrier waits until every record
//!   before it is acknowledged by the broker (a failed delivery fails the checkpoint and the
//!   task). After a restore, records since the checkpoint are written again.
//! - **exactly-once** (Flink's two-phase-commit `KafkaSink`): records go into a Kafka
//!   transaction. At a checkpoint's barrier the transaction is flushed (the pre-commit) and
//!   recorded in the checkpoint with its transactional id, producer id and epoch; the next
//!   record opens a new transaction. When the checkpoint completes, its transactions (and
//!   older ones) are committed. On restore, the transactions the checkpoint lists are
//!   committed (by `EndTxn` on the wire, [`super::kafka_txn`]: librdkafka cannot finish
//!   another instance's transaction), then every transactional id the old subtask used is
//!   initialised once, which aborts what was still open under it (written after the
//!   checkpoint). Readers with `isolation.level=read_committed` see each record once.
//!
//! Transactional ids are `<transactional-id-prefix>-<subtask>-<slot>`. Each transaction gets a
//! new producer (so a new epoch): a slot is used again only after its transaction is
//! committed, so an `EndTxn` of an old epoch at a restore is fenced instead of committing a
//! newer transaction. Usually two slots alternate. The next transaction's producer is made
//! (created, `init_transactions`) on a thread of its own right after the pre-commit, and a
//! committed one is closed on another, so the task never waits for either. The prefix must be unique among the jobs
//! writing to one cluster. `transaction-timeout` must exceed the longest time between a
//! checkpoint and its completion plus a restore, or the broker aborts a pre-committed
//! transaction and its records are lost (Flink's caveat too).
//!
//! The producer id and epoch come from librdkafka's statistics (`eos`), the only place it
//! reports them.

use super::kafka_txn::{end_txn, EndTxnOutcome};
use super::state::{KafkaPendingTxn, KafkaSinkState, SinkState};
use super::{sink_schema, write_json, write_record, write_value};
use crate::operators::sources::duration_serde;
use crate::operators::sources::kafka::{check_client_settings, property_text};
use crate::operators::{
    unknown_field, BuildContext, DeliveryGuarantee, EndOfInput, Operator, OperatorError,
    OperatorSpec, Problem, RestoredState,
};
use crate::record::{Batch, Schema};
use crate::runtime::message::CheckpointId;
use crate::state::OperatorSnapshot;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a flush, a commit or a transaction's start may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Slots a fresh start aborts lingering transactions under (a restore knows how many).
const FRESH_SLOTS: u32 = 2;

/// How records are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaSinkFormat {
    /// `print`'s text: the value, or `(a,b)` for several fields.
    #[default]
    Raw,
    /// One JSON object per record: `{"word":"w1","count":3}`.
    Json,
}

/// Flink's `DeliveryGuarantee` for the Kafka sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkGuarantee {
    None,
    AtLeastOnce,
    ExactlyOnce,
}

fn default_txn_timeout() -> Duration {
    Duration::from_secs(15 * 60)
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KafkaSinkConfig {
    pub bootstrap_servers: String,
    pub topic: String,
    #[serde(default)]
    pub format: KafkaSinkFormat,
    /// The field whose value is the record's key.
    pub key_field: Option<String>,
    /// Default: what the job's checkpointing gives (exactly-once checkpoints: exactly-once).
    pub delivery_guarantee: Option<SinkGuarantee>,
    /// Default: `floe-<operator id>`.
    pub transactional_id_prefix: Option<String>,
    #[serde(default = "default_txn_timeout", with = "duration_serde")]
    pub transaction_timeout: Duration,
    /// librdkafka settings passed through.
    #[serde(default)]
    pub properties: BTreeMap<String, serde_yaml::Value>,
}

const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "transactional.id",
    "transaction.timeout.ms",
    "statistics.interval.ms",
];

impl OperatorSpec for KafkaSinkConfig {
    fn output_schema(&self, input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        let mut problems = Vec::new();
        check_client_settings(
            &self.bootstrap_servers,
            &self.properties,
            RESERVED,
            &mut problems,
        );
        if self.topic.trim().is_empty() {
            problems.push(Problem::new("topic", "must name the topic to write to"));
        }
        if let (Some(key), Some(input)) = (&self.key_field, input) {
            if input.index_of(key).is_none() {
                problems.push(unknown_field("key-field", key, input));
            }
        }
        if self
            .transactional_id_prefix
            .as_deref()
            .is_some_and(|p| p.trim().is_empty())
        {
            problems.push(Problem::new(
                "transactional-id-prefix",
                "must not be empty; remove it to use `floe-<operator id>`",
            ));
        }
        if self.transaction_timeout.is_zero() {
            problems.push(Problem::new(
                "transaction-timeout",
                "must be longer than the time from a checkpoint to its completion (default 15 min)",
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        sink_schema(input)
    }
}

/// librdkafka callbacks: delivery failures and the producer id from statistics.
struct SinkContext {
    failure: Arc<Mutex<Option<String>>>,
    /// (producer id, epoch) once librdkafka reported them.
    ids: Arc<Mutex<Option<(i64, i16)>>>,
}

impl ClientContext for SinkContext {
    fn stats_raw(&self, statistics: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Stats {
            eos: Option<Eos>,
        }
        #[derive(serde::Deserialize)]
        struct Eos {
            producer_id: i64,
            producer_epoch: i64,
        }
        if let Ok(Stats { eos: Some(e) }) = serde_json::from_slice::<Stats>(statistics) {
            if e.producer_id >= 0 && e.producer_epoch >= 0 {
                if let Ok(mut ids) = self.ids.lock() {
                    *ids = Some((e.producer_id, e.producer_epoch as i16));
                }
            }
        }
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            if let Ok(mut f) = self.failure.lock() {
                f.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

type KafkaProducer = ThreadedProducer<SinkContext>;

/// One producer with the state its callbacks fill in.
struct Client {
    producer: KafkaProducer,
    failure: Arc<Mutex<Option<String>>>,
    ids: Arc<Mutex<Option<(i64, i16)>>>,
}

/// One open or pre-committed transaction.
struct Txn {
    slot: u32,
    id: String,
    client: Client,
}

/// The transactions of an exactly-once subtask.
#[derive(Default)]
struct Txns {
    /// Restored, or lingering transactions of a fresh start aborted.
    started: bool,
    current: Option<Txn>,
    /// Flushed at a barrier, waiting for their checkpoint, oldest first.
    pending: Vec<(KafkaPendingTxn, Txn)>,
    /// The producer of the next transaction (its slot, and the thread making it): a new
    /// producer and its `init_transactions` take 50 to 500 ms, so they are made while the
    /// current transaction runs, not when its first record comes.
    next: Option<(u32, std::thread::JoinHandle<Result<Client, OperatorError>>)>,
    /// Slots in use now are `current` and `pending`; `slots` is one past the highest used.
    slots: u32,
}

enum Mode {
    Unopened,
    Plain {
        flush_at_barrier: bool,
        client: Client,
    },
    Transactional(Txns),
}

/// How this subtask makes its producers: cloned into the thread that prepares the next
/// transaction's producer.
#[derive(Clone)]
struct Producers {
    operator_id: String,
    subtask: u32,
    cfg: Arc<KafkaSinkConfig>,
}

impl Producers {
    fn err(&self, what: impl std::fmt::Display) -> OperatorError {
        OperatorError::Data(format!(
            "kafka sink \"{}\" subtask {} (topic {}): {what}",
            self.operator_id, self.subtask, self.cfg.topic
        ))
    }

    fn client(&self, transactional_id: Option<&str>) -> Result<Client, OperatorError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.cfg.bootstrap_servers)
            .set(
                "client.id",
                format!("floe-{}-{}", self.operator_id, self.subtask),
            )
            .set("linger.ms", "5");
        for (k, v) in &self.cfg.properties {
            if let Some(v) = property_text(v) {
                config.set(k, v);
            }
        }
        if let Some(id) = transactional_id {
            config
                .set("transactional.id", id)
                .set(
                    "transaction.timeout.ms",
                    self.cfg.transaction_timeout.as_millis().to_string(),
                )
                .set("statistics.interval.ms", "50");
        }
        let failure = Arc::new(Mutex::new(None));
        let ids = Arc::new(Mutex::new(None));
        let producer: KafkaProducer = config
            .create_with_context(SinkContext {
                failure: failure.clone(),
                ids: ids.clone(),
            })
            .map_err(|e| {
                OperatorError::Config(format!(
                    "kafka sink \"{}\": cannot create the producer: {e}",
                    self.operator_id
                ))
            })?;
        Ok(Client {
            producer,
            failure,
            ids,
        })
    }

    /// A producer for `id` with its transactions initialised: whatever was open under `id`
    /// is aborted now.
    fn init_txn_client(&self, id: &str) -> Result<Client, OperatorError> {
        let client = self.client(Some(id))?;
        client
            .producer
            .init_transactions(TIMEOUT)
            .map_err(|e| self.err(format!("cannot initialise transactions of {id}: {e}")))?;
        Ok(client)
    }
}

/// One running Kafka sink subtask.
pub struct KafkaSink {
    operator_id: String,
    subtask: u32,
    cfg: KafkaSinkConfig,
    prefix: String,
    key: Option<usize>,
    /// JSON: `"name":` per field, escaped once.
    json_keys: Vec<Vec<u8>>,
    value: Vec<u8>,
    key_buf: Vec<u8>,
    mode: Mode,
    end: EndOfInput,
    producers: Producers,
}

impl KafkaSink {
    pub fn new(
        c: &KafkaSinkConfig,
        input: &Schema,
        ctx: &BuildContext,
    ) -> Result<Self, OperatorError> {
        let key = match &c.key_field {
            Some(k) => Some(input.index_of(k).ok_or_else(|| {
                OperatorError::Config(format!("`key-field` {k}: not a field of the input {input}"))
            })?),
            None => None,
        };
        let json_keys = super::json_keys(input);
        Ok(KafkaSink {
            operator_id: ctx.operator_id.clone(),
            subtask: ctx.subtask,
            prefix: c
                .transactional_id_prefix
                .clone()
                .unwrap_or_else(|| format!("floe-{}", ctx.operator_id)),
            cfg: c.clone(),
            key,
            json_keys,
            value: Vec::with_capacity(256),
            key_buf: Vec::with_capacity(64),
            mode: Mode::Unopened,
            end: EndOfInput::Finished,
            producers: Producers {
                operator_id: ctx.operator_id.clone(),
                subtask: ctx.subtask,
                cfg: Arc::new(c.clone()),
            },
        })
    }

    fn err(&self, what: impl std::fmt::Display) -> OperatorError {
        self.producers.err(what)
    }

    fn init_txn_client(&self, id: &str) -> Result<Client, OperatorError> {
        self.producers.init_txn_client(id)
    }

    fn txn_id(&self, subtask: u32, slot: u32) -> String {
        transactional_id(&self.prefix, subtask, slot)
    }

    /// Aborts what is open under the ids of `subtask`'s slots below `slots`.
    /// Returns the initialised producers, in slot order.
    fn abort_lingering(&self, subtask: u32, slots: u32) -> Result<Vec<Client>, OperatorError> {
        let ids: Vec<String> = (0..slots).map(|slot| self.txn_id(subtask, slot)).collect();
        self.init_all(&ids)
    }

    /// Producers for `ids` with their transactions initialised (what was open under them
    /// aborted), made at the same time: each takes a round trip or more to the coordinator.
    fn init_all(&self, ids: &[String]) -> Result<Vec<Client>, OperatorError> {
        let producers = &self.producers;
        let clients = std::thread::scope(|scope| {
            let making: Vec<_> = ids
                .iter()
                .map(|id| scope.spawn(move || producers.init_txn_client(id)))
                .collect();
            making
                .into_iter()
                .map(|m| {
                    m.join()
                        .unwrap_or_else(|_| Err(self.err("bug: making a producer panicked")))
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        for id in ids {
            tracing::debug!(operator = %self.operator_id, transactional_id = %id, "kafka sink: aborted what was open");
        }
        Ok(clients)
    }

    /// Starts making the producer of the next transaction, in the lowest slot that neither
    /// the open transaction nor a pre-committed one holds, unless one is being made. Each
    /// transaction still gets a producer of its own, so a new epoch: an `EndTxn` of an old
    /// epoch at a restore is fenced instead of committing a newer transaction.
    fn prepare_next(&mut self) {
        let Mode::Transactional(t) = &mut self.mode else {
            return;
        };
        if t.next.is_some() || !t.started {
            return;
        }
        let slot = (0..)
            .find(|s| {
                !t.pending.iter().any(|(_, p)| p.slot == *s)
                    && t.current.as_ref().is_none_or(|c| c.slot != *s)
            })
            .expect("a free slot");
        t.slots = t.slots.max(slot + 1);
        let producers = self.producers.clone();
        let id = transactional_id(&self.prefix, self.subtask, slot);
        let making = std::thread::Builder::new()
            .name("kafka-producer".into())
            .spawn(move || producers.init_txn_client(&id));
        match making {
            Ok(handle) => t.next = Some((slot, handle)),
            // No thread: the next transaction makes its producer when it starts.
            Err(e) => {
                tracing::warn!(operator = %self.operator_id, error = %e, "kafka sink: cannot start a thread to make the next producer")
            }
        }
    }

    /// The open transaction, started in the lowest free slot if there is none.
    fn current(&mut self) -> Result<&Txn, OperatorError> {
        let Mode::Transactional(t) = &self.mode else {
            return Err(self.err("bug: no transactions outside exactly-once"));
        };
        // A fresh start: slot 0's producer, which aborted what was open under it, begins
        // the first transaction.
        let mut first = None;
        if !t.started {
            let mut clients = self.abort_lingering(self.subtask, FRESH_SLOTS)?.into_iter();
            if let Some(client) = clients.next() {
                let id = self.txn_id(self.subtask, 0);
                first = Some(Txn {
                    slot: 0,
                    id,
                    client,
                });
            }
            clients.for_each(retire_client);
            if let Mode::Transactional(t) = &mut self.mode {
                t.started = true;
            }
        }
        let Mode::Transactional(t) = &self.mode else {
            unreachable!("checked above")
        };
        if t.current.is_none() {
            let prepared = match &mut self.mode {
                Mode::Transactional(t) => t.next.take(),
                _ => None,
            };
            let txn = match (first, prepared) {
                (Some(txn), _) => txn,
                (None, Some((slot, making))) => {
                    let client = making
                        .join()
                        .map_err(|_| self.err("bug: making a producer panicked"))??;
                    let id = self.txn_id(self.subtask, slot);
                    Txn { slot, id, client }
                }
                (None, None) => {
                    let Mode::Transactional(t) = &self.mode else {
                        unreachable!("checked above")
                    };
                    let slot = (0..)
                        .find(|s| !t.pending.iter().any(|(_, p)| p.slot == *s))
                        .expect("a free slot");
                    let id = self.txn_id(self.subtask, slot);
                    let client = self.init_txn_client(&id)?;
                    Txn { slot, id, client }
                }
            };
            txn.client
                .producer
                .begin_transaction()
                .map_err(|e| self.err(format!("cannot begin a transaction of {}: {e}", txn.id)))?;
            if let Mode::Transactional(t) = &mut self.mode {
                t.slots = t.slots.max(txn.slot + 1);
                t.current = Some(txn);
            }
        }
        match &self.mode {
            Mode::Transactional(Txns {
                current: Some(txn), ..
            }) => Ok(txn),
            _ => unreachable!("set above"),
        }
    }

    fn encode(&mut self, batch: &Batch, row: usize) {
        self.value.clear();
        match self.cfg.format {
            KafkaSinkFormat::Raw => write_record(&mut self.value, batch, row),
            KafkaSinkFormat::Json => write_json(&mut self.value, &self.json_keys, batch, row),
        }
        self.key_buf.clear();
        if let Some(k) = self.key {
            write_value(&mut self.key_buf, batch.columns[k].value(row));
        }
    }

    /// Hands one encoded record to `producer`, waiting while its queue is full.
    fn send(
        producer: &KafkaProducer,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> Result<(), KafkaError> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let mut record = BaseRecord::to(topic).payload(value);
            if let Some(k) = key {
                record = record.key(k);
            }
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    fn check_failure(&self, client: &Client) -> Result<(), OperatorError> {
        let failure = client.failure.lock().ok().and_then(|f| f.clone());
        match failure {
            Some(e) => Err(self.err(format!("a record was not delivered: {e}"))),
            None => Ok(()),
        }
    }

    /// Waits until every record handed to `client` is acknowledged. rdkafka's `flush` polls
    /// the producer's queue in steps of 100 ms, and with a threaded producer (whose own
    /// thread serves that queue) each step lasts the whole 100 ms: so ask librdkafka whether
    /// it is done (`rd_kafka_flush` with no wait) every millisecond instead.
    fn flush(&self, client: &Client) -> Result<(), OperatorError> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match client.producer.flush(Duration::ZERO) {
                Ok(()) => break,
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(self.err(format!("flush failed: {e}"))),
            }
        }
        self.check_failure(client)
    }

    /// The producer id and epoch of a transactional client, waiting for librdkafka's next
    /// statistics if they have not come yet.
    fn ids(&self, txn: &Txn) -> Result<(i64, i16), OperatorError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(ids) = txn.client.ids.lock().ok().and_then(|i| *i) {
                return Ok(ids);
            }
            if Instant::now() >= deadline {
                return Err(self.err(format!(
                    "librdkafka did not report the producer id of {}",
                    txn.id
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn commit(&self, txn: &Txn) -> Result<(), OperatorError> {
        txn.client
            .producer
            .commit_transaction(TIMEOUT)
            .map_err(|e| self.err(format!("cannot commit transaction {}: {e}", txn.id)))
    }

    /// Commits a transaction of a checkpoint being restored.
    fn commit_restored(&self, p: &KafkaPendingTxn) -> Result<(), OperatorError> {
        let outcome = end_txn(
            &self.cfg.bootstrap_servers,
            &p.transactional_id,
            p.producer_id,
            p.producer_epoch,
            true,
            TIMEOUT,
        )
        .map_err(|e| self.err(e))?;
        match outcome {
            EndTxnOutcome::Done => {
                tracing::info!(operator = %self.operator_id, transactional_id = %p.transactional_id, checkpoint_id = p.checkpoint_id, "kafka sink: committed a transaction of the restored checkpoint")
            }
            EndTxnOutcome::Refused => {
                tracing::warn!(operator = %self.operator_id, transactional_id = %p.transactional_id, "kafka sink: the broker refused to commit a transaction of the restored checkpoint by closing the connection (tansu does so for a fenced epoch): taken as finished before")
            }
            EndTxnOutcome::Fenced | EndTxnOutcome::NotOpen => {
                tracing::debug!(operator = %self.operator_id, transactional_id = %p.transactional_id, ?outcome, "kafka sink: transaction of the restored checkpoint was finished before")
            }
        }
        Ok(())
    }
}

impl Operator for KafkaSink {
    fn open(&mut self, guarantee: DeliveryGuarantee) -> Result<(), OperatorError> {
        let effective = match (self.cfg.delivery_guarantee, guarantee) {
            (Some(SinkGuarantee::ExactlyOnce), DeliveryGuarantee::None) => {
                return Err(OperatorError::Config(format!(
                    "kafka sink \"{}\": `delivery-guarantee: exactly-once` commits with \
                     checkpoints, but the job takes none; set \
                     `execution.checkpointing.interval` or choose at-least-once",
                    self.operator_id
                )))
            }
            (Some(g), _) => g,
            (None, DeliveryGuarantee::ExactlyOnce) => SinkGuarantee::ExactlyOnce,
            (None, DeliveryGuarantee::AtLeastOnce) => SinkGuarantee::AtLeastOnce,
            (None, DeliveryGuarantee::None) => SinkGuarantee::None,
        };
        self.mode = match effective {
            SinkGuarantee::ExactlyOnce => Mode::Transactional(Txns::default()),
            g => Mode::Plain {
                flush_at_barrier: g == SinkGuarantee::AtLeastOnce,
                client: self.producers.client(None)?,
            },
        };
        Ok(())
    }

    fn process(&mut self, batch: Batch, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        if matches!(self.mode, Mode::Unopened) {
            self.open(DeliveryGuarantee::None)?;
        }
        if matches!(self.mode, Mode::Transactional(_)) {
            self.current()?;
        }
        for row in 0..batch.len() {
            self.encode(&batch, row);
            let key = self.key.map(|_| self.key_buf.as_slice());
            let client = match &self.mode {
                Mode::Plain { client, .. } => client,
                Mode::Transactional(Txns {
                    current: Some(t), ..
                }) => &t.client,
                _ => return Err(self.err("bug: no producer")),
            };
            Self::send(&client.producer, &self.cfg.topic, key, &self.value)
                .map_err(|e| self.err(format!("cannot send: {e}")))?;
        }
        let client = match &self.mode {
            Mode::Plain { client, .. } => client,
            Mode::Transactional(Txns {
                current: Some(t), ..
            }) => &t.client,
            _ => return Ok(()),
        };
        self.check_failure(client)
    }

    /// At-least-once: everything before the barrier is acknowledged. Exactly-once: the open
    /// transaction is flushed (pre-committed) and listed with the older pending ones.
    fn snapshot_state_at(
        &mut self,
        checkpoint: CheckpointId,
    ) -> Result<Option<OperatorSnapshot>, OperatorError> {
        match &self.mode {
            Mode::Unopened => return Ok(None),
            Mode::Plain {
                flush_at_barrier,
                client,
            } => {
                if *flush_at_barrier {
                    self.flush(client)?;
                }
                return Ok(None);
            }
            Mode::Transactional(_) => {}
        }
        let Mode::Transactional(t) = &mut self.mode else {
            unreachable!("matched above")
        };
        if let Some(txn) = t.current.take() {
            // On an error the transaction is dropped with its producer, which leaves it open
            // at the broker; a restore aborts it.
            let result = self.flush(&txn.client).and_then(|()| self.ids(&txn)).map(
                |(producer_id, producer_epoch)| KafkaPendingTxn {
                    checkpoint_id: checkpoint.0,
                    transactional_id: txn.id.clone(),
                    producer_id,
                    producer_epoch,
                },
            );
            let pending = result?;
            if let Mode::Transactional(t) = &mut self.mode {
                t.pending.push((pending, txn));
            }
            self.prepare_next();
        }
        let Mode::Transactional(t) = &self.mode else {
            unreachable!("matched above")
        };
        Ok(Some(
            SinkState::Kafka(KafkaSinkState {
                subtask: self.subtask,
                prefix: self.prefix.clone(),
                slots: t.slots.max(FRESH_SLOTS),
                pending: t.pending.iter().map(|(p, _)| p.clone()).collect(),
            })
            .into_snapshot(Vec::new()),
        ))
    }

    /// The commit: every transaction pre-committed for `checkpoint` or an older one.
    fn notify_checkpoint_complete(
        &mut self,
        checkpoint: CheckpointId,
    ) -> Result<(), OperatorError> {
        let Mode::Transactional(t) = &mut self.mode else {
            return Ok(());
        };
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut t.pending)
            .into_iter()
            .partition(|(p, _)| p.checkpoint_id <= checkpoint.0);
        t.pending = keep;
        for (p, txn) in due {
            self.commit(&txn)?;
            tracing::debug!(operator = %self.operator_id, subtask = self.subtask, checkpoint_id = p.checkpoint_id, transactional_id = %txn.id, "kafka sink committed");
            // Closing a producer takes up to 100 ms: not on the task.
            retire(txn);
        }
        self.prepare_next();
        Ok(())
    }

    fn notify_checkpoint_aborted(&mut self, checkpoint: CheckpointId) -> Result<(), OperatorError> {
        // Its transactions stay pending: the next completed checkpoint commits them.
        tracing::debug!(operator = %self.operator_id, subtask = self.subtask, checkpoint_id = checkpoint.0, "kafka sink: checkpoint aborted, its transactions wait for the next one");
        Ok(())
    }

    fn restore_state(&mut self, state: RestoredState) -> Result<(), OperatorError> {
        let states = super::restored_sink_states("kafka", &self.operator_id, state)?;
        let transactional = matches!(self.mode, Mode::Transactional(_));
        // This subtask's own old state, under the prefix it uses now.
        let mut own = false;
        let mut slots = FRESH_SLOTS;
        let mut old_ids = Vec::new();
        for s in &states {
            let SinkState::Kafka(k) = s else {
                if !transactional {
                    // At-least-once keeps no state of its own.
                    continue;
                }
                return Err(OperatorError::Config(format!(
                    "kafka sink \"{}\": the checkpoint holds another sink's state under this \
                     operator id; give the sink another `id` or start without restoring its state",
                    self.operator_id
                )));
            };
            // Commit first: initialising an id would abort its open transaction.
            for p in &k.pending {
                self.commit_restored(p)?;
            }
            if k.subtask == self.subtask && k.prefix == self.prefix {
                own = true;
                slots = slots.max(k.slots);
            }
            // The old subtask's ids, under the prefix it used.
            old_ids.extend((0..k.slots).map(|slot| transactional_id(&k.prefix, k.subtask, slot)));
        }
        if transactional && !own {
            old_ids.extend((0..FRESH_SLOTS).map(|slot| self.txn_id(self.subtask, slot)));
        }
        // Initialising every old id aborts what was still open under it (written after the
        // checkpoint), also when this run writes without transactions: an open transaction
        // holds back read_committed readers until it times out.
        self.init_all(&old_ids)?.into_iter().for_each(retire_client);
        if !transactional {
            return Ok(());
        }
        if let Mode::Transactional(t) = &mut self.mode {
            t.started = true;
            t.slots = slots;
        }
        // The first transaction's producer, made while the job starts.
        self.prepare_next();
        Ok(())
    }

    fn end_of_input(&mut self, why: EndOfInput) {
        self.end = why;
    }

    fn finish(&mut self, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        if let Mode::Plain { client, .. } = &self.mode {
            return self.flush(client);
        }
        let (current, pending) = match &mut self.mode {
            Mode::Transactional(t) => (t.current.take(), std::mem::take(&mut t.pending)),
            Mode::Unopened | Mode::Plain { .. } => return Ok(()),
        };
        match self.end {
            // A bounded job: nothing is replayed, everything written is final.
            EndOfInput::Finished => {
                for (_, txn) in &pending {
                    self.commit(txn)?;
                }
                if let Some(txn) = current {
                    self.flush(&txn.client)?;
                    self.commit(&txn)?;
                }
                Ok(())
            }
            // Stopped: a restore replays what follows the last completed checkpoint; what
            // was written since is aborted. Pending transactions stay open (dropping a
            // producer leaves its transaction open at the broker) for the restore to commit
            // or abort as its checkpoint says.
            EndOfInput::Stopped => {
                if let Some(txn) = current {
                    let _ = txn.client.producer.abort_transaction(TIMEOUT);
                }
                drop(pending);
                Ok(())
            }
        }
    }
}

/// `<transactional-id-prefix>-<subtask>-<slot>`.
fn transactional_id(prefix: &str, subtask: u32, slot: u32) -> String {
    format!("{prefix}-{subtask}-{slot}")
}

/// Drops a committed transaction's producer on a thread of its own (librdkafka's destroy
/// waits for its threads); if no thread can be started, here.
fn retire(txn: Txn) {
    retire_client(txn.client);
}

fn retire_client(client: Client) {
    let spawned = std::thread::Builder::new()
        .name("kafka-producer".into())
        .spawn(move || drop(client));
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "kafka sink: closed a producer on the task");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::DataType;

    fn config(yaml: &str) -> KafkaSinkConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn settings_are_checked_together() {
        let input = Schema::new([("word", DataType::Str), ("count", DataType::Int)]);
        let c =
            config("bootstrap-servers: 'x:y'\ntopic: ''\nkey-field: wrd\ntransaction-timeout: 0");
        let problems = c.output_schema(Some(&input)).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "bootstrap-servers",
                "topic",
                "key-field",
                "transaction-timeout"
            ]
        );
        assert!(
            problems[2].message.contains("did you mean \"word\""),
            "{problems:?}"
        );
        let ok = config("bootstrap-servers: 127.0.0.1:9092\ntopic: out\nkey-field: word");
        assert!(ok.output_schema(Some(&input)).is_ok());
    }

    #[test]
    fn records_encode_as_text_or_json_with_the_key() {
        let input = Schema::new([("word", DataType::Str), ("count", DataType::Int)]);
        let ctx = BuildContext {
            operator_id: "out".into(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            base_dir: ".".into(),
        };
        let mut b = crate::record::StrColumnBuilder::default();
        b.push(b"w1");
        let batch = Batch::new(vec![
            crate::record::Column::Str(b.finish()),
            crate::record::Column::Int(vec![3]),
        ]);
        let c = config("bootstrap-servers: 127.0.0.1:9092\ntopic: out\nkey-field: word");
        let mut s = KafkaSink::new(&c, &input, &ctx).unwrap();
        s.encode(&batch, 0);
        assert_eq!(s.value, b"(w1,3)");
        assert_eq!(s.key_buf, b"w1");
        let c = config("bootstrap-servers: 127.0.0.1:9092\ntopic: out\nformat: json");
        let mut s = KafkaSink::new(&c, &input, &ctx).unwrap();
        s.encode(&batch, 0);
        assert_eq!(s.value, br#"{"word":"w1","count":3}"#);
        assert_eq!(s.prefix, "floe-out");
        assert_eq!(s.txn_id(1, 0), "floe-out-1-0");
    }
}
