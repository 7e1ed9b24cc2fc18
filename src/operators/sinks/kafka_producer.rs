//! The `kafka` sink's librdkafka producers and every blocking call on them: making a
//! transactional producer (its `init_transactions`, which aborts what was open under its id),
//! sending while the queue is full, flushing, committing, aborting, closing. The sink runs
//! each of these on a thread of its own (`PendingWork`, or a detached thread for a producer
//! made ahead and for closing), never on the async worker that calls the operator.

use super::kafka::KafkaSinkConfig;
use super::kafka_resume::Security;
use super::kafka_txn::ID_POOL;
use crate::operators::sources::kafka::property_text;
use crate::operators::OperatorError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a flush, a commit, a producer's start or a wait for queue room may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// librdkafka callbacks: delivery failures, and the producer id from statistics.
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

/// One producer, with what its callbacks report.
pub struct Client {
    producer: ThreadedProducer<SinkContext>,
    failure: Arc<Mutex<Option<String>>>,
    /// Transactional: its id, producer id and epoch.
    pub txn: Option<TxnIds>,
}

/// Who a transactional producer is at the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnIds {
    pub transactional_id: String,
    pub producer_id: i64,
    pub epoch: i16,
}

/// How this subtask makes its producers and talks to the brokers: cloned into the threads.
#[derive(Clone)]
pub struct Producers {
    pub operator_id: String,
    pub subtask: u32,
    pub cfg: Arc<KafkaSinkConfig>,
}

impl Producers {
    pub fn err(&self, what: impl std::fmt::Display) -> OperatorError {
        OperatorError::Data(format!(
            "kafka sink \"{}\" subtask {} (topic {}): {what}",
            self.operator_id, self.subtask, self.cfg.topic
        ))
    }

    /// The sink's librdkafka `properties` as text.
    pub fn properties(&self) -> BTreeMap<String, String> {
        properties_text(&self.cfg.properties)
    }

    /// How floe's own client reaches the brokers, for the restore's commits.
    pub fn security(&self) -> Result<Security, OperatorError> {
        Security::from_properties(&self.properties()).map_err(|why| {
            OperatorError::Config(format!("kafka sink \"{}\": {why}", self.operator_id))
        })
    }

