//! A small blocking HTTP/1.1 client for floe's REST API (or Flink's: the paths and JSON are the
//! same), used by `floe list`, `savepoint`, `stop` and `cancel`.
//!
//! Built on reqwest's blocking client (the verbs are synchronous and make a handful of
//! requests). Requests that change something carry `Content-Type:
//! application/json` (the API refuses other bodies with 415) and, when `rest.auth.token` or
//! `rest.auth.token-file` is configured, `Authorization: Bearer <token>`. A non-2xx answer
//! becomes [`ClientError::Api`] with the first message of Flink's `{"errors": [...]}`.

use serde_json::Value;
use std::io::Read;
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
    /// Built once: a blocking reqwest client starts its own runtime thread, and the
    /// savepoint wait polls many times.
    http: Result<reqwest::blocking::Client, String>,
}

/// A raw answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Client {
    pub fn new(endpoint: Endpoint, token: Option<String>) -> Self {
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(IO_TIMEOUT)
            // The API is on a host the user named (usually loopback): never through a proxy.
            .no_proxy()
            .user_agent(concat!("floe/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| error_chain(&e));
        Client {
            endpoint,
            token,
            http,
        }
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

    /// Sends one request and reads the whole answer (at most [`MAX_ANSWER`] bytes).
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
        let http = self.http.as_ref().map_err(|e| transport(e.clone()))?;
        let verb = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| transport(format!("not an HTTP method: {e}")))?;
        let mut request = http
            .request(verb, format!("http://{addr}{path}"))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if method != "GET" {
            let body = body.map(Value::to_string).unwrap_or_default();
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let answer = request.send().map_err(|e| {
            if e.is_connect() {
                ClientError::Unreachable {
                    addr: addr.clone(),
                    reason: error_chain(&e),
                }
            } else {
                transport(error_chain(&e))
            }
        })?;
        let status = answer.status().as_u16();
        let mut raw = Vec::new();
        answer
            .take(MAX_ANSWER + 1)
            .read_to_end(&mut raw)
            .map_err(|e| transport(format!("cannot read the answer: {e}")))?;
        if raw.len() as u64 > MAX_ANSWER {
            return Err(transport(format!(
                "the answer is larger than {MAX_ANSWER} bytes"
            )));
        }
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&raw).into_owned(),
        })
    }
}

/// An error with its causes (reqwest's own message is only the outermost, e.g. "error
/// sending request"; the cause says "connection refused" or "connection closed").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
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
    fn error_messages_are_the_first_line_of_flinks_errors() {
        assert_eq!(
            first_line("Job could not be found.\n\tat x"),
            "Job could not be found."
        );
    }
}
