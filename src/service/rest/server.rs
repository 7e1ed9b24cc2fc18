//! Serving the API: binding, the accept loop, and what every request passes before a handler.
//!
//! - **Host check** (against DNS rebinding, where a web page whose name is made to resolve to
//!   127.0.0.1 calls the loopback API from the user's browser): the `Host` header must name
//!   this server: `localhost`, a loopback address, the address the connection came in on,
//!   `rest.address`, `rest.bind-address`, or an entry of `rest.allowed-hosts` (`*`: any).
//!   Anything else gets 403 before routing.
//! - **Limits**: a body over `rest.server.max-content-length` gets 413 (by its
//!   `Content-Length` before it is read, or when a chunked body grows past it); a connection
//!   that sends no complete request header within `rest.server.read-timeout`, new or idle
//!   between requests, is closed, and a JSON body must arrive within it too; at most
//!   [`MAX_CONNECTIONS`] connections are served at once, others wait to be accepted.
//! - **Token**: with `rest.auth.token` (or `-file`), every call that changes something must
//!   carry `Authorization: Bearer <token>`, compared in constant time.
//! - **Secrets**: every JSON answer has known secret values masked in its strings
//!   ([`crate::secrets::redact_json`]); configuration routes mask secret keys themselves.
//!
//! HTTP/1.1 only, through hyper directly (axum's `serve` has no header timeout).

use super::{ApiError, RestOptions};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

/// Connections served at once; the next ones wait in the listen backlog until one ends. A
/// bound that keeps slow or idle clients from using up the process's file descriptors, which
/// checkpoints need.
pub const MAX_CONNECTIONS: usize = 256;

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("Not found: {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Method {method} is not allowed on {}", uri.path()),
    )
}

/// axum's own rejections (a path segment that is not UTF-8, a body over the size limit...)
/// answer in plain text: rewrap them as Flink's `{"errors": […]}` so every 4xx has one shape.
async fn json_errors(resp: Response) -> Response {
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/plain"));
    if !resp.status().is_client_error() || !plain {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => parts
            .status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_owned(),
    };
    ApiError::new(parts.status, text).into_response()
}

/// Every JSON answer passes here: a known secret value quoted in a string of it (an error
/// from S3 or Kafka in a job's `failure-cause`, a reload error) is replaced by the mask.
async fn redact_secrets(resp: Response) -> Response {
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !json || !crate::secrets::any_known() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "bug: an answer could not be read back".into(),
        )
        .into_response();
    };
    let redacted = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|mut v| crate::secrets::redact_json(&mut v).then_some(v))
        .and_then(|v| serde_json::to_vec(&v).ok());
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    match redacted {
        Some(b) => Response::from_parts(parts, axum::body::Body::from(b)),
        None => Response::from_parts(parts, axum::body::Body::from(bytes)),
    }
}

/// Compares in constant time (`subtle`): the time taken does not tell how much of a guess
/// was right. Only the length may differ in time, and it says nothing about the content.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    given.ct_eq(expected).into()
}

fn unauthorized(message: String) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// Requires `Authorization: Bearer <token>` on every call that changes something.
async fn require_token(
    State(token): State<Arc<str>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if reads {
        return next.run(req).await;
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if same_token(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => unauthorized(
            "the bearer token is wrong (rest.auth.token / rest.auth.token-file)".into(),
        ),
        None => unauthorized(format!(
            "{} {} changes a job: send Authorization: Bearer <token> (the token of \
             rest.auth.token or rest.auth.token-file)",
            req.method(),
            req.uri().path()
        )),
    }
}

/// The address a connection came in on, put on each of its requests.
#[derive(Debug, Clone, Copy)]
struct Arrival(SocketAddr);

/// How long a request body may take to arrive (`rest.server.read-timeout`), put on each
/// request for the body extractor.
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout(pub Duration);

/// The names the `Host` header may give.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// Lower-case names and address literals, without port.
    names: Vec<String>,
    any: bool,
}

