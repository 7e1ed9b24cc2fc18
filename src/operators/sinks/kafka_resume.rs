//! Committing a Kafka transaction that an earlier producer instance began and pre-committed:
//! Kafka's own `EndTxn` request, as Flink's sink does by resuming the producer id and epoch.
//!
//! librdkafka cannot end another instance's transaction (a new instance with the same
//! transactional id aborts it, and there is no API to resume a producer id and epoch), so a
//! restore sends `FindCoordinator` and `EndTxn(commit)` itself, with the wire format of the
//! `kafka-protocol` crate and the versions both sides support (`ApiVersions`).
//!
//! Security: it speaks the client's `security.protocol` where it can: `PLAINTEXT`, and
//! `SASL_PLAINTEXT` with the `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` mechanism. TLS (`SSL`,
//! `SASL_SSL`) and other mechanisms it does not implement: [`Security::from_properties`] says
//! so and the sink refuses exactly-once when the job starts.
//!
//! Answers, as Kafka documents them for `EndTxn`: success (committed now, or a commit retried
//! after it completed); `COORDINATOR_NOT_AVAILABLE` / `NOT_COORDINATOR` (find the coordinator
//! again), `COORDINATOR_LOAD_IN_PROGRESS`, `CONCURRENT_TRANSACTIONS` and every retriable
//! error (try again); `PRODUCER_FENCED`, `INVALID_PRODUCER_EPOCH`, `INVALID_TXN_STATE`,
//! `INVALID_PRODUCER_ID_MAPPING`, `TRANSACTION_ABORTABLE` (final for this transaction:
//! [`Ended::Refused`], the caller decides); anything else fails. A connection that closes or
//! does not answer is a network error, tried again until the deadline, then a failure: never
//! taken as an answer.
//!
//! Blocking std networking: callers run it off the async workers.

use super::kafka_scram::Scram;
use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, EndTxnRequest, EndTxnResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, ProducerId, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The SASL mechanisms spoken here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// How the brokers are reached: plain TCP, with SASL authentication or without.
#[derive(Clone, PartialEq, Eq)]
pub struct Security {
    sasl: Option<Sasl>,
}

#[derive(Clone, PartialEq, Eq)]
struct Sasl {
    mechanism: Mechanism,
    username: String,
    password: String,
}

// Never shows the password.
impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.sasl {
            None => f.write_str("PLAINTEXT"),
            Some(s) => write!(f, "SASL_PLAINTEXT {} as {}", s.mechanism.name(), s.username),
        }
    }
}

impl Security {
    /// The security of a client with these librdkafka `properties` (as text), or why floe
    /// cannot speak it (a sentence naming the setting).
    pub fn from_properties(properties: &BTreeMap<String, String>) -> Result<Security, String> {
        let get = |k: &str| properties.get(k).map(|v| v.trim().to_string());
        let protocol = get("security.protocol").unwrap_or_else(|| "plaintext".into());
        match protocol.to_ascii_lowercase().as_str() {
            "plaintext" => Ok(Security { sasl: None }),
            "sasl_plaintext" => {
                let mechanism = get("sasl.mechanisms")
                    .or_else(|| get("sasl.mechanism"))
                    // librdkafka's default.
                    .unwrap_or_else(|| "GSSAPI".into());
                let mechanism = match mechanism.to_ascii_uppercase().as_str() {
                    "PLAIN" => Mechanism::Plain,
                    "SCRAM-SHA-256" => Mechanism::ScramSha256,
                    "SCRAM-SHA-512" => Mechanism::ScramSha512,
                    other => {
                        return Err(format!(
                            "`sasl.mechanism: {other}` is not spoken by floe's own Kafka client \
                             (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 are)"
                        ))
                    }
                };
                let (Some(username), Some(password)) = (
                    properties.get("sasl.username"),
                    properties.get("sasl.password"),
                ) else {
                    return Err(format!(
                        "`sasl.mechanism: {}` needs `sasl.username` and `sasl.password`",
                        mechanism.name()
                    ));
                };
                Ok(Security {
                    sasl: Some(Sasl {
                        mechanism,
                        username: username.clone(),
                        password: password.clone(),
                    }),
                })
            }
            "ssl" | "sasl_ssl" => Err(format!(
                "`security.protocol: {protocol}` (TLS) is not spoken by floe's own Kafka client"
            )),
            other => Err(format!(
                "`security.protocol: {other}` is not one of plaintext, ssl, sasl_plaintext, \
                 sasl_ssl"
            )),
        }
    }
}

