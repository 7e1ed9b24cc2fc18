//! The socket source against real listeners on 127.0.0.1: lines as they arrive, `\r\n`,
//! reconnect after the peer closes, the end of the stream with `max-retries: 0`, and the error
//! when nothing listens.

use floe::operators::sources::socket::{Socket, SocketConfig};
use floe::operators::{BuildContext, Source, SourceEvent};
use floe::record::{Batch, Column};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn ctx() -> BuildContext {
    BuildContext {
        operator_id: "source".into(),
        subtask: 0,
        parallelism: 1,
        max_parallelism: 128,
        base_dir: ".".into(),
        delta_checkpoints: true,
    }
}

fn quick(port: u16) -> SocketConfig {
    let mut c = SocketConfig::new("127.0.0.1", port);
    c.retry_backoff = Duration::from_millis(1);
    c.max_retry_backoff = Duration::from_millis(5);
    c
}

fn lines(batch: &Batch) -> Vec<String> {
    let Column::Str(c) = &batch.columns[0] else {
        panic!("expected a text column")
    };
    c.iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

/// Calls `next` until a batch comes (Idle in between is fine), failing after `limit` calls.
async fn next_batch(src: &mut Socket) -> Vec<String> {
    for _ in 0..200 {
        match src.next().await.expect("the source failed") {
            SourceEvent::Batch(b) => return lines(&b),
            SourceEvent::Idle => {}
            SourceEvent::End => panic!("the stream ended"),
        }
    }
    panic!("no batch after 200 calls (~20 s)")
}

#[tokio::test]
async fn lines_arrive_as_sent_and_the_source_reconnects() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen_tx, seen_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut peer, _) = listener.accept().await.unwrap();
        peer.write_all(b"hello world\r\nsecond\nthi").await.unwrap();
        // Keep the connection open until the source has handed over the complete lines:
        // it must not wait for more data or for the close.
        seen_rx.await.unwrap();
        peer.write_all(b"rd").await.unwrap();
        drop(peer);
        // The source reconnects: a new accept gets it.
        let (mut peer, _) = listener.accept().await.unwrap();
        peer.write_all(b"after reconnect\n").await.unwrap();
        peer.flush().await.unwrap();
        // Hold it open until the test ends.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });

    let mut src = Socket::new(&quick(port), &ctx()).unwrap();
    assert_eq!(next_batch(&mut src).await, ["hello world", "second"]);
    seen_tx.send(()).unwrap();
    // The text after the last newline is emitted when the peer closes.
    assert_eq!(next_batch(&mut src).await, ["third"]);
    assert_eq!(next_batch(&mut src).await, ["after reconnect"]);
    server.abort();
}

#[tokio::test]
async fn max_retries_zero_ends_the_stream_when_the_peer_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut peer, _) = listener.accept().await.unwrap();
        peer.write_all(b"a;b;c").await.unwrap();
    });
    let mut cfg = quick(port);
    cfg.max_retries = 0;
    cfg.delimiter = ";".into();
    let mut src = Socket::new(&cfg, &ctx()).unwrap();
    let mut got = Vec::new();
    for _ in 0..200 {
        match src.next().await.unwrap() {
            SourceEvent::Batch(b) => got.extend(lines(&b)),
            SourceEvent::Idle => {}
            SourceEvent::End => break,
        }
    }
    assert_eq!(got, ["a", "b", "c"]);
    assert!(matches!(src.next().await.unwrap(), SourceEvent::End));
}

#[tokio::test]
async fn nothing_listening_is_a_clear_error() {
    // A port that was free a moment ago: bind, note it, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = quick(port);
    cfg.connect_retries = 2;
    let mut src = Socket::new(&cfg, &ctx()).unwrap();
    let err = loop {
        match src.next().await {
            Err(e) => break e.to_string(),
            Ok(SourceEvent::Idle) => {}
            Ok(other) => panic!("expected an error, got {other:?}"),
        }
    };
    assert!(
        err.starts_with(&format!(
            "cannot connect to 127.0.0.1:{port} after 3 attempts: "
        )),
        "{err}"
    );
    assert!(err.contains("refused"), "{err}");
    assert!(
        err.ends_with(&format!(
            "Is anything listening on port {port}? For a test feed, run: nc -lk {port}"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_silent_peer_gives_idle() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (_peer, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut src = Socket::new(&quick(port), &ctx()).unwrap();
    for _ in 0..3 {
        assert!(matches!(src.next().await.unwrap(), SourceEvent::Idle));
    }
    server.abort();
}

#[tokio::test]
async fn running_out_of_reconnects_fails_naming_the_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut peer, _) = listener.accept().await.unwrap();
        peer.write_all(b"only line\n").await.unwrap();
        // Nothing listens any more before the source sees the close.
        drop(listener);
    });
    let mut cfg = quick(port);
    cfg.max_retries = 2;
    let mut src = Socket::new(&cfg, &ctx()).unwrap();
    let mut got = Vec::new();
    let err = loop {
        match src.next().await {
            Ok(SourceEvent::Batch(b)) => got.extend(lines(&b)),
            Ok(SourceEvent::Idle) => {}
            Ok(SourceEvent::End) => panic!("expected an error, the stream ended"),
            Err(e) => break e.to_string(),
        }
    };
    assert_eq!(got, ["only line"]);
    assert!(
        err.starts_with(&format!(
            "lost the connection to 127.0.0.1:{port} and could not reconnect after 2 attempts (max-retries): "
        )),
        "{err}"
    );
}
