//! A connection's timing: what it is waiting for (a first request, the rest of a request head,
//! the next request of a kept-alive connection) and when it has waited too long.
//!
//! hyper's own HTTP/1 header timer also runs while a kept-alive connection waits for its next
//! request, so one setting would bound both the slowloris window and the idle time a proxy's
//! pool counts on. The bridge keeps them apart: the socket is wrapped to note when a request head
//! starts arriving (an HTTP/1 request line, an HTTP/2 header block), and the connection's loop
//! judges the three waits itself.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use frames::Frames;

/// `head_from_ms` when no request head is arriving.
const NO_HEAD: u64 = u64::MAX;

/// `closing_from_ms` until the connection is told to close.
const NOT_CLOSING: u64 = u64::MAX;

/// How long each wait may last.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// To send a whole request head, and a new connection's first one from its opening.
    pub header_read: Duration,
    /// Between an answer and the first byte of the next request on the same connection.
    pub idle: Duration,
}

/// What a connection's loop does at a check.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within its limits; check again after this long.
    Wait(Duration),
    /// Waited too long for a request that has not started: close it politely (HTTP/2 GOAWAY).
    Idle,
    /// A request head started and did not finish in time: nothing to answer, drop it.
    SlowHead,
}

/// A connection's requests: how many are open, since when it has had none, and whether (since
/// when) the next head is arriving.
#[derive(Debug)]
pub struct Activity {
    open: AtomicUsize,
    /// Its last request was answered as an authenticated sender's: only such a connection may
    /// wait the idle timeout (a client refused without credentials gets the header read timeout,
    /// as a new one).
    trusted: AtomicBool,
    /// When the connection was told to close (a shutdown, or its own idle wait), in ms since
    /// `since`; `NOT_CLOSING` before. The idle timeout it earned no longer holds then, or a client
    /// that never closes (an HTTP/2 one that leaves the GOAWAY's ping unanswered) would hold a
    /// shutdown's drain for its whole grace.
    closing_from_ms: AtomicU64,
    /// When the last request ended (or the connection opened), in ms since `since`.
    quiet_from_ms: AtomicU64,
    /// When the first byte read with no request open arrived, in ms since `since`.
    head_from_ms: AtomicU64,
    /// The client began with HTTP/2's preface: frames between requests start no head.
    http2: AtomicBool,
    since: Instant,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            open: AtomicUsize::new(0),
            trusted: AtomicBool::new(false),
            closing_from_ms: AtomicU64::new(NOT_CLOSING),
            quiet_from_ms: AtomicU64::new(0),
            head_from_ms: AtomicU64::new(NO_HEAD),
            http2: AtomicBool::new(false),
            since: Instant::now(),
        }
    }
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.since.elapsed().as_millis() as u64
    }

    /// Bytes arrived while no request was open: the next head has begun.
    fn bytes_read(&self) {
        if self.open.load(Ordering::Relaxed) == 0
            && self.head_from_ms.load(Ordering::Relaxed) == NO_HEAD
        {
            self.head_from_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// The client began with HTTP/2's preface, which is no request head.
    fn speaks_http2(&self) {
        self.http2.store(true, Ordering::SeqCst);
        self.head_from_ms.store(NO_HEAD, Ordering::SeqCst);
    }

    /// An HTTP/2 request head (a header block, or a frame whose type is not known yet) began
    /// arriving, or none is arriving any more.
    fn http2_head(&self, arriving: bool) {
        let from = if arriving { self.now_ms() } else { NO_HEAD };
        self.head_from_ms.store(from, Ordering::SeqCst);
    }

    /// The connection was told to close: with no request open it may stay a check's time
    /// (`header_read.min(idle)`) longer, however long it may wait otherwise. Counted from now too:
    /// an HTTP/2 client may have sent a request before the GOAWAY reached it (hyper's first one
    /// still takes every stream), and it needs a round trip to answer the GOAWAY's ping.
    pub fn told_to_close(&self) {
        let now = self.now_ms();
        let _ = self.closing_from_ms.compare_exchange(
            NOT_CLOSING,
            now,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Whether the connection has outstayed a limit, and if not, when to look again.
    pub fn verdict(&self, limits: Limits) -> Verdict {
        let recheck = limits.header_read.min(limits.idle);
        if self.open.load(Ordering::SeqCst) > 0 {
            return Verdict::Wait(recheck);
        }
        let now = self.now_ms();
        let head_from = self.head_from_ms.load(Ordering::SeqCst);
        let (from, limit, over) = if head_from != NO_HEAD {
            (head_from, limits.header_read, Verdict::SlowHead)
        } else {
            // A first request is owed at once: a client that opens connections and sends
            // nothing gets no longer than one that sends a head slowly, and one refused no
            // longer than one that never asked.
            let quiet_from = self.quiet_from_ms.load(Ordering::SeqCst);
            let closing_from = self.closing_from_ms.load(Ordering::SeqCst);
            let (from, limit) = if closing_from != NOT_CLOSING {
                (quiet_from.max(closing_from), recheck)
            } else if self.trusted.load(Ordering::SeqCst) {
                (quiet_from, limits.idle)
            } else {
                (quiet_from, limits.header_read)
            };
            (from, limit, Verdict::Idle)
        };
        let waited = Duration::from_millis(now.saturating_sub(from));
        match limit.checked_sub(waited) {
            // A head that begins meanwhile wakes no one: looking again within the header read
            // timeout holds it to that timeout however long the idle one is.
            Some(left) if !left.is_zero() => Verdict::Wait(left.min(recheck)),
            _ => over,
        }
    }
}

/// One open request of a connection, counted in its [`Activity`] until dropped (answered, or
/// cancelled by the client).
#[derive(Debug)]
pub struct OpenRequest(Arc<Activity>);

impl OpenRequest {
    pub fn started(activity: Arc<Activity>) -> OpenRequest {
        activity.open.fetch_add(1, Ordering::SeqCst);
        // An HTTP/2 head's clock is the frames' to keep: hyper may read the next frame's first
        // bytes with the end of this request's head, before it starts this request.
        if !activity.http2.load(Ordering::SeqCst) {
            activity.head_from_ms.store(NO_HEAD, Ordering::SeqCst);
        }
        OpenRequest(activity)
    }

    /// The request ends with its answer; `trusted` when that went to an authenticated sender.
    pub fn answered(self, trusted: bool) {
        self.0.trusted.store(trusted, Ordering::SeqCst);
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0
            .quiet_from_ms
            .store(self.0.now_ms(), Ordering::SeqCst);
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// HTTP/2's connection preface, whole: hyper-util tells the protocols apart by all of it, and an
/// HTTP/1 method may begin with `PRI` (`PRIX /webhook HTTP/1.1` is served as HTTP/1, and was
/// followed as HTTP/2 frames here, so a slow head of it was not dropped at the header timeout).
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A client socket that tells its [`Activity`] when bytes arrive between requests.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    /// The connection's first bytes, until there are enough to tell HTTP/2's preface.
    start: [u8; HTTP2_PREFACE.len()],
    started: usize,
    /// Once the client has begun with HTTP/2's preface: its frames, followed to tell when a
    /// request head is arriving.
    http2: Option<Frames>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Watched<S> {
        Watched {
            inner,
            activity,
            start: [0; HTTP2_PREFACE.len()],
            started: 0,
            http2: None,
        }
    }

    fn arrived(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(frames) = &mut self.http2 {
            let was = frames.head_arriving();
            frames.read(bytes);
            if frames.head_arriving() != was {
                self.activity.http2_head(!was);
            }
            return;
        }
        if self.started < HTTP2_PREFACE.len() {
            let take = (HTTP2_PREFACE.len() - self.started).min(bytes.len());
            self.start[self.started..self.started + take].copy_from_slice(&bytes[..take]);
            self.started += take;
            if self.start == *HTTP2_PREFACE {
                self.activity.speaks_http2();
                self.http2 = Some(Frames::default());
                return self.arrived(&bytes[take..]);
            }
        }
        // Empty lines before a request line are ignored (RFC 9112, 2.2), as hyper does: a client
        // that ends its body with an extra CRLF has not begun its next head.
        if bytes.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            return;
        }
        self.activity.bytes_read();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.arrived(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    // hyper writes an answer's head and body in one call only when the socket says it can.
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

mod frames;
#[cfg(test)]
mod tests;
