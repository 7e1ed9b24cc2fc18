//! A read_committed reader that decides from the log itself, for brokers that do not say.
//!
//! tansu 0.6 hides open transactions from `read_committed` consumers (the last stable offset)
//! but does not return the list of aborted transactions in its fetch responses, so librdkafka
//! delivers the records of an aborted transaction as if committed. This reader fetches every
//! batch (Fetch v4, `read_uncommitted`), including the control batches that end each
//! transaction, and keeps a transactional batch only once a commit marker of its producer
//! follows it: what a Kafka broker's `read_committed` gives. Uncompressed batches only (the
//! default of librdkafka's producer and of floe's sink).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;

/// One record of the log: its offset, key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// What a `read_committed` reader sees of partition `partition` of `topic`, in log order:
/// non-transactional records, and records of committed transactions.
pub fn read_committed(bootstrap: &str, topic: &str, partition: i32) -> Vec<LogRecord> {
    read_log(bootstrap, topic, partition).0
}

fn connect(bootstrap: &str) -> TcpStream {
    TcpStream::connect(bootstrap).expect("connect to the broker")
}

/// [`read_committed`]'s records, and how many data records the log holds in all (committed,
/// aborted or open).
pub fn read_log(bootstrap: &str, topic: &str, partition: i32) -> (Vec<LogRecord>, usize) {
    let mut conn = connect(bootstrap);
    let mut offset = 0i64;
    let mut out = Vec::new();
    let mut all = 0;
    // Per producer id: records of its open transaction, in order.
    let mut open: HashMap<i64, Vec<LogRecord>> = HashMap::new();
    loop {
        let (high, batches) = fetch(&mut conn, topic, partition, offset);
        if batches.is_empty() {
            assert!(
                offset >= high,
                "fetch at {offset} of {topic}-{partition} returned nothing below {high}"
            );
            break;
        }
        for b in batches {
            offset = b.base_offset + b.last_offset_delta as i64 + 1;
            if b.control {
                let commit = is_commit(&b);
                let done = open.remove(&b.producer_id).unwrap_or_default();
                if commit {
                    out.extend(done);
                }
            } else if b.transactional {
                all += b.records.len();
                open.entry(b.producer_id).or_default().extend(b.records);
            } else {
                all += b.records.len();
                out.extend(b.records);
            }
        }
        if offset >= high {
            break;
        }
    }
    out.sort_by_key(|r| r.offset);
    (out, all)
}

struct RecordBatch {
    base_offset: i64,
    last_offset_delta: i32,
    producer_id: i64,
    epoch: i16,
    transactional: bool,
    control: bool,
    records: Vec<LogRecord>,
}

