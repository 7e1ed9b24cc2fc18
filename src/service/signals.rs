//! The signals a floe process answers: SIGINT and SIGTERM stop, SIGHUP reloads
//! (`floe serve`). Only waiting here; what a signal does is the caller's.
//!
//! A handler exists from the moment its stream is created: `floe serve` creates them first
//! thing ([`Signals::install`]), so that a SIGTERM during start-up, or a SIGHUP right after
//! `READY=1`, is caught instead of killing the process without its savepoints.

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

/// Resolves once stdout or stderr is found closed, the first time only (`reported`).
async fn output_closed(reported: &mut bool) {
    if *reported {
        return std::future::pending().await;
    }
    crate::stdio::wait_closed().await;
    *reported = true;
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

/// What a signal asks of `floe serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// SIGINT or SIGTERM.
    Stop,
    /// SIGHUP.
    Reload,
}

/// SIGINT, SIGTERM and SIGHUP, caught from [`Signals::install`] on.
pub struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
    /// A closed stdout or stderr was reported once: it stays closed, so watching it again
    /// would answer at once, for ever (a busy loop on a worker).
    closed_reported: bool,
}

impl Signals {
    /// Installs the handlers now. Must be called inside a tokio runtime.
    pub fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let catch = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot catch {name}");
                    None
                }
            };
            Signals {
                term: catch(SignalKind::terminate(), "SIGTERM"),
                int: catch(SignalKind::interrupt(), "SIGINT"),
                hup: catch(SignalKind::hangup(), "SIGHUP"),
                closed_reported: false,
            }
        }
        #[cfg(not(unix))]
        Signals {
            closed_reported: false,
        }
    }

    /// The next signal.
    pub async fn next(&mut self) -> Asked {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = recv(&mut self.term) => Asked::Stop,
                _ = recv(&mut self.int) => Asked::Stop,
                _ = recv(&mut self.hup) => Asked::Reload,
                // A closed stdout or stderr: its reader went away (`floe serve | head`).
                _ = output_closed(&mut self.closed_reported) => Asked::Stop,
            }
        }
        #[cfg(not(unix))]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = output_closed(&mut self.closed_reported) => {}
            }
            Asked::Stop
        }
    }
}