impl HostPolicy {
    pub fn new(options: &RestOptions) -> HostPolicy {
        let mut names = vec!["localhost".to_string()];
        let mut any = false;
        // An unspecified bind address (0.0.0.0, ::) names no host: a browser sends it only
        // when a page asks for http://0.0.0.0/, never when it means this server.
        let bind = Some(&options.bind_address)
            .filter(|b| !b.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()));
        let configured = std::iter::once(&options.address)
            .chain(bind)
            .chain(options.allowed_hosts.iter());
        for n in configured {
            let n = n.trim();
            if n == "*" {
                any = true;
            } else if !n.is_empty() {
                names.push(normalize_host(n));
            }
        }
        HostPolicy { names, any }
    }

    /// Whether a `Host` value names this server, reached at `local`.
    pub fn allows(&self, host: &str, local: Option<SocketAddr>) -> bool {
        if self.any {
            return true;
        }
        let name = normalize_host(strip_port(host));
        if let Ok(ip) = name.parse::<IpAddr>() {
            if ip.is_loopback() || local.is_some_and(|l| l.ip() == ip) {
                return true;
            }
        }
        self.names.contains(&name)
    }
}

/// `host:port` → `host`; `[v6]:port` and `[v6]` → `v6`.
fn strip_port(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn normalize_host(h: &str) -> String {
    h.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// What every request passes first: the `Host` check and the declared body size.
struct Guard {
    hosts: HostPolicy,
    max_body: u64,
    read_timeout: Duration,
}

async fn guard(State(g): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let local = req.extensions().get::<Arrival>().map(|a| a.0);
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    match host {
        None => {
            return ApiError::bad_request(
                "the request has no Host header; send Host: <this server's name>".into(),
            )
            .into_response()
        }
        Some(h) if !g.hosts.allows(&h, local) => {
            return ApiError::forbidden(format!(
                "Host '{}' does not name this server (refused against DNS rebinding); \
                 reach it as localhost or by address, or add the name to rest.allowed-hosts",
                crate::text::escape(&h)
            ))
            .into_response()
        }
        Some(_) => {}
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > g.max_body) {
        return too_large(g.max_body).into_response();
    }
    req.extensions_mut().insert(BodyReadTimeout(g.read_timeout));
    next.run(req).await
}

/// The 413 answer for a body over `limit` bytes.
pub fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {limit} bytes (rest.server.max-content-length)"),
    )
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "cannot serve the REST API on {addr}: the address is already in use (another floe or \
         Flink?); pick another port with -D rest.port=<port>, or -D rest.port=0 for any free one"
    )]
    AddrInUse { addr: String },
    #[error(
        "cannot serve the REST API on {addr}: {reason}; check rest.bind-address and rest.port"
    )]
    Bind { addr: String, reason: String },
    #[error(
        "refusing to serve the REST API on {addr} without a token: bound to a non-loopback \
         address, anyone who can reach it could stop jobs and write savepoints; set \
         rest.auth.token or rest.auth.token-file, or bind to 127.0.0.1 (rest.bind-address)"
    )]
    NoToken { addr: SocketAddr },
    #[error("cannot read the REST token file {}: {reason}; fix rest.auth.token-file", path.display())]
    TokenFile { path: PathBuf, reason: String },
    #[error("{source_name} is empty; give a token, or leave the key out")]
    EmptyToken { source_name: String },
}

/// A running API server.
pub struct RestServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    join: tokio::task::JoinHandle<()>,
}

impl RestServer {
    /// The address it listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish, and waits for the server to end.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Err(e) = self.join.await {
            tracing::error!(error = %e, "bug: the REST server ended abnormally");
        }
    }
}

