//! The lines floe writes for people on stderr besides its log (Flink's CLI lines such as
//! `Starting job … from savepoint …`, `floe serve`'s closing summary): plain text, or with
//! `--log-format json` a JSON log line like every other line on stderr, so that a log
//! collector reading JSON never meets a line it cannot parse.

use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// `--log-format json`: every line goes through the JSON log.
pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// An informational line. Whatever `msg` holds (a path from a request, a file name), it
/// stays one line.
pub fn line(msg: &str) {
    if is_json() {
        tracing::info!("{msg}");
    } else {
        crate::errln!("{}", crate::text::escape(msg));
    }
}

/// An error line (`error: …`), one line like [`line`].
pub fn error(msg: &str) {
    if is_json() {
        tracing::error!("{msg}");
    } else {
        crate::errln!("error: {}", crate::text::escape(msg));
    }
}
