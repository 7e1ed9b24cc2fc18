//! Logging setup: tracing-subscriber on stderr, level from `RUST_LOG` (default `info`), text or
//! JSON lines.
//!
//! Log lines carry untrusted text (job names, file names, paths and errors from requests):
//! every event goes through [`SafeStderr`], which escapes line breaks and control characters
//! inside it (so no input can forge a line of its own) and replaces every known secret value
//! ([`crate::secrets::redact`]), then goes out through [`crate::stdio`].

use super::LogFormat;
use std::io::{IsTerminal, Write};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Through `stdio`: a closed stderr is noticed (the job stops), never a panic.
        .with_writer(SafeStderr { ansi })
        .log_internal_errors(false)
        .with_target(false)
        .with_ansi(ansi);
    // A second init (tests calling main twice) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if format == LogFormat::Json {
        // Every line on stderr is JSON: floe's own lines for people, and a panic's message.
        crate::service::console::set_json(true);
        std::panic::set_hook(Box::new(|info| {
            tracing::error!(panic = %info, "bug: floe panicked: {info}; please report this");
        }));
    }
}

/// stderr for log events, escaped and redacted. The formatter writes each event with one
/// `write_all` of the whole formatted line, so each `write` here sees a complete event.
#[derive(Debug, Clone, Copy)]
pub struct SafeStderr {
    /// Whether the formatter writes colour sequences (kept; other escapes are not).
    pub ansi: bool,
}

impl<'a> MakeWriter<'a> for SafeStderr {
    type Writer = SafeStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl Write for SafeStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let redacted = crate::secrets::redact(&text);
        let safe = crate::text::escape_log_event(&redacted, self.ansi);
        // A closed stderr is marked (the job stops as on Ctrl-C), never an error or a panic.
        crate::stdio::write_all(crate::stdio::Stream::Stderr, safe.as_bytes());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