/// Kafka's name of an error code, as its documentation writes it (`PRODUCER_FENCED`), with
/// the code.
pub fn error_name(e: ResponseError) -> String {
    let camel = format!("{e:?}");
    let mut name = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    format!("{name} ({})", e.code())
}

/// A transaction pre-committed by an earlier producer instance.
#[derive(Debug, Clone, Copy)]
pub struct TxnRef<'a> {
    pub transactional_id: &'a str,
    pub producer_id: i64,
    pub epoch: i16,
}

/// How the coordinator answered a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Committed now, or before (Kafka answers a commit retried after it completed with
    /// success).
    Committed,
    /// A final refusal for this transaction (`PRODUCER_FENCED`, `INVALID_PRODUCER_EPOCH`:
    /// a newer producer of the id exists; `INVALID_TXN_STATE`: it was aborted;
    /// `INVALID_PRODUCER_ID_MAPPING`: the coordinator no longer knows the producer id).
    Refused(ResponseError),
}

/// Why a commit could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error(
        "no answer to committing transaction {transactional_id} (producer id {producer_id}, \
         epoch {epoch}) within {within:?}: {last}"
    )]
    NoAnswer {
        transactional_id: String,
        producer_id: i64,
        epoch: i16,
        within: Duration,
        last: String,
    },
    #[error("committing transaction {transactional_id}: {message}")]
    Failed {
        transactional_id: String,
        message: String,
    },
}

