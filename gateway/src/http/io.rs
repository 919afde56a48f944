//! The public connection's byte stream, watched for slow request heads. hyper's own head timer
//! also runs while an HTTP/1.1 connection waits for its next request, which would cut idle
//! keep-alive connections at the head timeout; this one starts at the first byte of a head
//! and stops when the request begins, so idle connections are left to the idle timeout.
//! HTTP/2 connections (recognised by their preface) are not watched: their control frames are
//! no request heads, and hyper bounds their header size.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::http::ConnState;

/// The first bytes of the HTTP/2 connection preface (no HTTP/1.1 method starts so).
const H2_PREFACE: &[u8; 4] = b"PRI ";

/// A public connection's stream with the head timer.
#[derive(Debug)]
pub(crate) struct Watched<I> {
    io: I,
    conn: Arc<ConnState>,
    timeout: Duration,
    /// Allocated once per connection, reset for each head.
    deadline: Pin<Box<Sleep>>,
    armed: bool,
    requests_seen: u64,
    /// The connection's first bytes, until there are four.
    first: [u8; 4],
    first_len: usize,
    http2: bool,
}

impl<I> Watched<I> {
    pub(crate) fn new(io: I, conn: Arc<ConnState>, timeout: Duration) -> Self {
        Self {
            io,
            conn,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
            requests_seen: 0,
            first: [0; 4],
            first_len: 0,
            http2: false,
        }
    }

    /// Notes the connection's first bytes (to tell HTTP/2 apart) and arms the timer at the
    /// first byte of a head.
    fn saw(&mut self, bytes: &[u8]) {
        if self.first_len < self.first.len() {
            for (slot, b) in self.first.iter_mut().skip(self.first_len).zip(bytes) {
                *slot = *b;
                self.first_len += 1;
            }
            if self.first_len == self.first.len() {
                self.http2 = &self.first == H2_PREFACE;
            }
        }
        if !self.http2 && !self.armed && self.conn.in_flight.load(Ordering::Relaxed) == 0 {
            self.armed = true;
            self.deadline.as_mut().reset(Instant::now() + self.timeout);
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let requests = this.conn.requests.load(Ordering::Relaxed);
        if requests != this.requests_seen {
            // A head was complete: its request began.
            this.requests_seen = requests;
            this.armed = false;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Some(new) = buf.filled().get(before..).filter(|b| !b.is_empty()) {
                    this.saw(new);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.armed
                    && !this.http2
                    && this.conn.in_flight.load(Ordering::Relaxed) == 0
                    && this.deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not complete within the header timeout",
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
