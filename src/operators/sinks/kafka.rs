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
//!   committed with Kafka's `EndTxn` ([`super::kafka_resume`]: librdkafka cannot finish
//!   another instance's transaction), then every other transactional id a subtask of the
//!   checkpoint used is initialised, which aborts what was still open under it (written
//!   after the checkpoint). Readers with `isolation.level=read_committed` see each record
//!   once.
//!
//! Transactional ids are `<transactional-id-prefix>-<subtask>-<slot>`; which slot holds what
//! is the state machine of [`super::kafka_txn`]. Each transaction gets a new producer (a new
//! epoch), made ahead on a thread of its own; a slot's id is initialised again only once a
//! checkpoint taken after its transaction's commit has completed, so that a restore's commit
//! of a transaction its checkpoint lists is always answered for that transaction. The prefix
//! must be unique among the jobs writing to one cluster. `transaction-timeout` must exceed the
//! longest time between a checkpoint and its completion plus a restore, or the broker aborts a
//! pre-committed transaction and its records are lost (Flink's caveat too); a restore that
//! finds one so is logged as an error.
//!
//! Nothing here blocks the task's async worker: flushes, commits, aborts, the restore's broker
//! calls and waits for queue room run on threads of their own and are left pending for the task
//! to await ([`Operator::take_pending`]); producers are made and closed on threads too.

pub use super::kafka_producer::open_transactional_producers;
use super::kafka_producer::{make_ahead, retire, Client, Handoff, Producers, Slot};
use super::kafka_resume::{self, Ended, Security, TxnRef};
use super::kafka_txn::{Slots, ID_POOL};
use super::state::{KafkaPendingTxn, KafkaSinkState, SinkState};
use super::{sink_schema, write_json, write_record, write_value};
use crate::ids::CheckpointId;
use crate::operators::sources::duration_serde;
use crate::operators::sources::kafka::check_client_settings;
use crate::operators::{
    unknown_field, BuildContext, DeliveryGuarantee, EndOfInput, Operator, OperatorError,
    OperatorSpec, PendingWork, Problem, RestoredState,
};
use crate::record::{Batch, Schema};
use crate::state::OperatorSnapshot;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a restore tries to get an answer to the commit of one transaction.
const RESUME_TIMEOUT: Duration = Duration::from_secs(60);

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
        if self.delivery_guarantee == Some(SinkGuarantee::ExactlyOnce) {
            problems.extend(self.exactly_once_problem());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        sink_schema(input)
    }

    fn check_guarantee(&self, job: DeliveryGuarantee) -> Vec<Problem> {
        match (self.delivery_guarantee, job) {
            (None, DeliveryGuarantee::ExactlyOnce) => {
                self.exactly_once_problem().into_iter().collect()
            }
            _ => Vec::new(),
        }
    }
}

impl KafkaSinkConfig {
    /// Why this sink cannot write exactly-once with its client settings, if it cannot: a
    /// restore commits the checkpoint's transactions through floe's own Kafka client
    /// ([`super::kafka_resume`]), which must reach the brokers as librdkafka does.
    pub fn exactly_once_problem(&self) -> Option<Problem> {
        let properties = super::kafka_producer::properties_text(&self.properties);
        Security::from_properties(&properties).err().map(|why| {
            Problem::new(
                "delivery-guarantee",
                format!(
                    "exactly-once cannot work with these client settings: a restore commits the \
                     checkpoint's transactions with Kafka's EndTxn request sent by floe itself \
                     (librdkafka cannot resume another producer's transaction), and {why}; \
                     write `delivery-guarantee: at-least-once`, or reach the brokers through a \
                     PLAINTEXT or SASL_PLAINTEXT listener"
                ),
            )
        })
    }
}

/// Records as bytes: the value (`format`) and the key (`key-field`). Cloned into a thread
/// that sends the rest of a batch while librdkafka's queue is full.
#[derive(Clone)]
struct Encoder {
    format: KafkaSinkFormat,
    key: Option<usize>,
    /// JSON: `"name":` per field, escaped once.
    json_keys: Arc<Vec<Vec<u8>>>,
    value: Vec<u8>,
    key_buf: Vec<u8>,
}

