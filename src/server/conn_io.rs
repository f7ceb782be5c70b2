//! The byte stream under one HTTP connection: a TCP (or TLS, see `tls.rs`) stream that records when request bytes
//! arrive, gives the HTTP stack's own error answers a JSON body, and is handed back for a
//! lingering close instead of being shut abruptly.
//!
//! - **Activity.** [`Activity`] knows whether a request is in flight (the service marks it),
//!   when the connection last went idle, and when the first byte of the next request head
//!   arrived. The connection task (`connections.rs`) closes a connection whose head takes
//!   longer than the header-read timeout, or which sits idle past the idle timeout.
//! - **Protocol errors.** When hyper cannot parse a request (bad request line, bad header,
//!   raw non-ASCII bytes in the target, a head past the size limit) it writes a bodiless
//!   `400`, `414` or `431` itself and closes the connection; the service never sees the
//!   request. Every response the routes write carries a `content-type`, so a 4xx or 5xx head
//!   with none and `content-length: 0` can only be one of those; [`ConnIo`] rewrites it, on
//!   its way out, into the same status with a JSON body (`{"error": ..., "detail": ...}`) and
//!   `connection: close`.
//! - **Lingering close.** Closing a socket that still has unread request bytes makes the
//!   kernel send a reset, and the client may lose the answer it was sent (a 431 for an 8 MiB
//!   URL, a 413 for an oversize body). On shutdown the stream shuts its write side and is
//!   handed to the connection task, which reads and discards what the client still sends for
//!   a short, bounded time before closing.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::tls::Stream;

/// What a connection is doing, shared by its stream, its service and its task.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` when the connection last had no request in flight.
    idle_since: AtomicU64,
    /// Milliseconds since `epoch`, plus one, when the first byte of the next request head
    /// arrived; 0 when none has.
    head_started: AtomicU64,
    /// The HTTP stack has written bytes it has not yet flushed (an answer on its way out).
    unflushed: AtomicBool,
}

/// What a connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// A request is being handled.
    Busy,
    /// Part of a request head has arrived, at this instant.
    Head(Instant),
    /// Nothing has arrived since this instant.
    Idle(Instant),
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            unflushed: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// The service got a request.
    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_started.store(0, Ordering::SeqCst);
    }

    /// The service answered a request.
    pub(crate) fn request_finished(&self) {
        self.idle_since.store(self.now_ms(), Ordering::SeqCst);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0
            && self.head_started.load(Ordering::SeqCst) == 0
        {
            self.head_started
                .store(self.now_ms().saturating_add(1), Ordering::SeqCst);
        }
    }

    /// Requests being handled now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// True when no request is being handled and no answer is still being written: closing
    /// the connection now loses nothing but a half-sent request.
    pub(crate) fn quiet(&self) -> bool {
        self.in_flight() == 0 && !self.unflushed.load(Ordering::SeqCst)
    }

    /// What the connection waits for, and since when.
    pub(crate) fn wait(&self) -> Wait {
        if self.in_flight() > 0 {
            return Wait::Busy;
        }
        match self.head_started.load(Ordering::SeqCst) {
            0 => Wait::Idle(self.at(self.idle_since.load(Ordering::SeqCst))),
            ms => Wait::Head(self.at(ms - 1)),
        }
    }
}

/// Where a stream goes when the HTTP stack shuts it: to the connection task, for a lingering
/// close.
pub(crate) type Handoff = Arc<Mutex<Option<Stream>>>;

/// A connection's stream, as the HTTP stack sees it.
#[derive(Debug)]
pub(crate) struct ConnIo {
    stream: Option<Stream>,
    activity: Arc<Activity>,
    handoff: Handoff,
    /// A rewritten answer not yet fully written.
    pending: Vec<u8>,
    pending_at: usize,
    max_header_bytes: usize,
}