/// Sends `EndTxn(commit)` for `txn` to its coordinator, found through `bootstrap`, retrying
/// network errors and retriable answers until `timeout` has passed.
pub fn commit(
    bootstrap: &str,
    security: &Security,
    txn: TxnRef<'_>,
    timeout: Duration,
) -> Result<Ended, ResumeError> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(50);
    loop {
        let last = match attempt(bootstrap, security, txn, deadline) {
            Ok(ended) => return Ok(ended),
            Err(Try::Again(why)) => why,
            Err(Try::Fail(message)) => {
                return Err(ResumeError::Failed {
                    transactional_id: txn.transactional_id.to_string(),
                    message,
                })
            }
        };
        if Instant::now() + backoff >= deadline {
            return Err(ResumeError::NoAnswer {
                transactional_id: txn.transactional_id.to_string(),
                producer_id: txn.producer_id,
                epoch: txn.epoch,
                within: timeout,
                last,
            });
        }
        tracing::debug!(transactional_id = txn.transactional_id, reason = %last, "kafka sink: EndTxn tried again");
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// What one attempt's failure calls for.
#[derive(Debug)]
enum Try {
    /// A network error or a retriable answer.
    Again(String),
    /// An answer that no retry changes.
    Fail(String),
}

fn attempt(
    bootstrap: &str,
    security: &Security,
    txn: TxnRef<'_>,
    deadline: Instant,
) -> Result<Ended, Try> {
    let mut conn = Conn::open_any(bootstrap, security, deadline)?;
    let (host, port) = conn.find_coordinator(txn.transactional_id)?;
    let mut coordinator = Conn::open(&format!("{host}:{port}"), security, deadline)?;
    coordinator.end_txn(txn)
}

/// The versions floe speaks, per request: (min, max).
const FIND_COORDINATOR: (i16, i16) = (1, 6);
/// v5 and later end transactions of Kafka's transactions version 2 (an epoch bump at each
/// end), which librdkafka's producers do not begin.
const END_TXN: (i16, i16) = (1, 4);
const SASL_HANDSHAKE: (i16, i16) = (1, 1);
const SASL_AUTHENTICATE: (i16, i16) = (0, 2);

/// One connection to a broker, authenticated, with the versions it speaks.
struct Conn {
    stream: TcpStream,
    peer: String,
    versions: BTreeMap<i16, (i16, i16)>,
    correlation: i32,
}

impl Conn {
    fn open_any(servers: &str, security: &Security, deadline: Instant) -> Result<Conn, Try> {
        let mut last = format!("no broker address in `{servers}`");
        for server in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            // librdkafka accepts `PROTOCOL://host:port`.
            let server = server.rsplit("://").next().unwrap_or(server);
            match Conn::open(server, security, deadline) {
                Ok(c) => return Ok(c),
                Err(Try::Again(e)) => last = e,
                Err(fail) => return Err(fail),
            }
        }
        Err(Try::Again(last))
    }

    fn open(server: &str, security: &Security, deadline: Instant) -> Result<Conn, Try> {
        let with_port = if server
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'))
        {
            server.to_string()
        } else {
            format!("{server}:9092")
        };
        let addrs = with_port
            .to_socket_addrs()
            .map_err(|e| Try::Again(format!("{with_port}: {e}")))?;
        let mut last = Try::Again(format!("{with_port}: no address"));
        for addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            let left = left.max(Duration::from_millis(10));
            match TcpStream::connect_timeout(&addr, left) {
                Ok(stream) => {
                    let mut conn = Conn {
                        stream,
                        peer: with_port.clone(),
                        versions: BTreeMap::new(),
                        correlation: 0,
                    };
                    conn.handshake(security, deadline)?;
                    return Ok(conn);
                }
                Err(e) => last = Try::Again(format!("{with_port}: {e}")),
            }
        }
        Err(last)
    }

    /// `ApiVersions`, then SASL when asked for.
    fn handshake(&mut self, security: &Security, deadline: Instant) -> Result<(), Try> {
        let resp: ApiVersionsResponse = self.call(ApiVersionsRequest::default(), 0, deadline)?;
        if let Some(e) = ResponseError::try_from_code(resp.error_code) {
            return Err(Try::Fail(format!(
                "{}: ApiVersions: {}",
                self.peer,
                error_name(e)
            )));
        }
        self.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        match &security.sasl {
            None => Ok(()),
            Some(sasl) => self.authenticate(sasl, deadline),
        }
    }

    /// The highest version of `key` both sides speak.
    fn version(&self, key: ApiKey, ours: (i16, i16)) -> Result<i16, Try> {
        let (min, max) = self.versions.get(&(key as i16)).copied().ok_or_else(|| {
            Try::Fail(format!(
                "{}: the broker does not support {key:?}",
                self.peer
            ))
        })?;
        let v = max.min(ours.1);
        if v < min.max(ours.0) {
            return Err(Try::Fail(format!(
                "{}: the broker speaks {key:?} versions {min}-{max}, floe {}-{}",
                self.peer, ours.0, ours.1
            )));
        }
        Ok(v)
    }

    fn authenticate(&mut self, sasl: &Sasl, deadline: Instant) -> Result<(), Try> {
        let v = self.version(ApiKey::SaslHandshake, SASL_HANDSHAKE)?;
        let req = SaslHandshakeRequest::default().with_mechanism(sasl.mechanism.name().into());
        let resp: SaslHandshakeResponse = self.call(req, v, deadline)?;
        if let Some(e) = ResponseError::try_from_code(resp.error_code) {
            let offered: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(Try::Fail(format!(
                "{}: SASL mechanism {} refused ({}); the broker offers {}",
                self.peer,
                sasl.mechanism.name(),
                error_name(e),
                offered.join(", ")
            )));
        }
        match sasl.mechanism {
            Mechanism::Plain => {
                let mut token = vec![0u8];
                token.extend_from_slice(sasl.username.as_bytes());
                token.push(0);
                token.extend_from_slice(sasl.password.as_bytes());
                self.sasl_step(token, deadline)?;
                Ok(())
            }
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let mut scram =
                    Scram::new(sasl.mechanism == Mechanism::ScramSha512, &sasl.username);
                let first = self.sasl_step(scram.client_first(), deadline)?;
                let last = scram
                    .client_final(&first, &sasl.password)
                    .map_err(|e| Try::Fail(format!("{}: SCRAM: {e}", self.peer)))?;
                let verdict = self.sasl_step(last, deadline)?;
                scram
                    .verify_server(&verdict)
                    .map_err(|e| Try::Fail(format!("{}: SCRAM: {e}", self.peer)))
            }
        }
    }

    /// One `SaslAuthenticate` round: the server's bytes.
    fn sasl_step(&mut self, token: Vec<u8>, deadline: Instant) -> Result<Vec<u8>, Try> {
        let v = self.version(ApiKey::SaslAuthenticate, SASL_AUTHENTICATE)?;
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let resp: SaslAuthenticateResponse = self.call(req, v, deadline)?;
        if let Some(e) = ResponseError::try_from_code(resp.error_code) {
            let msg = resp
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_default();
            return Err(Try::Fail(format!(
                "{}: SASL authentication failed: {} {msg}",
                self.peer,
                error_name(e)
            )));
        }
        Ok(resp.auth_bytes.to_vec())
    }

    /// The coordinator of `transactional_id`: (host, port).
    fn find_coordinator(&mut self, transactional_id: &str) -> Result<(String, i32), Try> {
        let v = self.version(ApiKey::FindCoordinator, FIND_COORDINATOR)?;
        let key = StrBytes::from_string(transactional_id.to_string());
        let mut req = FindCoordinatorRequest::default().with_key_type(1);
        if v >= 4 {
            req.coordinator_keys = vec![key];
        } else {
            req.key = key;
        }
        let resp: FindCoordinatorResponse = self.call(req, v, Instant::now() + CALL_LIMIT)?;
        let (code, host, port) = match resp.coordinators.first() {
            Some(c) if v >= 4 => (c.error_code, c.host.to_string(), c.port),
            _ => (resp.error_code, resp.host.to_string(), resp.port),
        };
        match ResponseError::try_from_code(code) {
            None => Ok((host, port)),
            Some(e) if retriable(e) => {
                Err(Try::Again(format!("FindCoordinator: {}", error_name(e))))
            }
            Some(e) => Err(Try::Fail(format!(
                "the coordinator of {transactional_id}: {}",
                error_name(e)
            ))),
        }
    }

    fn end_txn(&mut self, txn: TxnRef<'_>) -> Result<Ended, Try> {
        let v = self.version(ApiKey::EndTxn, END_TXN)?;
        let req = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                txn.transactional_id.to_string(),
            )))
            .with_producer_id(ProducerId(txn.producer_id))
            .with_producer_epoch(txn.epoch)
            .with_committed(true);
        let resp: EndTxnResponse = self.call(req, v, Instant::now() + CALL_LIMIT)?;
        end_txn_answer(resp.error_code)
    }

    /// Sends `req` as version `version` and reads its response, within `deadline` (at
    /// least [`CALL_LIMIT`] from now).
    fn call<R: Request>(
        &mut self,
        req: R,
        version: i16,
        deadline: Instant,
    ) -> Result<R::Response, Try> {
        let limit = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), CALL_LIMIT);
        let _ = self.stream.set_read_timeout(Some(limit));
        let _ = self.stream.set_write_timeout(Some(limit));
        self.correlation += 1;
        let frame = encode(&req, version, self.correlation)
            .map_err(|e| Try::Fail(format!("bug: cannot encode {:?}: {e}", R::KEY)))?;
        let key =
            ApiKey::try_from(R::KEY).map_or_else(|_| R::KEY.to_string(), |k| format!("{k:?}"));
        let net = |e: std::io::Error| Try::Again(format!("{}: {key}: {e}", self.peer));
        self.stream.write_all(&frame).map_err(net)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(net)?;
        let len = i32::from_be_bytes(len);
        if !(4..=MAX_RESPONSE).contains(&len) {
            return Err(Try::Again(format!(
                "{}: {key}: a response of {len} bytes",
                self.peer
            )));
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body).map_err(net)?;
        decode::<R>(Bytes::from(body), version, self.correlation)
            .map_err(|e| Try::Again(format!("{}: {key}: {e}", self.peer)))
    }
}

