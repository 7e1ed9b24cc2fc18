//! A scripted transaction coordinator on 127.0.0.1 for floe's own `EndTxn` client
//! (`kafka_resume`): it speaks the Kafka wire format (through the `kafka-protocol` crate) for
//! ApiVersions, SaslHandshake and SaslAuthenticate (PLAIN), FindCoordinator (itself) and
//! EndTxn, and answers each EndTxn as the test scripted: an error code, or closing the
//! connection as tansu does instead of answering an error. It records what it was asked.
//! A test-only peer: it shows the answers a real Kafka coordinator gives that tansu does not.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, EndTxnRequest, EndTxnResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// How the coordinator answers one EndTxn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// This Kafka error code (0: done).
    Code(i16),
    /// Close the connection without an answer.
    Close,
}

/// One EndTxn the coordinator received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTxnSeen {
    pub transactional_id: String,
    pub producer_id: i64,
    pub epoch: i16,
    pub committed: bool,
    /// Whether the connection had authenticated first.
    pub authenticated: bool,
}

#[derive(Default)]
struct Script {
    answers: VecDeque<Answer>,
    /// When the script is used up.
    then: Option<Answer>,
    seen: Vec<EndTxnSeen>,
}

/// A running fake coordinator; its thread ends with the test process.
pub struct FakeCoordinator {
    pub address: String,
    script: Arc<Mutex<Script>>,
}

impl FakeCoordinator {
    /// Answers EndTxn with `answers` in turn, then with `then` for ever. `plain`: the
    /// user and password SASL PLAIN must present (none: no authentication asked).
    pub fn start(answers: &[Answer], then: Answer, plain: Option<(&str, &str)>) -> FakeCoordinator {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let script = Arc::new(Mutex::new(Script {
            answers: answers.iter().copied().collect(),
            then: Some(then),
            seen: Vec::new(),
        }));
        let shared = script.clone();
        let port = listener.local_addr().expect("address").port();
        let plain = plain.map(|(u, p)| (u.to_string(), p.to_string()));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (script, plain) = (shared.clone(), plain.clone());
                std::thread::spawn(move || serve(conn, port, &script, plain.as_ref()));
            }
        });
        FakeCoordinator { address, script }
    }

    /// The EndTxn requests received so far.
    pub fn seen(&self) -> Vec<EndTxnSeen> {
        self.script.lock().unwrap().seen.clone()
    }
}

fn serve(mut conn: TcpStream, port: u16, script: &Mutex<Script>, plain: Option<&(String, String)>) {
    let mut authenticated = plain.is_none();
    loop {
        let mut len = [0u8; 4];
        if conn.read_exact(&mut len).is_err() {
            return;
        }
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        if conn.read_exact(&mut body).is_err() {
            return;
        }
        let mut buf = Bytes::from(body);
        let header = decode_request_header_from_buffer(&mut buf).expect("request header");
        let key = ApiKey::try_from(header.request_api_key).expect("api key");
        let v = header.request_api_version;
        let mut out = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut out, key.response_header_version(v))
            .unwrap();
        let ctx = Ctx {
            port,
            script,
            plain,
        };
        if !respond(&ctx, key, v, &mut buf, &mut authenticated, &mut out) {
            return; // closed without an answer
        }
        let mut framed = BytesMut::new();
        framed.put_i32(out.len() as i32);
        framed.put(out);
        if conn.write_all(framed.chunk()).is_err() {
            return;
        }
    }
}

struct Ctx<'a> {
    port: u16,
    script: &'a Mutex<Script>,
    plain: Option<&'a (String, String)>,
}

/// Appends the answer to request `key` v`v` to `out`; false: close the connection instead.
fn respond(
    ctx: &Ctx<'_>,
    key: ApiKey,
    v: i16,
    buf: &mut Bytes,
    authenticated: &mut bool,
    out: &mut BytesMut,
) -> bool {
    match key {
        ApiKey::ApiVersions => api_versions().encode(out, v).unwrap(),
        ApiKey::SaslHandshake => {
            let req = SaslHandshakeRequest::decode(buf, v).unwrap();
            let code = if req.mechanism.as_str() == "PLAIN" {
                0
            } else {
                33
            };
            SaslHandshakeResponse::default()
                .with_error_code(code)
                .with_mechanisms(vec![StrBytes::from_static_str("PLAIN")])
                .encode(out, v)
                .unwrap();
        }
        ApiKey::SaslAuthenticate => {
            let req = SaslAuthenticateRequest::decode(buf, v).unwrap();
            let want = ctx.plain.map(|(u, p)| format!("\0{u}\0{p}").into_bytes());
            *authenticated = want.is_some_and(|w| w == req.auth_bytes.as_ref());
            SaslAuthenticateResponse::default()
                .with_error_code(if *authenticated { 0 } else { 58 })
                .encode(out, v)
                .unwrap();
        }
        // Kafka closes a connection that skips authentication.
        _ if !*authenticated => return false,
        ApiKey::FindCoordinator => {
            let req = FindCoordinatorRequest::decode(buf, v).unwrap();
            let host = StrBytes::from_static_str("127.0.0.1");
            let port = i32::from(ctx.port);
            let mut resp = FindCoordinatorResponse::default();
            if v >= 4 {
                resp.coordinators = req
                    .coordinator_keys
                    .iter()
                    .map(|k| {
                        Coordinator::default()
                            .with_key(k.clone())
                            .with_host(host.clone())
                            .with_port(port)
                    })
                    .collect();
            } else {
                resp = resp.with_host(host).with_port(port);
            }
            resp.encode(out, v).unwrap();
        }
        ApiKey::EndTxn => {
            let req = EndTxnRequest::decode(buf, v).unwrap();
            match ctx.script.lock().unwrap().end_txn(&req, *authenticated) {
                Answer::Close => return false,
                Answer::Code(code) => EndTxnResponse::default()
                    .with_error_code(code)
                    .encode(out, v)
                    .unwrap(),
            }
        }
        other => panic!("the fake coordinator got {other:?}"),
    }
    true
}

impl Script {
    /// Notes an EndTxn and picks its answer.
    fn end_txn(&mut self, req: &EndTxnRequest, authenticated: bool) -> Answer {
        self.seen.push(EndTxnSeen {
            transactional_id: req.transactional_id.0.to_string(),
            producer_id: req.producer_id.0,
            epoch: req.producer_epoch,
            committed: req.committed,
            authenticated,
        });
        let then = self.then;
        self.answers.pop_front().or(then).unwrap_or(Answer::Close)
    }
}

fn api_versions() -> ApiVersionsResponse {
    let keys = [
        (ApiKey::ApiVersions, 0, 3),
        (ApiKey::SaslHandshake, 0, 1),
        (ApiKey::SaslAuthenticate, 0, 2),
        (ApiKey::FindCoordinator, 0, 4),
        (ApiKey::EndTxn, 0, 4),
    ];
    ApiVersionsResponse::default().with_api_keys(
        keys.iter()
            .map(|(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}
