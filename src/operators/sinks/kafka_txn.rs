//! Committing a Kafka transaction that another process began: Kafka's `EndTxn` request,
//! spoken directly on the wire.
//!
//! A transaction the `kafka` sink pre-committed at a checkpoint may still be open when the
//! process dies between the checkpoint's completion and the commit. librdkafka cannot commit
//! a transaction of another producer instance (a new instance with the same transactional id
//! aborts it), so the restore sends `EndTxn(commit)` itself with the producer id and epoch the
//! checkpoint recorded: what Flink does by resuming its producer. Only two requests are
//! needed, in their non-flexible versions: `FindCoordinator` v1 (which broker coordinates the
//! transactional id) and `EndTxn` v1.
//!
//! Blocking std networking: it runs once per pending transaction at a restore, off the hot
//! path.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

const FIND_COORDINATOR: i16 = 10;
const END_TXN: i16 = 26;

/// What became of an `EndTxn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndTxnOutcome {
    /// The broker committed (or aborted) it now.
    Done,
    /// The producer id has a newer epoch: the transaction was finished before (the sink only
    /// starts a new producer under an id once its transaction is committed or given up).
    Fenced,
    /// No transaction of that producer is open (finished before, or expired).
    NotOpen,
    /// The coordinator closed the connection in answer to `EndTxn`, on every try: tansu 0.6
    /// answers an error (`ProducerFenced` among them) that way instead of with an error code.
    /// Treated as refused, like [`EndTxnOutcome::Fenced`].
    Refused,
}

/// Tries in a row whose `EndTxn` the coordinator answered by closing the connection before
/// that counts as [`EndTxnOutcome::Refused`] (a network failure would not repeat so).
const CLOSED_TRIES: u32 = 3;

/// Sends `EndTxn` for (`transactional_id`, `producer_id`, `epoch`) to its coordinator,
/// retrying while the coordinator is busy or moving, until `timeout`.
pub fn end_txn(
    bootstrap: &str,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    timeout: Duration,
) -> Result<EndTxnOutcome, String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    let mut closed = 0;
    while Instant::now() < deadline {
        match attempt(
            bootstrap,
            transactional_id,
            producer_id,
            epoch,
            commit,
            deadline,
        ) {
            Ok(Some(outcome)) => return Ok(outcome),
            Ok(None) => last = "the coordinator is busy".into(),
            Err(Failure::ClosedOnEndTxn) => {
                closed += 1;
                if closed >= CLOSED_TRIES {
                    return Ok(EndTxnOutcome::Refused);
                }
                last = "the coordinator closed the connection".into();
            }
            Err(Failure::Other(e)) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "cannot end transaction {transactional_id} (producer {producer_id}, epoch {epoch}): {last}"
    ))
}

/// Why a try failed.
enum Failure {
    /// The connection closed where `EndTxn`'s answer was due.
    ClosedOnEndTxn,
    Other(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Failure {
        Failure::Other(e)
    }
}

/// One try; `Ok(None)` for an error worth retrying.
fn attempt(
    bootstrap: &str,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    deadline: Instant,
) -> Result<Option<EndTxnOutcome>, Failure> {
    let mut conn = connect_any(bootstrap, deadline)?;
    let mut body = Vec::new();
    put_str(&mut body, transactional_id);
    body.push(1); // key_type: transaction
    let resp = call(&mut conn, FIND_COORDINATOR, 1, &body)?;
    let mut r = Reader(&resp);
    let _throttle = r.i32()?;
    let error = r.i16()?;
    let _message = r.nullable_str()?;
    let _node = r.i32()?;
    let host = r.str()?;
    let port = r.i32()?;
    if error != 0 {
        return Ok(retriable(error, "FindCoordinator").map(|_| None)?);
    }
    let mut conn = connect_any(&format!("{host}:{port}"), deadline)?;
    let mut body = Vec::new();
    put_str(&mut body, transactional_id);
    body.extend_from_slice(&producer_id.to_be_bytes());
    body.extend_from_slice(&epoch.to_be_bytes());
    body.push(commit as u8);
    let resp = match call(&mut conn, END_TXN, 1, &body) {
        Err(CallError::Closed) => return Err(Failure::ClosedOnEndTxn),
        Err(CallError::Other(e)) => return Err(Failure::Other(e)),
        Ok(resp) => resp,
    };
    let mut r = Reader(&resp);
    let _throttle = r.i32()?;
    match r.i16()? {
        0 => Ok(Some(EndTxnOutcome::Done)),
        // INVALID_PRODUCER_EPOCH, PRODUCER_FENCED
        47 | 90 => Ok(Some(EndTxnOutcome::Fenced)),
        // INVALID_TXN_STATE, INVALID_PRODUCER_ID_MAPPING
        48 | 49 => Ok(Some(EndTxnOutcome::NotOpen)),
        other => Ok(retriable(other, "EndTxn").map(|_| None)?),
    }
}

/// Kafka's retriable coordinator errors; anything else is final.
fn retriable(code: i16, request: &str) -> Result<(), String> {
    match code {
        // COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
        // CONCURRENT_TRANSACTIONS
        14 | 15 | 16 | 51 => Ok(()),
        other => Err(format!("{request} failed with Kafka error code {other}")),
    }
}

fn connect_any(servers: &str, deadline: Instant) -> Result<TcpStream, String> {
    let mut last = format!("no address in `{servers}`");
    for server in servers.split(',').map(str::trim) {
        let addrs = match server.to_socket_addrs() {
            Ok(a) => a,
            Err(e) => {
                last = format!("{server}: {e}");
                continue;
            }
        };
        for addr in addrs {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100));
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(left));
                    let _ = s.set_write_timeout(Some(left));
                    return Ok(s);
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
    }
    Err(last)
}

