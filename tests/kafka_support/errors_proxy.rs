//! A proxy on 127.0.0.1 in front of tansu that answers as Kafka where tansu closes the
//! connection: tansu 0.6 answers a refused `EndTxn` (an old producer epoch) by closing the
//! connection, where a Kafka coordinator answers `PRODUCER_FENCED`. The proxy follows the
//! requests on each connection (size, API key, version, correlation id) and, when tansu
//! closes while an `EndTxn` waits for its answer, sends that answer itself. Test-only: the
//! workaround for a test broker's quirk lives here, not in floe.

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, EndTxnResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Kafka's PRODUCER_FENCED.
const PRODUCER_FENCED: i16 = 90;

pub struct ErrorsProxy {
    pub port: u16,
}

/// Requests sent on one connection and not answered yet: (API key, version, correlation id).
type InFlight = Arc<Mutex<VecDeque<(i16, i16, i32)>>>;

impl ErrorsProxy {
    pub fn start(target: u16) -> ErrorsProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let in_flight: InFlight = Arc::default();
                let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                let f = in_flight.clone();
                std::thread::spawn(move || requests(client, server, &f));
                std::thread::spawn(move || responses(s2, c2, &in_flight));
            }
        });
        ErrorsProxy { port }
    }
}

/// One frame (with its size prefix) from `from`, or `None` at its end.
fn frame(from: &mut TcpStream) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    from.read_exact(&mut size).ok()?;
    let mut f = size.to_vec();
    f.resize(4 + i32::from_be_bytes(size).max(0) as usize, 0);
    from.read_exact(&mut f[4..]).ok()?;
    Some(f)
}

/// Client to tansu: every request forwarded, its key, version and correlation id noted.
fn requests(mut client: TcpStream, mut server: TcpStream, in_flight: &InFlight) {
    while let Some(f) = frame(&mut client) {
        if f.len() >= 12 {
            let key = i16::from_be_bytes([f[4], f[5]]);
            let version = i16::from_be_bytes([f[6], f[7]]);
            let correlation = i32::from_be_bytes([f[8], f[9], f[10], f[11]]);
            in_flight
                .lock()
                .unwrap()
                .push_back((key, version, correlation));
        }
        if server.write_all(&f).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

/// Tansu to client: every answer forwarded; when tansu closes with an `EndTxn` unanswered,
/// the answer Kafka would have sent.
fn responses(mut server: TcpStream, mut client: TcpStream, in_flight: &InFlight) {
    while let Some(f) = frame(&mut server) {
        in_flight.lock().unwrap().pop_front();
        if client.write_all(&f).is_err() {
            return;
        }
    }
    let waiting = in_flight.lock().unwrap().pop_front();
    if let Some((key, version, correlation)) = waiting {
        if key == ApiKey::EndTxn as i16 {
            let mut body = BytesMut::new();
            ResponseHeader::default()
                .with_correlation_id(correlation)
                .encode(&mut body, ApiKey::EndTxn.response_header_version(version))
                .unwrap();
            EndTxnResponse::default()
                .with_error_code(PRODUCER_FENCED)
                .encode(&mut body, version)
                .unwrap();
            let mut framed = (body.len() as i32).to_be_bytes().to_vec();
            framed.extend_from_slice(&body);
            let _ = client.write_all(&framed);
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}