/// How long one request may wait for its answer.
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// The longest response taken (these responses are a few hundred bytes).
const MAX_RESPONSE: i32 = 1 << 20;

/// Kafka's retriable errors, and the coordinator errors its clients retry.
fn retriable(e: ResponseError) -> bool {
    e.is_retriable()
        || matches!(
            e,
            ResponseError::CoordinatorLoadInProgress
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::NotCoordinator
                | ResponseError::ConcurrentTransactions
        )
}

/// What an `EndTxn` error code means for the commit.
fn end_txn_answer(code: i16) -> Result<Ended, Try> {
    match ResponseError::try_from_code(code) {
        None => Ok(Ended::Committed),
        Some(
            e @ (ResponseError::ProducerFenced
            | ResponseError::InvalidProducerEpoch
            | ResponseError::InvalidTxnState
            | ResponseError::InvalidProducerIdMapping
            | ResponseError::UnknownProducerId
            | ResponseError::TransactionAbortable),
        ) => Ok(Ended::Refused(e)),
        Some(e) if retriable(e) => Err(Try::Again(format!("EndTxn: {}", error_name(e)))),
        Some(e) => Err(Try::Fail(format!("EndTxn: {}", error_name(e)))),
    }
}

/// A request framed for the wire: size, header, body.
fn encode<R: Request>(req: &R, version: i16, correlation: i32) -> anyhow::Result<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("floe")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, R::header_version(version))?;
    req.encode(&mut buf, version)?;
    let mut framed = Vec::with_capacity(buf.len() + 4);
    framed.extend_from_slice(&(buf.len() as i32).to_be_bytes());
    framed.extend_from_slice(&buf);
    Ok(framed)
}

