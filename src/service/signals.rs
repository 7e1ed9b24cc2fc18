//! The signals a floe process answers: SIGINT and SIGTERM stop, SIGHUP reloads
//! (`floe serve`). Only waiting here; what a signal does is the caller's.

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Why a stop was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// SIGINT (Ctrl-C) or SIGTERM.
    Signal,
    /// stdout or stderr was found closed: its reader went away (`floe run p.yaml | head`).
    OutputClosed,
}

/// Resolves on SIGINT or SIGTERM, or once stdout or stderr is found closed: both stop floe's
/// jobs cleanly, as a pipe-killed tool would end.
pub async fn wait_for_stop_or_closed_output() -> StopCause {
    tokio::select! {
        _ = wait_for_stop() => StopCause::Signal,
        _ = crate::stdio::wait_closed() => StopCause::OutputClosed,
    }
}

/// A stream of SIGHUPs; `None` where there are none (not unix) or they cannot be caught.
#[cfg(unix)]
pub fn hangups() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot catch SIGHUP; reload with `floe reload` instead");
            None
        }
    }
}
