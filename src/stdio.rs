//! floe's own writes to stdout and stderr, made so that a closed pipe never panics (`println!`
//! does: `floe run p.yaml 2>&1 | head -1` used to exit 101).
//!
//! When a write finds its stream closed (`EPIPE`: the reader went away, as `head` does), the
//! stream is marked closed, later writes to it are dropped, and [`wait_closed`] wakes: `floe
//! run` and `floe serve` then stop their jobs as Ctrl-C would, the way a Unix tool ends when
//! its reader is gone. Other write errors (a full disk behind a redirect) are dropped too:
//! status lines are not worth failing a job for.
//!
//! Use [`outln!`](crate::outln) and [`errln!`](crate::errln) instead of `println!` and
//! `eprintln!` (clippy's `print_stdout` and `print_stderr` lints refuse those in the crate);
//! the log writer (`cli::logging::SafeStderr`) writes through [`write_all`]. The `print` sink reports its own closed stream with
//! [`mark_closed`].

use std::io::{self, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::sync::Notify;

/// One of the two streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn bit(self) -> u8 {
        match self {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        }
    }
}

static CLOSED: AtomicU8 = AtomicU8::new(0);
static CLOSED_NOTIFY: Notify = Notify::const_new();

/// Records that `stream`'s reader went away and wakes [`wait_closed`].
pub fn mark_closed(stream: Stream) {
    let before = CLOSED.fetch_or(stream.bit(), Ordering::SeqCst);
    if before & stream.bit() == 0 {
        CLOSED_NOTIFY.notify_waiters();
    }
}

/// Whether `stream` was found closed.
pub fn is_closed(stream: Stream) -> bool {
    CLOSED.load(Ordering::SeqCst) & stream.bit() != 0
}

/// Returns once stdout or stderr has been found closed (at once if it was already).
pub async fn wait_closed() {
    loop {
        let notified = CLOSED_NOTIFY.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if CLOSED.load(Ordering::SeqCst) != 0 {
            return;
        }
        notified.await;
    }
}

/// Writes `bytes` to `stream` unless it is closed; a broken pipe marks it closed. Other
/// errors are dropped (see the module's doc).
pub fn write_all(stream: Stream, bytes: &[u8]) {
    if is_closed(stream) {
        return;
    }
    let result = match stream {
        Stream::Stdout => {
            let mut out = io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush())
        }
        Stream::Stderr => io::stderr().lock().write_all(bytes),
    };
    if let Err(e) = result {
        if e.kind() == io::ErrorKind::BrokenPipe {
            mark_closed(stream);
        }
    }
}

/// `text` as it is to stdout (`print!`).
pub fn out(text: &str) {
    write_all(Stream::Stdout, text.as_bytes());
}

/// One line to `stream`, formatted.
pub fn write_line(stream: Stream, args: std::fmt::Arguments<'_>) {
    let mut line = args.to_string();
    line.push('\n');
    write_all(stream, line.as_bytes());
}

/// `println!` that survives a closed stdout.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::stdio::write_line($crate::stdio::Stream::Stdout, format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::stdio::write_line($crate::stdio::Stream::Stdout, format_args!($($arg)*))
    };
}

/// `eprintln!` that survives a closed stderr.
#[macro_export]
macro_rules! errln {
    () => {
        $crate::stdio::write_line($crate::stdio::Stream::Stderr, format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::stdio::write_line($crate::stdio::Stream::Stderr, format_args!($($arg)*))
    };
}