fn decode<R: Request>(
    mut body: Bytes,
    version: i16,
    correlation: i32,
) -> anyhow::Result<R::Response> {
    let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))?;
    anyhow::ensure!(
        header.correlation_id == correlation,
        "answer to request {} instead of {correlation}",
        header.correlation_id
    );
    R::Response::decode(&mut body, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn security_follows_the_client_settings_or_says_why_not() {
        assert!(Security::from_properties(&props(&[]))
            .unwrap()
            .sasl
            .is_none());
        let s = Security::from_properties(&props(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "scram-sha-512"),
            ("sasl.username", "u"),
            ("sasl.password", "secret"),
        ]))
        .unwrap();
        assert_eq!(s.sasl.as_ref().unwrap().mechanism, Mechanism::ScramSha512);
        assert!(!format!("{s:?}").contains("secret"));
        let ssl = Security::from_properties(&props(&[("security.protocol", "SSL")])).unwrap_err();
        assert!(ssl.contains("TLS"), "{ssl}");
        let gss = Security::from_properties(&props(&[("security.protocol", "sasl_plaintext")]))
            .unwrap_err();
        assert!(gss.contains("GSSAPI"), "{gss}");
        let no_user = Security::from_properties(&props(&[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanisms", "PLAIN"),
        ]))
        .unwrap_err();
        assert!(no_user.contains("sasl.username"), "{no_user}");
    }

    #[test]
    fn end_txn_answers_are_read_as_kafka_documents_them() {
        assert_eq!(end_txn_answer(0).unwrap(), Ended::Committed);
        for (code, e) in [
            (90, ResponseError::ProducerFenced),
            (47, ResponseError::InvalidProducerEpoch),
            (48, ResponseError::InvalidTxnState),
            (49, ResponseError::InvalidProducerIdMapping),
        ] {
            assert_eq!(end_txn_answer(code).unwrap(), Ended::Refused(e));
        }
        for again in [14, 15, 16, 51, 7] {
            assert!(
                matches!(end_txn_answer(again), Err(Try::Again(_))),
                "{again}"
            );
        }
        assert!(matches!(end_txn_answer(53), Err(Try::Fail(m)) if m.contains("53")));
        assert_eq!(
            error_name(ResponseError::ProducerFenced),
            "PRODUCER_FENCED (90)"
        );
    }

    #[test]
    fn requests_round_trip_through_the_wire_format() {
        let req = EndTxnRequest::default()
            .with_producer_epoch(3)
            .with_committed(true);
        let frame = encode(&req, 3, 7).unwrap();
        let len = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        let mut body = Bytes::copy_from_slice(&frame[4..]);
        let header = RequestHeader::decode(&mut body, EndTxnRequest::header_version(3)).unwrap();
        assert_eq!((header.request_api_key, header.correlation_id), (26, 7));
        let back = EndTxnRequest::decode(&mut body, 3).unwrap();
        assert_eq!(back, req);
    }
}