/// Fetch v4 from `offset`: the high watermark and the complete batches returned.
fn fetch(
    conn: &mut TcpStream,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (i64, Vec<RecordBatch>) {
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i32).to_be_bytes()); // replica id
    body.extend_from_slice(&100i32.to_be_bytes()); // max wait ms
    body.extend_from_slice(&0i32.to_be_bytes()); // min bytes
    body.extend_from_slice(&(16i32 << 20).to_be_bytes()); // max bytes
    body.push(0); // read_uncommitted: every batch, markers included
    body.extend_from_slice(&1i32.to_be_bytes());
    put_str(&mut body, topic);
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&partition.to_be_bytes());
    body.extend_from_slice(&offset.to_be_bytes());
    body.extend_from_slice(&(8i32 << 20).to_be_bytes());
    let resp = call(conn, 1, 4, &body);
    let mut r = Reader(&resp);
    let _throttle = r.i32();
    assert_eq!(r.i32(), 1, "one topic in the fetch response");
    let _topic = r.string();
    assert_eq!(r.i32(), 1, "one partition in the fetch response");
    let _partition = r.i32();
    let error = r.i16();
    assert_eq!(
        error, 0,
        "fetch of {topic}-{partition} at {offset}: error {error}"
    );
    let high = r.i64();
    let _lso = r.i64();
    let aborted = r.i32();
    for _ in 0..aborted.max(0) {
        let _ = (r.i64(), r.i64());
    }
    let size = r.i32().max(0) as usize;
    let mut data = Reader(r.take(size));
    let mut batches = Vec::new();
    while data.0.len() >= 12 {
        let base_offset = data.i64();
        let len = data.i32() as usize;
        if data.0.len() < len {
            break; // a batch cut off at the end of the response: fetched again next time
        }
        let mut b = Reader(data.take(len));
        let _leader_epoch = b.i32();
        let magic = b.take(1)[0];
        assert_eq!(magic, 2, "record batch format v2");
        let _crc = b.i32();
        let attributes = b.i16();
        assert_eq!(
            attributes & 7,
            0,
            "compressed batch: this reader takes uncompressed ones"
        );
        let last_offset_delta = b.i32();
        let _base_ts = b.i64();
        let _max_ts = b.i64();
        let producer_id = b.i64();
        let epoch = b.i16();
        let _seq = b.i32();
        let count = b.i32();
        let mut records = Vec::with_capacity(count.max(0) as usize);
        for _ in 0..count {
            let len = b.varint() as usize;
            let mut rec = Reader(b.take(len));
            let _attrs = rec.take(1);
            let _ts = rec.varint();
            let delta = rec.varint();
            let key = rec.bytes();
            let value = rec.bytes().unwrap_or_default();
            records.push(LogRecord {
                offset: base_offset + delta,
                key,
                value,
            });
        }
        batches.push(RecordBatch {
            base_offset,
            last_offset_delta,
            producer_id,
            epoch,
            transactional: attributes & 0x10 != 0,
            control: attributes & 0x20 != 0,
            records,
        });
    }
    (high, batches)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn call(conn: &mut TcpStream, api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    msg.extend_from_slice(&api_key.to_be_bytes());
    msg.extend_from_slice(&version.to_be_bytes());
    msg.extend_from_slice(&7i32.to_be_bytes());
    put_str(&mut msg, "floe-test");
    msg.extend_from_slice(body);
    conn.write_all(&(msg.len() as i32).to_be_bytes()).unwrap();
    conn.write_all(&msg).unwrap();
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    conn.read_exact(&mut resp).unwrap();
    assert_eq!(resp[..4], 7i32.to_be_bytes(), "correlation id");
    resp.split_off(4)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "kafka response cut short");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let n = self.i16().max(0) as usize;
        String::from_utf8_lossy(self.take(n)).into_owned()
    }
    /// A zigzag varint.
    fn varint(&mut self) -> i64 {
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let b = self.take(1)[0];
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.varint();
        (n >= 0).then(|| self.take(n as usize).to_vec())
    }
}

/// Every batch of partition `partition` of `topic`, one line each: offset, kind (data of a
/// transaction, plain data, COMMIT or ABORT marker), producer id and epoch, records, first
/// and last value. For a failed exactly-once check: it shows which transaction a duplicated
/// record came from and which marker ended it.
pub fn describe_log(bootstrap: &str, topic: &str, partition: i32) -> String {
    let mut conn = connect(bootstrap);
    let mut offset = 0i64;
    let mut out = String::new();
    loop {
        let (high, batches) = fetch(&mut conn, topic, partition, offset);
        if batches.is_empty() {
            return out;
        }
        for b in batches {
            offset = b.base_offset + b.last_offset_delta as i64 + 1;
            let kind = match (b.control, b.transactional) {
                (true, _) if is_commit(&b) => "COMMIT",
                (true, _) => "ABORT",
                (false, true) => "txn",
                (false, false) => "plain",
            };
            let text = |r: Option<&LogRecord>| {
                r.map(|r| String::from_utf8_lossy(&r.value).into_owned())
                    .unwrap_or_default()
            };
            out.push_str(&format!(
                "{} {kind} pid={} epoch={} n={} {}..{}\n",
                b.base_offset,
                b.producer_id,
                b.epoch,
                b.records.len(),
                text(b.records.first()),
                text(b.records.last())
            ));
        }
        if offset >= high {
            return out;
        }
    }
}

/// A control batch's marker: commit (type 1) or abort (type 0).
fn is_commit(b: &RecordBatch) -> bool {
    b.records
        .first()
        .and_then(|r| r.key.as_ref())
        .is_some_and(|k| k.len() >= 4 && k[2..4] == [0, 1])
}
