//! A small blocking HTTP/1.1 client for floe's REST API (or Flink's: the paths and JSON are the
//! same), used by `floe list`, `savepoint`, `stop` and `cancel`.
//!
//! One request per connection (`Connection: close`), read to the end: the verbs make a handful
//! of requests, so keeping connections alive buys nothing and a plain `TcpStream` keeps the
//! dependency list short. Requests that change something carry `Content-Type:
//! application/json` (the API refuses other bodies with 415) and, when `rest.auth.token` or
//! `rest.auth.token-file` is configured, `Authorization: Bearer <token>`. A non-2xx answer
//! becomes [`ClientError::Api`] with the first message of Flink's `{"errors": [...]}`.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long to wait for a connection to a resolved address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for an answer: the API answers every request at once (savepoints and
/// stops are asynchronous and polled), so a long silence means something is wrong.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Answers larger than this are refused rather than read into memory.
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// What went wrong talking to the REST API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the floe REST API at {addr}: {reason}. Is a floe running? Start one \
         with `floe run <pipeline.yaml>`: it serves the REST API on rest.port (default 8081). \
         Or pass -m host:port (or set rest.address and rest.port)"
    )]
    Unreachable { addr: String, reason: String },
    #[error(
        "the REST API at {addr} did not answer {method} {path}: {reason}; is {addr} a floe \
         REST API (rest.port)?"
    )]
    Transport {
        addr: String,
        method: &'static str,
        path: String,
        reason: String,
    },
    #[error(
        "{addr} answered {method} {path} with something that is not floe's REST API \
         ({detail}); check -m host:port and rest.port"
    )]
    Protocol {
        addr: String,
        method: &'static str,
        path: String,
        detail: String,
    },
    /// The API answered with an error: `message` is its text (Flink's `errors[0]`).
    #[error("{message}")]
    Api { status: u16, message: String },
}

/// The address of a REST API: `host:port` as given to `-m` or from `rest.address`:`rest.port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `host:port`, `[v6]:port`, or either after `http://` (a trailing `/` is
    /// ignored). `https://` is refused: floe serves plain HTTP on loopback.
    pub fn parse(given: &str) -> Result<Endpoint, String> {
        let example = "e.g. -m localhost:8081";
        let s = given.trim();
        if s.starts_with("https://") {
            return Err(format!(
                "'{given}': https is not supported, floe's REST API is plain HTTP; give \
                 host:port, {example}"
            ));
        }
        let s = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!("'{given}' has no port; give host:port, {example}"));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(format!("'{given}' has no host; give host:port, {example}"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("'{given}': '{port}' is not a port (1-65535), {example}"))?;
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A client for one REST API.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    token: Option<String>,
}