    /// A producer (transactional for `transactional_id`), not yet started: creating one is
    /// local (librdkafka connects from its own threads).
    pub fn client(&self, transactional_id: Option<&str>) -> Result<Client, OperatorError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.cfg.bootstrap_servers)
            .set(
                "client.id",
                format!("floe-{}-{}", self.operator_id, self.subtask),
            )
            .set("linger.ms", "5");
        for (k, v) in self.properties() {
            config.set(k, v);
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
        let producer: ThreadedProducer<SinkContext> = config
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
        let client = Client {
            producer,
            failure,
            txn: None,
        };
        Ok(match transactional_id {
            None => client,
            Some(id) => self.init(client, id, &ids)?,
        })
    }

    /// `init_transactions` (what was open under `id` is aborted now), then the producer id
    /// and epoch, which librdkafka reports only in its statistics. Blocking.
    fn init(
        &self,
        client: Client,
        id: &str,
        ids: &Mutex<Option<(i64, i16)>>,
    ) -> Result<Client, OperatorError> {
        client
            .producer
            .init_transactions(TIMEOUT)
            .map_err(|e| self.err(format!("cannot initialise transactions of {id}: {e}")))?;
        let deadline = Instant::now() + TIMEOUT;
        let (producer_id, epoch) = loop {
            if let Some(got) = ids.lock().ok().and_then(|i| *i) {
                break got;
            }
            if Instant::now() >= deadline {
                return Err(self.err(format!("librdkafka did not report the producer id of {id}")));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        tracing::debug!(operator = %self.operator_id, subtask = self.subtask, transactional_id = id, producer_id, epoch, "kafka sink: transactional id initialised");
        OPEN_TRANSACTIONAL.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut client = client;
        client.txn = Some(TxnIds {
            transactional_id: id.to_string(),
            producer_id,
            epoch,
        });
        Ok(client)
    }

    /// Initialises `ids` at the same time (each takes a round trip or more to the
    /// coordinator), which aborts what was open under them, and closes their producers
    /// except the first when `keep_first`: their epochs. Blocking.
    pub fn fence_all(
        &self,
        ids: &[String],
        keep_first: bool,
    ) -> Result<Vec<(i16, Option<Client>)>, OperatorError> {
        std::thread::scope(|scope| {
            let making: Vec<_> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    scope.spawn(move || {
                        let client = self.client(Some(id))?;
                        let epoch = client.txn.as_ref().map_or(0, |t| t.epoch);
                        Ok((epoch, (keep_first && i == 0).then_some(client)))
                    })
                })
                .collect();
            making
                .into_iter()
                .map(|m| {
                    m.join()
                        .unwrap_or_else(|_| Err(self.err("bug: making a producer panicked")))
                })
                .collect()
        })
    }

    /// Aborts what a run before left open under `<prefix>-<subtask>-<slot>`, for every slot
    /// below `known` not in `skip`, and closes the producers it made for that. `pooled`: the
    /// runs took their slots from a pool (`known` covers it), so nothing above is looked
    /// at. Otherwise (a checkpoint written before pools) the next slots are looked at too,
    /// a batch at a time, while a batch holds an id used before (an id never used answers
    /// with epoch 0); slots were taken lowest first, so the used ones are contiguous.
    /// `keep`: the producer of the lowest slot of the pool fenced is kept (ready for the
    /// first transaction). Returns how many ids were initialised. Blocking.
    pub fn fence(
        &self,
        prefix: &str,
        subtask: u32,
        (known, pooled): (u32, bool),
        skip: &[u32],
        keep: bool,
    ) -> Result<(u32, Option<(u32, Client)>), OperatorError> {
        const BATCH: u32 = 3;
        let mut fenced = 0;
        let mut kept = None;
        let mut from = 0;
        let mut to = if pooled { known } else { known.max(BATCH) };
        loop {
            let slots: Vec<u32> = (from..to).filter(|s| !skip.contains(s)).collect();
            let ids: Vec<String> = slots
                .iter()
                .map(|s| super::kafka::transactional_id(prefix, subtask, *s))
                .collect();
            let keep_first = keep && kept.is_none() && slots.first().is_some_and(|s| *s < ID_POOL);
            let fenced_now = self.fence_all(&ids, keep_first)?;
            fenced += ids.len() as u32;
            let used_before = fenced_now.iter().any(|(e, _)| *e > 0);
            if let Some((_, Some(client))) = fenced_now.into_iter().next() {
                kept = Some((slots[0], client));
            }
            if pooled || !used_before {
                tracing::debug!(operator = %self.operator_id, subtask = self.subtask, prefix, fenced_subtask = subtask, ids = fenced, pooled, "kafka sink: transactional ids fenced");
                return Ok((fenced, kept));
            }
            from = to;
            to += BATCH;
        }
    }
}

