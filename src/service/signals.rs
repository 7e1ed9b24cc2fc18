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