/// A raw answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Client {
    pub fn new(endpoint: Endpoint, token: Option<String>) -> Self {
        Client { endpoint, token }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.call("POST", path, Some(body))
    }

    pub fn patch(&self, path: &str) -> Result<Value, ClientError> {
        self.call("PATCH", path, Some(&Value::Object(Default::default())))
    }

    /// One request; a 2xx answer's body as JSON (an empty body is `{}`), any other status as
    /// [`ClientError::Api`].
    fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let answer = self.send(method, path, body)?;
        let protocol = |detail: String| ClientError::Protocol {
            addr: self.endpoint.to_string(),
            method,
            path: path.to_owned(),
            detail,
        };
        let json: Option<Value> = if answer.body.trim().is_empty() {
            Some(Value::Object(Default::default()))
        } else {
            serde_json::from_str(&answer.body).ok()
        };
        if (200..300).contains(&answer.status) {
            return json.ok_or_else(|| {
                protocol(format!(
                    "HTTP {} with a body that is not JSON: {}",
                    answer.status,
                    excerpt(&answer.body)
                ))
            });
        }
        let message = json
            .as_ref()
            .and_then(|v| v["errors"].as_array())
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), first_line))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "HTTP {} from {method} {path}: {}",
                    answer.status,
                    excerpt(&answer.body)
                )
            });
        Err(ClientError::Api {
            status: answer.status,
            message,
        })
    }

    /// Sends one request and reads the whole answer.
    pub fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        let addr = self.endpoint.to_string();
        let transport = |reason: String| ClientError::Transport {
            addr: addr.clone(),
            method,
            path: path.to_owned(),
            reason,
        };
        let mut stream = self.connect()?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| transport(e.to_string()))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: floe/{}\r\nAccept: \
             application/json\r\nConnection: close\r\n",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = body.map(Value::to_string).unwrap_or_default();
        if method != "GET" {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.as_bytes()))
            .and_then(|()| stream.flush())
            .map_err(|e| transport(format!("cannot send the request: {e}")))?;
        let mut raw = Vec::new();
        stream
            .take(MAX_ANSWER + 1)
            .read_to_end(&mut raw)
            .map_err(|e| transport(format!("cannot read the answer: {e}")))?;
        if raw.len() as u64 > MAX_ANSWER {
            return Err(transport(format!(
                "the answer is larger than {MAX_ANSWER} bytes"
            )));
        }
        if raw.is_empty() {
            // A server going away (a floe that exits as its job ends) closes its connections
            // without an answer: the floe stopped answering, not something else answered.
            return Err(transport(
                "the connection closed without an answer".to_owned(),
            ));
        }
        parse_answer(&raw).map_err(|detail| ClientError::Protocol {
            addr: addr.clone(),
            method,
            path: path.to_owned(),
            detail,
        })
    }

    /// Connects to the first resolved address that answers (`localhost` may resolve to `::1`
    /// first while floe listens on 127.0.0.1).
    fn connect(&self) -> Result<TcpStream, ClientError> {
        let addr = self.endpoint.to_string();
        let unreachable = |reason: String| ClientError::Unreachable {
            addr: addr.clone(),
            reason,
        };
        let resolved: Vec<SocketAddr> = (self.endpoint.host.as_str(), self.endpoint.port)
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("cannot resolve '{}': {e}", self.endpoint.host)))?
            .collect();
        let mut last = format!("'{}' resolves to no address", self.endpoint.host);
        for a in resolved {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(s) => return Ok(s),
                Err(e) => last = e.to_string(),
            }
        }
        Err(unreachable(last))
    }
}

/// The first line of a Flink error (its message, without the stack trace).
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_owned()
}

fn excerpt(body: &str) -> String {
    let t = body.trim();
    if t.is_empty() {
        return "an empty body".into();
    }
    let cut: String = t.chars().take(200).collect();
    if cut.len() < t.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// Parses an HTTP/1.1 answer read to the end of the connection.
pub fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            if raw.is_empty() {
                "the connection closed without an answer".to_owned()
            } else {
                format!(
                    "not an HTTP answer: {}",
                    excerpt(&String::from_utf8_lossy(raw))
                )
            }
        })?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {}", excerpt(status_line)))?;
    let mut chunked = false;
    let mut length: Option<usize> = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k.eq_ignore_ascii_case("content-length") {
            length = v.parse().ok();
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else {
        match length {
            Some(n) if n <= rest.len() => rest[..n].to_vec(),
            Some(n) => {
                return Err(format!(
                    "the answer ended after {} of its {n} bytes",
                    rest.len()
                ))
            }
            None => rest.to_vec(),
        }
    };
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = s
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunked body without a chunk size line")?;
        let size_text = String::from_utf8_lossy(&s[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size '{size_text}'"))?;
        s = &s[eol + 2..];
        if n == 0 {
            return Ok(out);
        }
        if s.len() < n {
            return Err("the answer ended inside a chunk".into());
        }
        out.extend_from_slice(&s[..n]);
        s = s.get(n + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_as_flinks_jobmanager_option() {
        let e = Endpoint::parse("localhost:8081").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("localhost", 8081));
        assert_eq!(e.to_string(), "localhost:8081");
        let e = Endpoint::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 9000));
        let e = Endpoint::parse("[::1]:8081").unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.to_string(), "[::1]:8081");
        for bad in ["localhost", ":8081", "h:0", "h:x", "h:99999", "https://h:1"] {
            let err = Endpoint::parse(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn answers_parse_with_length_chunks_or_to_the_end() {
        let a = parse_answer(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((a.status, a.body.as_str()), (202, "{}"));
        let a = parse_answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(a.body, "{\"a\":1}");
        let a = parse_answer(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!((a.status, a.body.as_str()), (404, "nope"));
        assert!(parse_answer(b"").unwrap_err().contains("closed"));
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n")
            .unwrap_err()
            .contains("status line"));
        assert!(
            parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}")
                .unwrap_err()
                .contains("2 of its 10")
        );
    }

    #[test]
    fn error_messages_are_the_first_line_of_flinks_errors() {
        assert_eq!(
            first_line("Job could not be found.\n\tat x"),
            "Job could not be found."
        );
    }
}
