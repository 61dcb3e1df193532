//! Log output: tracing to stderr, text by default, JSON on request; `RUST_LOG` filters (default `info`).
//!
//! Lines are handed to a logging thread that writes them in batches: an access-log line per request must not
//! cost the request a write system call. The thread flushes whenever it has no more lines waiting, so a quiet
//! server's log is as prompt as an unbuffered one; under load, many lines go out in one write.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// How much the logging thread gathers before it must write.
const LOG_BUFFER: usize = 64 << 10;

/// How log lines are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. Keep the guard until exit: dropping it flushes what is still buffered.
pub(crate) fn init(format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Not lossy: under overload, requests wait for the log rather than the log losing lines.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("palisade-log")
        .finish(std::io::BufWriter::with_capacity(LOG_BUFFER, std::io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
    }
    guard
}
