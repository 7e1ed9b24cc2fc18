//! Logging setup: tracing-subscriber on stderr, level from `RUST_LOG` (default `info`), text or
//! JSON lines.

use super::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
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