impl Encoder {
    fn encode(&mut self, batch: &Batch, row: usize) {
        self.value.clear();
        match self.format {
            KafkaSinkFormat::Raw => write_record(&mut self.value, batch, row),
            KafkaSinkFormat::Json => write_json(&mut self.value, &self.json_keys, batch, row),
        }
        self.key_buf.clear();
        if let Some(k) = self.key {
            write_value(&mut self.key_buf, batch.columns[k].value(row));
        }
    }

    fn key(&self) -> Option<&[u8]> {
        self.key.map(|_| self.key_buf.as_slice())
    }

    /// Sends rows `from..` of `batch`; the first row the queue had no room for, if any.
    fn send_rows(
        &mut self,
        client: &Client,
        topic: &str,
        batch: &Batch,
        from: usize,
    ) -> Result<Option<usize>, String> {
        for row in from..batch.len() {
            self.encode(batch, row);
            match client.send(topic, self.key(), &self.value) {
                Ok(()) => {}
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    return Ok(Some(row))
                }
                Err(e) => return Err(format!("cannot send: {e}")),
            }
        }
        Ok(None)
    }

    /// Sends rows `from..` of `batch`, waiting for queue room. Blocking.
    fn send_rows_waiting(
        &mut self,
        client: &Client,
        topic: &str,
        batch: &Batch,
        from: usize,
    ) -> Result<(), String> {
        for row in from..batch.len() {
            self.encode(batch, row);
            client.send_waiting(topic, self.key(), &self.value)?;
        }
        client.failure().map_or(Ok(()), Err)
    }
}

/// What a restore or a fresh start did: the slots whose transactions it committed, and one
/// producer it made to abort what was open, kept for the first transaction (the others are
/// closed: each later transaction makes its own).
#[derive(Clone)]
struct Started {
    ready: Option<(u32, Arc<Client>)>,
    committed: Vec<u32>,
}

/// Where an exactly-once subtask stands before its first transaction.
enum Start {
    /// Nothing restored: the ids of an earlier run are cleaned up first.
    Fresh,
    /// The states of a checkpoint to restore, with their id pools.
    Restore(Vec<Restored>),
    /// The work is running (the task awaits it before the next call).
    Running(Arc<Handoff<Started>>),
    Done,
}

/// The transactions of an exactly-once subtask.
struct Exactly {
    slots: Slots,
    /// The producer of each slot in use, made or being made.
    producers: BTreeMap<u32, Slot>,
    /// What the checkpoint lists of each pre-committed slot.
    pre_committed: BTreeMap<u32, KafkaPendingTxn>,
    start: Start,
}

enum Mode {
    Unopened,
    Plain {
        flush_at_barrier: bool,
        client: Arc<Client>,
        /// An exactly-once checkpoint's states, restored: their transactions are committed
        /// and their ids cleaned up before the first record.
        restored: Option<Vec<Restored>>,
    },
    Exactly(Box<Exactly>),
}

/// A restored state of an exactly-once subtask and its id pool (`None`: written before
/// pools).
type Restored = (KafkaSinkState, Option<u32>);

