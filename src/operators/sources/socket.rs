//! `type: socket`: text lines from `host:port`, Flink's `socketTextStream` (fed by `nc -lk 8888`).
//!
//! The source connects as a client, splits what arrives by `delimiter` (with the default `"\n"`,
//! a `\r` before it is dropped too) and hands over a batch as soon as one complete line is
//! there; after about 100 ms of nothing it answers `Idle` so the task can do other work.
//!
//! Connection policy:
//! - the first connection is tried `1 + connect-retries` times; if it never succeeds the source
//!   fails with an error that says how to start a test feed, so a wrong port fails fast;
//! - when the peer closes (or the connection breaks) the text after the last delimiter is
//!   emitted as a last line (as Flink does) and the source reconnects, up to `max-retries` times
//!   in a row (`-1`: for ever, the default; `0`: the stream ends when the peer closes, Flink's
//!   own default), waiting `retry-backoff`, doubled after each failure up to
//!   `max-retry-backoff`. When the retries run out the source fails.
//!
//! Position: a socket cannot replay what it delivered, so this source has no position to
//! snapshot; after a restore it reads whatever the peer sends next (at-most-once for the input,
//! as with Flink's socket source). This module must not pretend otherwise.
//!
//! `next` never blocks longer than about 100 ms: the pending connect future and the backoff
//! deadline are kept in the state between calls.

use super::duration_serde;
use super::text::{SourceFormat, TextReader, TextSettings};
use crate::operators::event_time::{EventTimeConfig, WatermarkEvent};
use crate::operators::transforms::parse::{FieldSpec, OnError};
use crate::operators::{BuildContext, OperatorError, OperatorSpec, Problem, Source, SourceEvent};
use crate::record::{Batch, Column, Schema, Span, StrColumn};
use memchr::memmem;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long `next` waits for data before answering `Idle`.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// A "line" longer than this means the delimiter is wrong or the peer misbehaves.
const MAX_LINE: usize = 64 << 20;
/// Bytes reserved for each read.
const READ_CHUNK: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SocketConfig {
    #[serde(default = "default_host")]
    pub host: String,
    pub port: u32,
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Reconnect attempts in a row after the connection drops; -1 = for ever, 0 = end the stream.
    #[serde(default = "default_max_retries")]
    pub max_retries: i64,
    /// Retries of the very first connection before the source fails.
    #[serde(default = "default_connect_retries")]
    pub connect_retries: u32,
    /// Wait before the first retry; doubled after each failed attempt.
    #[serde(default = "default_retry_backoff", with = "duration_serde")]
    pub retry_backoff: Duration,
    /// The longest wait between two attempts.
    #[serde(default = "default_max_retry_backoff", with = "duration_serde")]
    pub max_retry_backoff: Duration,
    /// How each line becomes a record: `raw` (`{line: str}`), `json` or `csv` with `fields`.
    #[serde(default)]
    pub format: SourceFormat,
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
    #[serde(default)]
    pub csv_delimiter: Option<String>,
    /// A line that does not parse: `fail` the job, or `drop` it (counted and logged).
    #[serde(default)]
    pub on_error: OnError,
    /// Records carry the time of a field, and the source emits watermarks.
    #[serde(default)]
    pub event_time: Option<EventTimeConfig>,
}

fn default_host() -> String {
    "localhost".into()
}
fn default_delimiter() -> String {
    "\n".into()
}
fn default_max_retries() -> i64 {
    -1
}
fn default_connect_retries() -> u32 {
    3
}
fn default_retry_backoff() -> Duration {
    Duration::from_millis(100)
}
fn default_max_retry_backoff() -> Duration {
    Duration::from_secs(10)
}