impl ConnIo {
    pub(crate) fn new(
        stream: Stream,
        activity: Arc<Activity>,
        handoff: Handoff,
        max_header_bytes: usize,
    ) -> ConnIo {
        ConnIo {
            stream: Some(stream),
            activity,
            handoff,
            pending: Vec::new(),
            pending_at: 0,
            max_header_bytes,
        }
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending_at < self.pending.len() {
            let Some(stream) = self.stream.as_mut() else {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            };
            let n = ready!(Pin::new(stream).poll_write(cx, &self.pending[self.pending_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending_at += n;
        }
        self.pending.clear();
        self.pending_at = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let before = buf.filled().len();
        ready!(Pin::new(stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.activity.unflushed.store(true, Ordering::SeqCst);
        ready!(this.poll_pending(cx))?;
        if let Some(answer) = json_error_answer(buf, this.max_header_bytes) {
            this.pending = answer;
            // Written by the next write, flush or shutdown if the socket is full now.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        Pin::new(stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A response head that may be one of the stack's own error answers goes through the
        // checked path, alone.
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && is_error_head_start(first)
        {
            return self.poll_write(cx, first);
        }
        let this = self.get_mut();
        this.activity.unflushed.store(true, Ordering::SeqCst);
        ready!(this.poll_pending(cx))?;
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        Pin::new(stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(stream) = this.stream.as_mut() {
            ready!(Pin::new(stream).poll_flush(cx))?;
        }
        this.activity.unflushed.store(false, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        ready!(Pin::new(&mut *stream).poll_shutdown(cx))?;
        // Write side closed: hand the stream over for a lingering close.
        *this.handoff.lock() = this.stream.take();
        Poll::Ready(Ok(()))
    }
}

fn is_error_head_start(buf: &[u8]) -> bool {
    buf.len() > 12
        && (buf.starts_with(b"HTTP/1.1 ") || buf.starts_with(b"HTTP/1.0 "))
        && matches!(buf[9], b'4' | b'5')
}

/// If `buf` is exactly a bodiless error head written by the HTTP stack itself (a 4xx or 5xx
/// without `content-type` and with `content-length: 0`), the same answer with a JSON body.
pub(crate) fn json_error_answer(buf: &[u8], max_header_bytes: usize) -> Option<Vec<u8>> {
    if !is_error_head_start(buf) || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = std::str::from_utf8(&buf[..buf.len() - 4]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.get(9..12)?.parse().ok()?;
    let mut kept = Vec::new();
    let mut empty_body = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "content-type" | "transfer-encoding" => return None,
            "content-length" => empty_body = value.trim() == "0",
            "connection" => {}
            _ => kept.push(line),
        }
    }
    if !empty_body {
        return None;
    }
    let message = match status {
        400 => "malformed HTTP request: the request line or a header could not be parsed \
                (the target must be ASCII, with other bytes percent-encoded)"
            .to_string(),
        414 => "the request target is too long".to_string(),
        431 => format!(
            "the request line and headers are too large (limit {max_header_bytes} bytes, \
             100 header fields)"
        ),
        _ => "the request could not be handled".to_string(),
    };
    let body = serde_json::json!({"error": message, "detail": message}).to_string();
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n",
        body.len()
    );
    for line in kept {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

/// Most bytes a lingering close reads and discards.
const LINGER_MAX_BYTES: usize = 64 << 20;

/// Reads and discards what the client still sends on `stream` (its write side already shut)
/// until it closes, `until` passes or [`LINGER_MAX_BYTES`] were read; then closes it.
pub(crate) async fn linger(mut stream: Stream, until: tokio::time::Instant) {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0usize;
    while total < LINGER_MAX_BYTES {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stacks_own_bodiless_error_heads_are_rewritten() {
        let canned = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\
                       date: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(json_error_answer(canned, 1024).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains("connection: close"));
        assert!(head.contains("date: Thu"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("1024 bytes"));
        assert_eq!(v["error"], v["detail"]);
        // a route's answer (it has a content type), a success, or a head with a body: kept
        for kept in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
        ] {
            assert_eq!(json_error_answer(kept, 1024), None);
        }
    }

    #[test]
    fn activity_tells_idle_from_a_started_head_and_a_busy_connection() {
        let a = Activity::new();
        assert!(matches!(a.wait(), Wait::Idle(_)));
        a.bytes_arrived();
        assert!(matches!(a.wait(), Wait::Head(_)));
        a.request_started();
        assert_eq!(a.wait(), Wait::Busy);
        a.bytes_arrived(); // body bytes: still busy
        a.request_finished();
        assert!(matches!(a.wait(), Wait::Idle(_)));
    }
}
