//! A bounded in-memory sink for guest stdout/stderr.
//!
//! Unlike wasmtime's `MemoryOutputPipe`, writing past the cap does not trap the guest: the excess is dropped
//! and [`CappedPipe::overflowed`] says so. The server decides what an overflow means (a CGI response too large
//! → 502; chatty stderr → truncated log line).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Debug, Default)]
struct Inner {
    buf: BytesMut,
    overflowed: bool,
}

/// Shared handle to a capped buffer; clones write to the same buffer.
#[derive(Debug, Clone)]
pub(crate) struct CappedPipe {
    cap: usize,
    inner: Arc<Mutex<Inner>>,
}

impl CappedPipe {
    pub(crate) fn new(cap: usize) -> CappedPipe {
        CappedPipe { cap, inner: Arc::default() }
    }

    fn push(&self, bytes: &[u8]) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let room = self.cap.saturating_sub(inner.buf.len());
        if bytes.len() > room {
            inner.overflowed = true;
        }
        let take = bytes.len().min(room);
        inner.buf.extend_from_slice(&bytes[..take]);
    }

    /// Everything written so far (up to the cap).
    pub(crate) fn take(&self) -> Bytes {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut inner.buf).freeze()
    }

    /// Whether the guest tried to write more than the cap.
    pub(crate) fn overflowed(&self) -> bool {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).overflowed
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Logs what a guest wrote to one of its output streams, one event per request, tagged by the caller's span.
pub(crate) fn log_output(stream: &'static str, pipe: &CappedPipe) {
    let bytes = pipe.take();
    if bytes.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = escape_controls(text.trim_end());
    if pipe.overflowed() {
        tracing::info!(stream, truncated = true, "guest output: {text}");
    } else {
        tracing::info!(stream, "guest output: {text}");
    }
}

/// `text` with line breaks and every other control character escaped (`\n`, `\u{1b}`), so that what a guest
/// writes stays on its own log line, tagged with its tenant, and cannot pass for the server's lines or move a
/// terminal's cursor.
fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain text, \"quoted\""), "plain text, \"quoted\"");
        assert_eq!(escape_controls("a\nb\r\x1b[2K\tc"), "a\\nb\\r\\u{1b}[2K\\tc");
    }

    #[test]
    fn caps_without_failing() {
        let mut p = CappedPipe::new(4);
        p.write(Bytes::from_static(b"abc")).unwrap();
        assert!(!p.overflowed());
        p.write(Bytes::from_static(b"def")).unwrap();
        assert!(p.overflowed());
        assert_eq!(&p.take()[..], b"abcd");
    }
}