impl SocketConfig {
    /// Settings for `host:port` with every default (for tests and programmatic use).
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        SocketConfig {
            host: host.into(),
            port: port as u32,
            delimiter: default_delimiter(),
            max_retries: default_max_retries(),
            connect_retries: default_connect_retries(),
            retry_backoff: default_retry_backoff(),
            max_retry_backoff: default_max_retry_backoff(),
            format: SourceFormat::Raw,
            fields: Vec::new(),
            csv_delimiter: None,
            on_error: OnError::Fail,
            event_time: None,
        }
    }

    fn text(&self) -> TextSettings<'_> {
        TextSettings {
            format: self.format,
            fields: &self.fields,
            csv_delimiter: self.csv_delimiter.as_deref(),
            on_error: self.on_error,
            event_time: self.event_time.as_ref(),
        }
    }
}

impl OperatorSpec for SocketConfig {
    fn makes_event_time(&self, _input: bool) -> bool {
        self.event_time.is_some()
    }

    fn output_schema(&self, _input: Option<&Schema>) -> Result<Schema, Vec<Problem>> {
        let mut problems = Vec::new();
        if self.host.trim().is_empty() {
            problems.push(Problem::new(
                "host",
                "must not be empty (default: localhost)",
            ));
        }
        if !(1..=65535).contains(&self.port) {
            problems.push(Problem::new(
                "port",
                format!("must be between 1 and 65535, got {}", self.port),
            ));
        }
        if self.delimiter.is_empty() {
            problems.push(Problem::new(
                "delimiter",
                "must not be empty (default: \"\\n\")",
            ));
        }
        if self.max_retries < -1 {
            problems.push(Problem::new(
                "max-retries",
                format!(
                    "must be -1 (for ever), 0 (end when the peer closes) or a positive count, got {}",
                    self.max_retries
                ),
            ));
        }
        if self.retry_backoff > self.max_retry_backoff {
            problems.push(Problem::new(
                "retry-backoff",
                format!(
                    "{:?} is longer than max-retry-backoff ({:?})",
                    self.retry_backoff, self.max_retry_backoff
                ),
            ));
        }
        self.text().schema_after(problems)
    }

