//! systemd's notify protocol for `floe serve` (`Type=notify`): `READY=1` once the jobs run,
//! `RELOADING=1` (with `MONOTONIC_USEC=`) then `READY=1` around a reload, `STOPPING=1` at
//! shutdown, `STATUS=` lines saying what floe does, and `WATCHDOG=1` every half `WatchdogSec`
//! when systemd asks for it (`WATCHDOG_USEC`).
//!
//! Without `NOTIFY_SOCKET` every call is a no-op, so `floe serve` outside systemd behaves the
//! same. A message that cannot be sent is ignored, the first such failure logged as a warning
//! and later ones at debug level (the watchdog would repeat it every few seconds): the
//! service must not stop because its supervisor's socket went away.

use sd_notify::NotifyState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Sends notify messages; cheap to copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier;

impl Notifier {
    /// The jobs run: startup (or a reload) is complete.
    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A reload starts; `ready` ends it.
    pub fn reloading(&self) {
        let mut states = vec![NotifyState::Reloading];
        // systemd 253+ wants the time of the reload request with RELOADING=1.
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        states.push(NotifyState::Status("reloading pipelines"));
        send(&states);
    }

    /// Shutdown starts.
    pub fn stopping(&self, status: &str) {
        send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    /// Spawns the watchdog keep-alive when systemd set `WATCHDOG_USEC` for this process: a
    /// `WATCHDOG=1` every half of the interval. The task lives as long as the runtime.
    pub fn spawn_watchdog(&self) -> Option<tokio::task::JoinHandle<()>> {
        let interval = sd_notify::watchdog_enabled()?;
        let period = (interval / 2).max(Duration::from_millis(10));
        tracing::info!(
            period_ms = period.as_millis() as u64,
            "systemd watchdog: sending WATCHDOG=1 every {} ms",
            period.as_millis()
        );
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                send(&[NotifyState::Watchdog]);
            }
        }))
    }
}

fn send(states: &[NotifyState<'_>]) {
    // An empty NOTIFY_SOCKET is no socket (as in libsystemd).
    if std::env::var_os("NOTIFY_SOCKET").is_none_or(|v| v.is_empty()) {
        return;
    }
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = sd_notify::notify(states) {
        if WARNED.swap(true, Ordering::Relaxed) {
            tracing::debug!(error = %e, "cannot send a notification to systemd (NOTIFY_SOCKET): {e}");
        } else {
            tracing::warn!(error = %e, "cannot send a notification to systemd (NOTIFY_SOCKET): {e}");
        }
    }
}