/// Binds `bind_address:port` and serves `app` (the [`super::router`] plus whatever was merged
/// into it) with Flink-shaped 404 and 405 answers, the Host check, the limits, and, when a
/// token is set, the token check on every call that changes something. Refuses a non-loopback
/// address without a token.
pub async fn serve(app: Router, options: &RestOptions) -> Result<RestServer, ServeError> {
    let token = options.resolve_token()?;
    if let Some(t) = &token {
        crate::secrets::remember(t);
    }
    let addr = format!("{}:{}", options.bind_address, options.port);
    let listener = tokio::net::TcpListener::bind((options.bind_address.as_str(), options.port))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => ServeError::AddrInUse { addr: addr.clone() },
            _ => ServeError::Bind {
                addr: addr.clone(),
                reason: e.to_string(),
            },
        })?;
    let local = listener.local_addr().map_err(|e| ServeError::Bind {
        addr: addr.clone(),
        reason: e.to_string(),
    })?;
    if !local.ip().is_loopback() && token.is_none() {
        return Err(ServeError::NoToken { addr: local });
    }
    let mut app = app
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::map_response(json_errors))
        .layer(middleware::map_response(redact_secrets));
    if let Some(t) = token {
        let t: Arc<str> = Arc::from(t);
        app = app.layer(middleware::from_fn_with_state(t, require_token));
    }
    let max_body = options.max_content_length;
    let g = Arc::new(Guard {
        hosts: HostPolicy::new(options),
        max_body,
        read_timeout: options.read_timeout,
    });
    // Added last, so it runs first: a wrong Host learns nothing else.
    let app = app
        .layer(DefaultBodyLimit::max(
            usize::try_from(max_body).unwrap_or(usize::MAX),
        ))
        .layer(middleware::from_fn_with_state(g, guard));
    let shutdown = CancellationToken::new();
    let join = tokio::spawn(accept_loop(
        listener,
        app,
        options.read_timeout,
        shutdown.clone(),
    ));
    tracing::info!(address = %local, "REST API listening on http://{local}");
    Ok(RestServer {
        addr: local,
        shutdown,
        join,
    })
}

/// Accepts connections until `stop`, each served on its own task; then waits for the
/// connections to finish what they were doing (idle ones close at once).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    read_timeout: Duration,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => break,
        };
        let (stream, _peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors or a connection reset before accept: the listener
                // itself is fine; a short pause keeps an EMFILE from spinning the loop.
                tracing::debug!(error = %e, "REST accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let arrival = stream.local_addr().ok().map(Arrival);
        let app = app.clone();
        let stop = stop.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            serve_connection(stream, app, arrival, read_timeout, stop).await;
            drop(permit);
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    arrival: Option<Arrival>,
    read_timeout: Duration,
    stop: CancellationToken,
) {
    use tower::ServiceExt;
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        if let Some(a) = arrival {
            req.extensions_mut().insert(a);
        }
        app.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(read_timeout);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "REST connection ended");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"secret", b"secret"));
        assert!(!same_token(b"secre", b"secret"));
        assert!(!same_token(b"secretx", b"secret"));
        assert!(!same_token(b"", b"secret"));
    }

    fn policy(allowed: &[&str]) -> HostPolicy {
        let mut o = RestOptions::local_ephemeral();
        o.address = "floe.internal".into();
        o.allowed_hosts = allowed.iter().map(|s| s.to_string()).collect();
        HostPolicy::new(&o)
    }

    #[test]
    fn hosts_that_name_this_server() {
        let p = policy(&["Dash.Example.com"]);
        let local: SocketAddr = "10.1.2.3:8081".parse().unwrap();
        for ok in [
            "localhost",
            "localhost:8081",
            "LOCALHOST.",
            "127.0.0.1:8081",
            "127.5.5.5",
            "[::1]:8081",
            "[::1]",
            "floe.internal:8081",
            "dash.example.com",
            "10.1.2.3:8081",
        ] {
            assert!(p.allows(ok, Some(local)), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8081",
            "localhost.evil.example",
            "10.1.2.4",
            "",
            "127.0.0.1.evil.example",
        ] {
            assert!(!p.allows(bad, Some(local)), "{bad}");
        }
        assert!(policy(&["*"]).allows("anything.example", None));
    }
}