/// Producers of transactional ids alive in this process: a restore must not keep one per id
/// it aborted (see [`Producers::fence`]).
static OPEN_TRANSACTIONAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many transactional producers of Kafka sinks are open in this process now (made and
/// not yet closed).
pub fn open_transactional_producers() -> usize {
    OPEN_TRANSACTIONAL.load(std::sync::atomic::Ordering::SeqCst)
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.txn.is_some() {
            OPEN_TRANSACTIONAL.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// librdkafka properties as text, as given.
pub fn properties_text(
    properties: &BTreeMap<String, serde_yaml::Value>,
) -> BTreeMap<String, String> {
    properties
        .iter()
        .filter_map(|(k, v)| property_text(v).map(|v| (k.clone(), v)))
        .collect()
}

impl Client {
    /// Hands one record to librdkafka; `QueueFull` when its queue has no room.
    pub fn send(&self, topic: &str, key: Option<&[u8]>, value: &[u8]) -> Result<(), KafkaError> {
        let mut record = BaseRecord::to(topic).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        self.producer.send(record).map_err(|(e, _)| e)
    }

    /// [`Client::send`], waiting while the queue is full. Blocking.
    pub fn send_waiting(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> Result<(), String> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.send(topic, key, value) {
                Ok(()) => return Ok(()),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(format!("cannot send: {e}")),
            }
        }
    }

    /// A delivery that failed, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .map(|e| format!("a record was not delivered: {e}"))
    }

    /// Waits until every record handed over is acknowledged. rdkafka's `flush` polls in steps
    /// of 100 ms, each lasting the whole 100 ms with a threaded producer, so ask librdkafka
    /// every millisecond instead. Blocking.
    pub fn flush(&self) -> Result<(), String> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.producer.flush(Duration::ZERO) {
                Ok(()) => break,
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(format!("flush failed: {e}")),
            }
        }
        self.failure().map_or(Ok(()), Err)
    }

    pub fn begin(&self) -> Result<(), String> {
        self.producer
            .begin_transaction()
            .map_err(|e| format!("cannot begin a transaction of {}: {e}", self.name()))
    }

    /// Commits the open transaction (flushing first). Blocking.
    pub fn commit(&self) -> Result<(), String> {
        self.producer
            .commit_transaction(TIMEOUT)
            .map_err(|e| format!("cannot commit transaction {}: {e}", self.name()))
    }

    /// Aborts the open transaction. Blocking.
    pub fn abort(&self) -> Result<(), String> {
        self.producer
            .abort_transaction(TIMEOUT)
            .map_err(|e| format!("cannot abort transaction {}: {e}", self.name()))
    }

    fn name(&self) -> &str {
        self.txn
            .as_ref()
            .map_or("", |t| t.transactional_id.as_str())
    }
}

/// A value made on another thread: filled once, waited for by whoever needs it.
pub struct Handoff<T> {
    value: Mutex<Option<Result<T, String>>>,
    filled: Condvar,
}

impl<T: Clone> Handoff<T> {
    pub fn new() -> Arc<Handoff<T>> {
        Arc::new(Handoff {
            value: Mutex::new(None),
            filled: Condvar::new(),
        })
    }

    pub fn ready(value: T) -> Arc<Handoff<T>> {
        let h = Handoff::new();
        h.fill(Ok(value));
        h
    }

    pub fn fill(&self, value: Result<T, String>) {
        if let Ok(mut v) = self.value.lock() {
            *v = Some(value);
        }
        self.filled.notify_all();
    }

    /// The value if it is there.
    pub fn now(&self) -> Option<Result<T, String>> {
        self.value.lock().ok().and_then(|v| v.clone())
    }

    /// Waits for the value up to [`TIMEOUT`]. Blocking.
    pub fn wait(&self) -> Result<T, String> {
        let deadline = Instant::now() + TIMEOUT;
        let mut v = self
            .value
            .lock()
            .map_err(|_| "bug: a producer's handoff is poisoned".to_string())?;
        loop {
            if let Some(value) = v.clone() {
                return value;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no producer within {TIMEOUT:?}"));
            }
            v = self
                .filled
                .wait_timeout(v, left)
                .map_err(|_| "bug: a producer's handoff is poisoned".to_string())?
                .0;
        }
    }
}

/// A producer being made or made.
pub type Slot = Arc<Handoff<Arc<Client>>>;

/// Makes the producer of `id` on a thread of its own; the handoff gets it.
pub fn make_ahead(producers: &Producers, id: String) -> Slot {
    let slot: Slot = Handoff::new();
    let filled = slot.clone();
    let p = producers.clone();
    let spawned = std::thread::Builder::new()
        .name("kafka-producer".into())
        .spawn(move || {
            let made = p.client(Some(&id)).map(Arc::new).map_err(|e| e.to_string());
            filled.fill(made);
        });
    if let Err(e) = spawned {
        slot.fill(Err(format!(
            "cannot start a thread to make a producer: {e}"
        )));
    }
    slot
}

/// Closes producers on a thread of its own (librdkafka's destroy waits for its threads and
/// in-flight requests), once they are made; if no thread can be started, here.
pub fn retire(slots: Vec<Slot>) {
    if slots.is_empty() {
        return;
    }
    let close = move || {
        for s in slots {
            // A producer still being made is closed once it is.
            let _ = s.wait();
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("kafka-producer-close".into())
        .spawn(close)
    {
        tracing::debug!(error = %e, "kafka sink: no thread to close producers on");
    }
}