/// One request (header v1: api key, version, correlation id, client id) and its response
/// body (after the v0 response header).
enum CallError {
    /// The peer closed the connection before answering.
    Closed,
    Other(String),
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Failure {
        match e {
            CallError::Closed => Failure::Other("the broker closed the connection".into()),
            CallError::Other(e) => Failure::Other(e),
        }
    }
}

fn call(
    conn: &mut TcpStream,
    api_key: i16,
    version: i16,
    body: &[u8],
) -> Result<Vec<u8>, CallError> {
    let mut msg = Vec::with_capacity(body.len() + 32);
    msg.extend_from_slice(&api_key.to_be_bytes());
    msg.extend_from_slice(&version.to_be_bytes());
    msg.extend_from_slice(&1i32.to_be_bytes());
    put_str(&mut msg, "floe");
    msg.extend_from_slice(body);
    let mut framed = (msg.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&msg);
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted => CallError::Closed,
        _ => CallError::Other(format!("kafka request {api_key}: {e}")),
    };
    conn.write_all(&framed).map_err(io)?;
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).map_err(io)?;
    let len = i32::from_be_bytes(len);
    if !(4..=1 << 20).contains(&len) {
        return Err(CallError::Other(format!(
            "kafka request {api_key}: response of {len} bytes"
        )));
    }
    let mut resp = vec![0u8; len as usize];
    conn.read_exact(&mut resp).map_err(io)?;
    if resp[..4] != 1i32.to_be_bytes() {
        return Err(CallError::Other(format!(
            "kafka request {api_key}: wrong correlation id"
        )));
    }
    Ok(resp.split_off(4))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("kafka response too short".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn nullable_str(&mut self) -> Result<Option<String>, String> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        Ok(Some(
            String::from_utf8_lossy(self.take(len as usize)?).into_owned(),
        ))
    }
    fn str(&mut self) -> Result<String, String> {
        Ok(self.nullable_str()?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_length_prefixed_and_responses_parse() {
        let mut b = Vec::new();
        put_str(&mut b, "ab");
        assert_eq!(b, [0, 2, b'a', b'b']);
        let resp = [
            0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 0, 1, 0, 1, b'h', 0, 0, 0, 9,
        ];
        let mut r = Reader(&resp);
        assert_eq!(r.i32().unwrap(), 0);
        assert_eq!(r.i16().unwrap(), 0);
        assert_eq!(r.nullable_str().unwrap(), None);
        assert_eq!(r.i32().unwrap(), 1);
        assert_eq!(r.str().unwrap(), "h");
        assert_eq!(r.i32().unwrap(), 9);
        assert!(r.i16().is_err());
    }

    #[test]
    fn only_coordinator_errors_are_retried() {
        assert!(retriable(51, "EndTxn").is_ok());
        let err = retriable(53, "EndTxn").unwrap_err();
        assert!(err.contains("53"), "{err}");
    }
}