    fn required_parallelism(&self) -> Option<u32> {
        // One connection: several subtasks would each get a different share of a single feed.
        Some(1)
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

enum Conn {
    Connecting(ConnectFuture),
    /// Waiting out the backoff before the next attempt.
    Waiting(Instant),
    Connected(TcpStream),
    Ended,
}

/// One running socket source (always a single subtask).
pub struct Socket {
    host: String,
    port: u16,
    delimiter: Vec<u8>,
    /// `\r` before `\n` is dropped when the delimiter is `\n`.
    strip_cr: bool,
    max_retries: i64,
    connect_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    conn: Conn,
    /// Whether a connection ever succeeded (decides between the start and reconnect policies).
    ever_connected: bool,
    /// Retries used since the last successful connection.
    retries: u32,
    backoff: Duration,
    /// Bytes received after the last complete line.
    pending: Vec<u8>,
    /// Lines to records (format, event time); boxed, as it is large and cold.
    reader: Box<TextReader>,
    /// Lines received so far, for the position of a bad one.
    lines: u64,
}

impl Socket {
    pub fn new(c: &SocketConfig, ctx: &BuildContext) -> Result<Self, OperatorError> {
        if let Err(problems) = c.output_schema(None) {
            let text: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            return Err(OperatorError::Config(text.join("; ")));
        }
        let mut socket = Socket {
            host: c.host.clone(),
            port: c.port as u16,
            delimiter: c.delimiter.as_bytes().to_vec(),
            strip_cr: c.delimiter == "\n",
            max_retries: c.max_retries,
            connect_retries: c.connect_retries,
            initial_backoff: c.retry_backoff,
            max_backoff: c.max_retry_backoff,
            conn: Conn::Ended,
            ever_connected: false,
            retries: 0,
            backoff: c.retry_backoff,
            pending: Vec::new(),
            reader: Box::new(c.text().reader("socket", ctx)?),
            lines: 0,
        };
        socket.conn = Conn::Connecting(socket.connect());
        Ok(socket)
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn connect(&self) -> ConnectFuture {
        let (host, port) = (self.host.clone(), self.port);
        Box::pin(async move { TcpStream::connect((host.as_str(), port)).await })
    }

    /// The retries allowed in the current phase (`None` = unlimited).
    fn retry_limit(&self) -> Option<u32> {
        if !self.ever_connected {
            Some(self.connect_retries)
        } else if self.max_retries < 0 {
            None
        } else {
            Some(self.max_retries as u32)
        }
    }

    /// Schedule the next attempt after a failure or a drop, or say why there is none.
    fn schedule_retry(&mut self, why: Option<io::Error>) -> Result<(), OperatorError> {
        let exhausted = self
            .retry_limit()
            .is_some_and(|limit| self.retries >= limit);
        if exhausted {
            return match why {
                Some(e) if !self.ever_connected => Err(self.cannot_connect(e)),
                Some(e) => Err(OperatorError::io(
                    format!(
                        "lost the connection to {} and could not reconnect after {} attempts (max-retries)",
                        self.address(),
                        self.retries
                    ),
                    e,
                )),
                None => {
                    // max-retries 0: the peer closing ends the stream, as in Flink.
                    tracing::info!(address = %self.address(), "socket closed by the peer; the stream ends (max-retries: 0)");
                    self.conn = Conn::Ended;
                    Ok(())
                }
            };
        }
        self.retries += 1;
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.max_backoff);
        match &why {
            Some(e) => {
                tracing::warn!(address = %self.address(), attempt = self.retries, delay_ms = delay.as_millis() as u64, error = %e, "cannot connect; retrying")
            }
            None => {
                tracing::warn!(address = %self.address(), attempt = self.retries, delay_ms = delay.as_millis() as u64, "socket closed by the peer; reconnecting")
            }
        }
        self.conn = Conn::Waiting(Instant::now() + delay);
        Ok(())
    }

    fn cannot_connect(&self, e: io::Error) -> OperatorError {
        let hint = if e.kind() == io::ErrorKind::ConnectionRefused {
            format!(
                "Is anything listening on port {}? For a test feed, run: nc -lk {}",
                self.port, self.port
            )
        } else {
            "Check the source's `host` and `port`.".to_string()
        };
        OperatorError::io(
            format!(
                "cannot connect to {} after {} attempts",
                self.address(),
                self.retries + 1
            ),
            io::Error::new(e.kind(), format!("{e}. {hint}")),
        )
    }

    /// The complete lines in `pending` as one batch, leaving the rest there.
    fn take_lines(&mut self) -> Option<Batch> {
        let mut spans = Vec::new();
        let mut start = 0usize;
        for pos in memmem::find_iter(&self.pending, &self.delimiter) {
            spans.push(self.span(start, pos));
            start = pos + self.delimiter.len();
        }
        if spans.is_empty() {
            return None;
        }
        let buf: Arc<[u8]> = Arc::from(&self.pending[..start]);
        self.pending.drain(..start);
        Some(Batch::new(vec![Column::Str(StrColumn { buf, spans })]))
    }

    /// The leftover bytes (no delimiter after them) as a last line.
    fn take_rest(&mut self) -> Option<Batch> {
        if self.pending.is_empty() {
            return None;
        }
        let span = self.span(0, self.pending.len());
        let buf: Arc<[u8]> = Arc::from(std::mem::take(&mut self.pending));
        Some(Batch::new(vec![Column::Str(StrColumn {
            buf,
            spans: vec![span],
        })]))
    }

    fn span(&self, start: usize, mut end: usize) -> Span {
        if self.strip_cr && end > start && self.pending[end - 1] == b'\r' {
            end -= 1;
        }
        Span {
            start: start as u32,
            len: (end - start) as u32,
        }
    }
}

impl Source for Socket {
    async fn next(&mut self) -> Result<SourceEvent, OperatorError> {
        let lines = match self.next_lines().await? {
            SourceEvent::Batch(lines) => lines,
            other => return Ok(other),
        };
        let first = self.lines;
        self.lines += lines.len() as u64;
        let address = self.address();
        let position = |row: usize| format!("line {} from {address}", first + row as u64 + 1);
        Ok(match self.reader.read(lines, &position)? {
            Some(records) => SourceEvent::Batch(records),
            None => SourceEvent::Idle,
        })
    }

    fn watermark(&mut self) -> Option<WatermarkEvent> {
        self.reader.watermark()
    }

    fn records_discarded(&self) -> u64 {
        self.reader.discarded()
    }
}

impl Socket {
    /// The next lines as `{line: str}`.
    async fn next_lines(&mut self) -> Result<SourceEvent, OperatorError> {
        let deadline = Instant::now() + MAX_WAIT;
        loop {
            match &mut self.conn {
                Conn::Ended => {
                    return Ok(match self.take_rest() {
                        Some(batch) => SourceEvent::Batch(batch),
                        None => SourceEvent::End,
                    });
                }
                Conn::Waiting(until) => {
                    let until = *until;
                    if until > deadline {
                        tokio::time::sleep_until(deadline).await;
                        return Ok(SourceEvent::Idle);
                    }
                    tokio::time::sleep_until(until).await;
                    self.conn = Conn::Connecting(self.connect());
                }
                Conn::Connecting(fut) => match tokio::time::timeout_at(deadline, fut).await {
                    Err(_elapsed) => return Ok(SourceEvent::Idle),
                    Ok(Ok(stream)) => {
                        if self.ever_connected {
                            tracing::info!(address = %self.address(), "socket reconnected");
                        } else {
                            tracing::info!(address = %self.address(), "socket connected");
                        }
                        self.ever_connected = true;
                        self.retries = 0;
                        self.backoff = self.initial_backoff;
                        self.conn = Conn::Connected(stream);
                    }
                    Ok(Err(e)) => self.schedule_retry(Some(e))?,
                },
                Conn::Connected(stream) => {
                    if self.pending.capacity() - self.pending.len() < READ_CHUNK / 4 {
                        self.pending.reserve(READ_CHUNK);
                    }
                    // `read_buf` is cancel-safe: a timeout loses no bytes.
                    match tokio::time::timeout_at(deadline, stream.read_buf(&mut self.pending))
                        .await
                    {
                        Err(_elapsed) => return Ok(SourceEvent::Idle),
                        Ok(Ok(0)) => {
                            let rest = self.take_rest();
                            self.schedule_retry(None)?;
                            if let Some(batch) = rest {
                                return Ok(SourceEvent::Batch(batch));
                            }
                        }
                        Ok(Ok(_)) => {
                            if let Some(batch) = self.take_lines() {
                                return Ok(SourceEvent::Batch(batch));
                            }
                            if self.pending.len() > MAX_LINE {
                                return Err(OperatorError::Data(format!(
                                    "more than {} MiB from {} without a delimiter {:?}; is `delimiter` right?",
                                    MAX_LINE >> 20,
                                    self.address(),
                                    String::from_utf8_lossy(&self.delimiter)
                                )));
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(address = %self.address(), error = %e, "socket read failed");
                            let rest = self.take_rest();
                            self.schedule_retry(Some(e))?;
                            if let Some(batch) = rest {
                                return Ok(SourceEvent::Batch(batch));
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_with_defaults_and_durations() {
        let c: SocketConfig =
            serde_yaml::from_str("port: 8888\nretry-backoff: 50 ms\nmax-retry-backoff: 2000")
                .unwrap();
        assert_eq!(c.host, "localhost");
        assert_eq!(c.delimiter, "\n");
        assert_eq!(c.max_retries, -1);
        assert_eq!(c.retry_backoff, Duration::from_millis(50));
        assert_eq!(c.max_retry_backoff, Duration::from_secs(2));
        assert_eq!(c.required_parallelism(), Some(1));
        assert!(c.output_schema(None).is_ok());
    }

    #[test]
    fn bad_settings_are_reported_together() {
        let mut c = SocketConfig::new("", 1);
        c.port = 70000;
        c.delimiter = String::new();
        c.max_retries = -2;
        let problems = c.output_schema(None).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["host", "port", "delimiter", "max-retries"]);
        assert!(problems[1].message.contains("70000"));
    }

    #[test]
    fn port_is_required() {
        let err = serde_yaml::from_str::<SocketConfig>("host: x").unwrap_err();
        assert!(err.to_string().contains("missing field `port`"), "{err}");
    }
}