/// One running Kafka sink subtask.
pub struct KafkaSink {
    cfg: Arc<KafkaSinkConfig>,
    prefix: String,
    encoder: Encoder,
    mode: Mode,
    end: EndOfInput,
    producers: Producers,
    /// Blocking work the last call started, for the task to await.
    pending: Option<PendingWork>,
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
        let cfg = Arc::new(c.clone());
        Ok(KafkaSink {
            prefix: c
                .transactional_id_prefix
                .clone()
                .unwrap_or_else(|| format!("floe-{}", ctx.operator_id)),
            encoder: Encoder {
                format: c.format,
                key,
                json_keys: Arc::new(super::json_keys(input)),
                value: Vec::with_capacity(256),
                key_buf: Vec::with_capacity(64),
            },
            mode: Mode::Unopened,
            end: EndOfInput::Finished,
            producers: Producers {
                operator_id: ctx.operator_id.clone(),
                subtask: ctx.subtask,
                cfg: cfg.clone(),
            },
            cfg,
            pending: None,
        })
    }

    fn err(&self, what: impl std::fmt::Display) -> OperatorError {
        self.producers.err(what)
    }

    /// Leaves `work` for the task to await, after what is pending already.
    fn defer(
        &mut self,
        name: &str,
        work: impl FnOnce() -> Result<(), OperatorError> + Send + 'static,
    ) {
        let before = self.pending.take();
        self.pending = Some(PendingWork::spawn(name, move || {
            if let Some(b) = before {
                b.wait_blocking()?;
            }
            work()
        }));
    }

    /// The exactly-once state, with the outcome of its start taken in.
    fn exactly(&mut self) -> Result<&mut Exactly, OperatorError> {
        let KafkaSink {
            mode, producers, ..
        } = self;
        let Mode::Exactly(x) = mode else {
            return Err(producers.err("bug: no transactions outside exactly-once"));
        };
        match &x.start {
            Start::Done => {}
            Start::Running(h) => {
                let started = h
                    .now()
                    .ok_or_else(|| producers.err("bug: the sink's start was not awaited"))?
                    .map_err(OperatorError::Data)?;
                if let Some((slot, client)) = started.ready {
                    x.slots
                        .made(slot)
                        .map_err(|e| OperatorError::Data(e.to_string()))?;
                    x.producers.insert(slot, Handoff::ready(client));
                }
                for slot in started.committed {
                    x.slots
                        .committed_at_restore(slot)
                        .map_err(|e| OperatorError::Data(e.to_string()))?;
                }
                x.start = Start::Done;
            }
            Start::Fresh | Start::Restore(_) => {
                return Err(producers.err("bug: the sink's start was not awaited"))
            }
        }
        Ok(x)
    }

    /// Starts making the producer of the next transaction unless one is made or being made.
    fn make_next(&mut self) -> Result<(), OperatorError> {
        let (prefix, subtask) = (self.prefix.clone(), self.producers.subtask);
        let producers = self.producers.clone();
        let x = self.exactly()?;
        if x.slots.next().is_none() {
            // None: every slot of the pool holds a transaction; the next record says so.
            if let Some(slot) = x.slots.reserve() {
                let id = transactional_id(&prefix, subtask, slot);
                x.producers.insert(slot, make_ahead(&producers, id));
            }
        }
        Ok(())
    }

    /// The open transaction's producer, opening one if there is none; false while the
    /// producer is still being made (the caller leaves work that waits for it and begins the
    /// transaction).
    fn open_txn(&mut self) -> Result<(Slot, bool), OperatorError> {
        let bug = || OperatorError::Data("bug: a transaction slot without its producer".into());
        let x = self.exactly()?;
        if let Some(open) = x.slots.current() {
            return Ok((x.producers.get(&open).cloned().ok_or_else(bug)?, true));
        }
        self.make_next()?;
        let x = self.exactly()?;
        let pool = x.slots.pool();
        let slot = x.slots.next().ok_or_else(|| {
            self.err(format!(
                "all {pool} transactional ids of this subtask hold transactions that wait for \
                 a checkpoint to complete ({} checkpoints in a row did not): the task fails \
                 and restores its last completed checkpoint, which aborts them (Flink's \
                 \"too many ongoing snapshots\"); find why checkpoints do not complete",
                pool.saturating_sub(2)
            ))
        })?;
        let x = self.exactly()?;
        let producer = x.producers.get(&slot).cloned().ok_or_else(bug)?;
        x.slots
            .open(slot)
            .map_err(|e| OperatorError::Data(e.to_string()))?;
        match producer.now() {
            Some(Ok(client)) => {
                client.begin().map_err(|e| self.err(e))?;
                Ok((producer, true))
            }
            Some(Err(e)) => Err(self.err(e)),
            None => Ok((producer, false)),
        }
    }

    fn process_exactly(&mut self, batch: Batch) -> Result<(), OperatorError> {
        let (producer, begun) = self.open_txn()?;
        if !begun {
            let (topic, err) = (self.cfg.topic.clone(), self.producers.clone());
            let mut encoder = self.encoder.clone();
            self.defer("kafka-send", move || {
                let client = producer.wait().map_err(|e| err.err(e))?;
                client.begin().map_err(|e| err.err(&e))?;
                encoder
                    .send_rows_waiting(&client, &topic, &batch, 0)
                    .map_err(|e| err.err(e))
            });
            return Ok(());
        }
        let client = producer
            .now()
            .and_then(Result::ok)
            .ok_or_else(|| self.err("bug: no producer"))?;
        self.send(client, batch)
    }

    /// Sends `batch` through `client`; what the queue has no room for goes on a thread that
    /// waits for room.
    fn send(&mut self, client: Arc<Client>, batch: Batch) -> Result<(), OperatorError> {
        match self.encoder.send_rows(&client, &self.cfg.topic, &batch, 0) {
            Ok(None) => client.failure().map_or(Ok(()), |e| Err(self.err(e))),
            Ok(Some(row)) => {
                let (topic, err) = (self.cfg.topic.clone(), self.producers.clone());
                let mut encoder = self.encoder.clone();
                self.defer("kafka-send", move || {
                    encoder
                        .send_rows_waiting(&client, &topic, &batch, row)
                        .map_err(|e| err.err(e))
                });
                Ok(())
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// The pre-commit at `checkpoint`'s barrier: the open transaction is flushed (on a
    /// thread, awaited before the snapshot goes to the checkpoint) and listed.
    fn snapshot_exactly(&mut self, checkpoint: CheckpointId) -> Result<SinkState, OperatorError> {
        let x = self.exactly()?;
        if let Some(slot) = x.slots.pre_commit(checkpoint.0) {
            let client = x
                .producers
                .get(&slot)
                .and_then(|p| p.now())
                .and_then(Result::ok)
                .ok_or_else(|| {
                    self.producers
                        .err("bug: a pre-committed transaction without a producer")
                })?;
            let ids = client
                .txn
                .clone()
                .ok_or_else(|| self.producers.err("bug: not transactional"))?;
            let pending = KafkaPendingTxn {
                checkpoint_id: checkpoint.0,
                transactional_id: ids.transactional_id,
                producer_id: ids.producer_id,
                producer_epoch: ids.epoch,
            };
            tracing::debug!(operator = %self.producers.operator_id, subtask = self.producers.subtask, checkpoint_id = checkpoint.0, transactional_id = %pending.transactional_id, producer_id = pending.producer_id, epoch = pending.producer_epoch, "kafka sink: pre-committed");
            self.exactly()?.pre_committed.insert(slot, pending);
            let err = self.producers.clone();
            self.defer("kafka-flush", move || {
                client.flush().map_err(|e| err.err(e))
            });
        }
        self.make_next()?;
        let (subtask, prefix) = (self.producers.subtask, self.prefix.clone());
        let x = self.exactly()?;
        Ok(SinkState::KafkaPooled {
            state: KafkaSinkState {
                subtask,
                prefix,
                slots: x.slots.held_len(),
                pending: x
                    .slots
                    .pending()
                    .into_iter()
                    .filter_map(|(slot, _)| x.pre_committed.get(&slot).cloned())
                    .collect(),
            },
            id_pool: x.slots.pool(),
        })
    }

    /// Commits the transactions pre-committed for `checkpoint` or earlier, oldest first, on
    /// a thread; their producers are closed after.
    fn commit_due(&mut self, checkpoint: CheckpointId) -> Result<(), OperatorError> {
        let (operator, subtask) = (self.producers.operator_id.clone(), self.producers.subtask);
        let x = self.exactly()?;
        let mut due = Vec::new();
        for slot in x.slots.complete(checkpoint.0) {
            let producer = x.producers.remove(&slot);
            let txn = x.pre_committed.remove(&slot);
            if let (Some(producer), Some(txn)) = (producer, txn) {
                due.push((producer, txn));
            }
        }
        if !due.is_empty() {
            let err = self.producers.clone();
            self.defer("kafka-commit", move || {
                let mut done = Vec::new();
                for (producer, txn) in due {
                    let client = producer.wait().map_err(|e| err.err(e))?;
                    client.commit().map_err(|e| err.err(e))?;
                    tracing::debug!(operator = %operator, subtask, checkpoint_id = txn.checkpoint_id, notified = checkpoint.0, transactional_id = %txn.transactional_id, producer_id = txn.producer_id, epoch = txn.producer_epoch, "kafka sink: committed");
                    done.push(producer);
                }
                retire(done);
                Ok(())
            });
        }
        self.make_next()
    }

    /// The end of the input: a bounded end commits everything; a stop aborts the open
    /// transaction and leaves the pre-committed ones to a restore.
    fn finish_exactly(&mut self) -> Result<(), OperatorError> {
        let end = self.end;
        let x = self.exactly()?;
        let open = x.slots.current().and_then(|s| x.producers.get(&s).cloned());
        let pending: Vec<Slot> = x
            .slots
            .pending()
            .into_iter()
            .filter_map(|(slot, _)| x.producers.get(&slot).cloned())
            .collect();
        let err = self.producers.clone();
        self.defer("kafka-finish", move || {
            match end {
                // A bounded input: with periodic checkpoints the sources waited for a final
                // checkpoint that holds everything (`runtime::task::FinalCheckpoint`), so
                // what is pending is covered by a completed checkpoint and nothing follows
                // it; without checkpoints nothing is ever restored.
                EndOfInput::Finished => {
                    for p in pending.iter().chain(&open) {
                        let client = p.wait().map_err(|e| err.err(e))?;
                        client.commit().map_err(|e| err.err(e))?;
                    }
                }
                // Stopped: a restore replays what follows the last completed checkpoint and
                // commits or aborts the pre-committed transactions as it says.
                EndOfInput::Stopped => {
                    if let Some(p) = &open {
                        let client = p.wait().map_err(|e| err.err(e))?;
                        if let Err(e) = client.abort() {
                            tracing::warn!(error = %e, "kafka sink: the open transaction is left for a restore to abort");
                        }
                    }
                }
            }
            Ok(())
        });
        Ok(())
    }

    /// The work of a restore or a fresh start, started at the first `take_pending`.
    fn start(&mut self) {
        let (prefix, producers) = (self.prefix.clone(), self.producers.clone());
        match &mut self.mode {
            Mode::Exactly(x) => {
                let states = match std::mem::replace(&mut x.start, Start::Done) {
                    Start::Fresh => Vec::new(),
                    Start::Restore(states) => states,
                    other => {
                        x.start = other;
                        return;
                    }
                };
                let handoff = Handoff::new();
                x.start = Start::Running(handoff.clone());
                self.defer("kafka-restore", move || {
                    let started = start_work(&producers, &prefix, states, true);
                    let result = started.as_ref().map(|_| ()).map_err(|e| producers.err(e));
                    handoff.fill(started.map_err(|e| e.to_string()));
                    result
                });
            }
            Mode::Plain { restored, .. } => {
                if let Some(states) = restored.take() {
                    self.defer("kafka-restore", move || {
                        start_work(&producers, &prefix, states, false).map(|_| ())
                    });
                }
            }
            Mode::Unopened => {}
        }
    }
}

/// Commits the pending transactions of the restored `states`, then aborts what is open under
/// every other id their subtasks may have used since (their pool; for a state written before
/// pools, the ids it lists and the used ones after them) and closes the producers that did
/// it. `own`: this subtask writes exactly-once; the slots whose transactions it committed
/// wait before their ids are used again (on a fresh start, with no state of its own, the ids
/// of its pool are cleaned up of an earlier run). Blocking.
fn start_work(
    p: &Producers,
    prefix: &str,
    states: Vec<Restored>,
    own: bool,
) -> Result<Started, OperatorError> {
    let security = p.security()?;
    let mut committed = Vec::new();
    let mut own_found = false;
    let mut fenced = 0;
    let mut ready = None;
    for (k, pool) in &states {
        let mut held = Vec::new();
        for txn in &k.pending {
            let slot = slot_of(k, &txn.transactional_id).ok_or_else(|| {
                p.err(format!(
                    "the checkpoint's state is corrupt: transaction {} is not one of {}-{}-<slot>",
                    txn.transactional_id, k.prefix, k.subtask
                ))
            })?;
            if commit_restored(p, &security, txn)? {
                held.push(slot);
            }
        }
        let mine = own && k.subtask == p.subtask && k.prefix == prefix;
        let known = k.slots.max(pool.unwrap_or(0));
        let (n, kept) = p.fence(&k.prefix, k.subtask, (known, pool.is_some()), &held, mine)?;
        fenced += n;
        if mine {
            own_found = true;
            committed = held;
            ready = kept.map(|(s, c)| (s, Arc::new(c)));
        }
    }
    if own && !own_found {
        let (n, kept) = p.fence(prefix, p.subtask, (ID_POOL, true), &[], true)?;
        fenced += n;
        ready = kept.map(|(s, c)| (s, Arc::new(c)));
    }
    tracing::debug!(operator = %p.operator_id, subtask = p.subtask, fenced, committed = committed.len(), "kafka sink: transactions restored");
    Ok(Started { ready, committed })
}

/// Commits one transaction a restored checkpoint lists. True: committed (now or before);
/// false: the coordinator refused for good, logged as the error it is.
fn commit_restored(
    p: &Producers,
    security: &Security,
    txn: &KafkaPendingTxn,
) -> Result<bool, OperatorError> {
    let r = TxnRef {
        transactional_id: &txn.transactional_id,
        producer_id: txn.producer_id,
        epoch: txn.producer_epoch,
    };
    match kafka_resume::commit(&p.cfg.bootstrap_servers, security, r, RESUME_TIMEOUT) {
        Ok(Ended::Committed) => {
            tracing::info!(operator = %p.operator_id, subtask = p.subtask, transactional_id = %txn.transactional_id, producer_id = txn.producer_id, epoch = txn.producer_epoch, checkpoint_id = txn.checkpoint_id, "kafka sink: committed a transaction of the restored checkpoint");
            Ok(true)
        }
        Ok(Ended::Refused(e)) => {
            tracing::error!(operator = %p.operator_id, subtask = p.subtask, transactional_id = %txn.transactional_id, producer_id = txn.producer_id, epoch = txn.producer_epoch, checkpoint_id = txn.checkpoint_id, error = %kafka_resume::error_name(e), "kafka sink: the broker refused to commit a transaction of the restored checkpoint: {}", refusal(e));
            Ok(false)
        }
        Err(e) => Err(p.err(e)),
    }
}

/// What a final refusal of a restore's commit means.
fn refusal(e: kafka_protocol::error::ResponseError) -> &'static str {
    use kafka_protocol::error::ResponseError as E;
    match e {
        E::ProducerFenced | E::InvalidProducerEpoch => {
            "a newer producer of its id exists: either it was committed before and its id used \
             again (this restores a checkpoint older than the newest, so output after it is \
             written again), or the broker aborted it when `transaction-timeout` ran out (its \
             records are lost), or another job uses the same transactional-id-prefix"
        }
        E::InvalidTxnState => {
            "it was aborted (by the broker when `transaction-timeout` ran out?): its records are \
             lost"
        }
        _ => {
            "the coordinator no longer knows its producer (the transactional id expired, \
             `transactional.id.expiration.ms`): if it was not committed before, its records are \
             lost"
        }
    }
}

/// The slot of `transactional_id`, one of `k`'s ids.
fn slot_of(k: &KafkaSinkState, transactional_id: &str) -> Option<u32> {
    let rest = transactional_id
        .strip_prefix(&k.prefix)?
        .strip_prefix('-')?;
    let (subtask, slot) = rest.split_once('-')?;
    (subtask.parse::<u32>().ok()? == k.subtask).then_some(())?;
    slot.parse().ok()
}

impl Operator for KafkaSink {
    fn open(&mut self, guarantee: DeliveryGuarantee) -> Result<(), OperatorError> {
        let effective = match (self.cfg.delivery_guarantee, guarantee) {
            (Some(SinkGuarantee::ExactlyOnce), DeliveryGuarantee::None) => {
                return Err(OperatorError::Config(format!(
                    "kafka sink \"{}\": `delivery-guarantee: exactly-once` commits with \
                     checkpoints, but the job takes none; set \
                     `execution.checkpointing.interval` or choose at-least-once",
                    self.producers.operator_id
                )))
            }
            (Some(g), _) => g,
            (None, DeliveryGuarantee::ExactlyOnce) => SinkGuarantee::ExactlyOnce,
            (None, DeliveryGuarantee::AtLeastOnce) => SinkGuarantee::AtLeastOnce,
            (None, DeliveryGuarantee::None) => SinkGuarantee::None,
        };
        self.mode = match effective {
            SinkGuarantee::ExactlyOnce => {
                // Refused at validation already; checked again for a library caller.
                self.producers.security()?;
                Mode::Exactly(Box::new(Exactly {
                    slots: Slots::new(ID_POOL),
                    producers: BTreeMap::new(),
                    pre_committed: BTreeMap::new(),
                    start: Start::Fresh,
                }))
            }
            g => Mode::Plain {
                flush_at_barrier: g == SinkGuarantee::AtLeastOnce,
                client: Arc::new(self.producers.client(None)?),
                restored: None,
            },
        };
        Ok(())
    }

    fn process(&mut self, batch: Batch, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        if matches!(self.mode, Mode::Unopened) {
            self.open(DeliveryGuarantee::None)?;
        }
        match &self.mode {
            Mode::Plain { client, .. } => {
                let client = client.clone();
                self.send(client, batch)
            }
            Mode::Exactly(_) => self.process_exactly(batch),
            Mode::Unopened => Err(self.err("bug: no producer")),
        }
    }

    /// At-least-once: everything before the barrier is acknowledged. Exactly-once: the open
    /// transaction is flushed (pre-committed) and listed with the older pending ones.
    fn snapshot_state_at(
        &mut self,
        checkpoint: CheckpointId,
    ) -> Result<Option<OperatorSnapshot>, OperatorError> {
        match &self.mode {
            Mode::Unopened => Ok(None),
            Mode::Plain {
                flush_at_barrier,
                client,
                ..
            } => {
                if *flush_at_barrier {
                    let (client, err) = (client.clone(), self.producers.clone());
                    self.defer("kafka-flush", move || {
                        client.flush().map_err(|e| err.err(e))
                    });
                }
                Ok(None)
            }
            Mode::Exactly(_) => Ok(Some(
                self.snapshot_exactly(checkpoint)?.into_snapshot(Vec::new()),
            )),
        }
    }

    /// The commit: every transaction pre-committed for `checkpoint` or an older one.
    fn notify_checkpoint_complete(
        &mut self,
        checkpoint: CheckpointId,
    ) -> Result<(), OperatorError> {
        match self.mode {
            Mode::Exactly(_) => self.commit_due(checkpoint),
            _ => Ok(()),
        }
    }

    fn notify_checkpoint_aborted(&mut self, checkpoint: CheckpointId) -> Result<(), OperatorError> {
        // Its transactions stay pending: the next completed checkpoint commits them.
        tracing::debug!(operator = %self.producers.operator_id, subtask = self.producers.subtask, checkpoint_id = checkpoint.0, "kafka sink: checkpoint aborted, its transactions wait for the next one");
        Ok(())
    }

    /// Takes the restored states in; the broker calls they need run when the task starts
    /// ([`Operator::take_pending`]).
    fn restore_state(&mut self, state: RestoredState) -> Result<(), OperatorError> {
        let states = super::restored_sink_states("kafka", &self.producers.operator_id, state)?;
        let mut kafka = Vec::new();
        for s in states {
            match (s.kafka(), &self.mode) {
                (Some((k, pool)), _) => kafka.push((k.clone(), pool)),
                // At-least-once keeps no state of its own.
                (_, Mode::Plain { .. } | Mode::Unopened) => {}
                (_, Mode::Exactly(_)) => {
                    return Err(OperatorError::Config(format!(
                        "kafka sink \"{}\": the checkpoint holds another sink's state under this \
                         operator id; give the sink another `id` or start without restoring its state",
                        self.producers.operator_id
                    )))
                }
            }
        }
        match &mut self.mode {
            Mode::Exactly(x) => x.start = Start::Restore(kafka),
            Mode::Plain { restored, .. } => *restored = Some(kafka),
            Mode::Unopened => {}
        }
        Ok(())
    }

    fn end_of_input(&mut self, why: EndOfInput) {
        self.end = why;
    }

    fn finish(&mut self, _out: &mut Vec<Batch>) -> Result<(), OperatorError> {
        match &self.mode {
            Mode::Plain { client, .. } => {
                let (client, err) = (client.clone(), self.producers.clone());
                self.defer("kafka-flush", move || {
                    client.flush().map_err(|e| err.err(e))
                });
                Ok(())
            }
            Mode::Exactly(_) => self.finish_exactly(),
            Mode::Unopened => Ok(()),
        }
    }

    fn take_pending(&mut self) -> Option<PendingWork> {
        self.start();
        self.pending.take()
    }
}

impl Drop for KafkaSink {
    /// Producers are closed on a thread: librdkafka's destroy blocks. An open or
    /// pre-committed transaction stays open at the broker for a restore to end.
    fn drop(&mut self) {
        match std::mem::replace(&mut self.mode, Mode::Unopened) {
            Mode::Exactly(x) => retire(x.producers.into_values().collect()),
            Mode::Plain { client, .. } => retire(vec![Handoff::ready(client)]),
            Mode::Unopened => {}
        }
    }
}

/// `<transactional-id-prefix>-<subtask>-<slot>`.
pub(crate) fn transactional_id(prefix: &str, subtask: u32, slot: u32) -> String {
    format!("{prefix}-{subtask}-{slot}")
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

    /// Settings librdkafka may speak (with OpenSSL) but floe's own EndTxn client does not:
    /// exactly-once is refused with the way out, other guarantees are not.
    #[test]
    fn exactly_once_over_tls_is_refused_with_the_way_out() {
        let yaml = "bootstrap-servers: b:9093\ntopic: out\nproperties: {security.protocol: SSL}";
        let c = config(yaml);
        let p = c.check_guarantee(DeliveryGuarantee::ExactlyOnce);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].field, "delivery-guarantee");
        assert!(p[0].message.contains("TLS"), "{p:?}");
        assert!(p[0].message.contains("at-least-once"), "{p:?}");
        assert!(c.check_guarantee(DeliveryGuarantee::AtLeastOnce).is_empty());
        let explicit = config(&format!("{yaml}\ndelivery-guarantee: exactly-once"));
        assert!(explicit.exactly_once_problem().is_some());
        assert!(explicit
            .check_guarantee(DeliveryGuarantee::AtLeastOnce)
            .is_empty());
        let plain = config("bootstrap-servers: b:9092\ntopic: out");
        assert!(plain
            .check_guarantee(DeliveryGuarantee::ExactlyOnce)
            .is_empty());
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
            delta_checkpoints: true,
        };
        let mut b = crate::record::StrColumnBuilder::default();
        b.push(b"w1");
        let batch = Batch::new(vec![
            crate::record::Column::Str(b.finish()),
            crate::record::Column::Int(vec![3]),
        ]);
        let c = config("bootstrap-servers: 127.0.0.1:9092\ntopic: out\nkey-field: word");
        let mut s = KafkaSink::new(&c, &input, &ctx).unwrap();
        s.encoder.encode(&batch, 0);
        assert_eq!(s.encoder.value, b"(w1,3)");
        assert_eq!(s.encoder.key_buf, b"w1");
        let c = config("bootstrap-servers: 127.0.0.1:9092\ntopic: out\nformat: json");
        let mut s = KafkaSink::new(&c, &input, &ctx).unwrap();
        s.encoder.encode(&batch, 0);
        assert_eq!(s.encoder.value, br#"{"word":"w1","count":3}"#);
        assert_eq!(s.prefix, "floe-out");
        assert_eq!(transactional_id("floe-out", 1, 0), "floe-out-1-0");
    }

    #[test]
    fn slots_are_read_back_from_the_ids_a_state_lists() {
        let k = KafkaSinkState {
            subtask: 1,
            prefix: "a-b".into(),
            slots: 3,
            pending: Vec::new(),
        };
        assert_eq!(slot_of(&k, "a-b-1-2"), Some(2));
        assert_eq!(slot_of(&k, "a-b-0-2"), None);
        assert_eq!(slot_of(&k, "other-1-2"), None);
        assert_eq!(slot_of(&k, "a-b-1-x"), None);
    }
}
