//! The bodies the proxy passes on: [`RequestBody`], the client's body streamed to the replica
//! with the size limit enforced while it streams, and [`ResponseBody`], a fixed page or the
//! replica's answer streamed back, which returns its tunnel connection to the pool when the
//! answer ends and releases the replica's load count when it is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::http::ConnState;
use crate::pool::{LoadGuard, Sender, Slot};

/// The error a [`RequestBody`] ends with when the client sends more than the limit.
#[derive(Debug, thiserror::Error)]
#[error("request body over the gateway's limit")]
pub struct BodyTooLarge;

/// True when `err` (or one of its causes) is [`BodyTooLarge`].
pub(crate) fn is_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    for _ in 0..8 {
        match cause {
            Some(e) if e.is::<BodyTooLarge>() => return true,
            Some(e) => cause = e.source(),
            None => return false,
        }
    }
    false
}

/// A client's request body on its way to a replica.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    remaining: u64,
}

impl RequestBody {
    /// `body`, failing with [`BodyTooLarge`] past `max` bytes.
    pub(crate) fn limited(body: Incoming, max: u64) -> Self {
        let inner = (!body.is_end_stream()).then_some(body);
        Self {
            inner,
            remaining: max,
        }
    }

    /// No body.
    pub(crate) fn empty() -> Self {
        Self {
            inner: None,
            remaining: 0,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.inner = None;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.inner = None;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            None => {
                this.inner = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// An answer to a public client.
#[derive(Debug)]
pub struct ResponseBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Page(Option<Bytes>),
    Upstream(Upstream),
}

/// A replica's answer in flight, and what to give back when it ends.
#[derive(Debug)]
struct Upstream {
    body: Incoming,
    reuse: Option<(Sender, Arc<Slot>)>,
    load: Option<LoadGuard>,
    _active: Active,
}

/// Counts one answer in flight on a public connection (it is not idle meanwhile).
#[derive(Debug)]
pub(crate) struct Active(Arc<ConnState>);

impl Active {
    pub(crate) fn new(conn: &Arc<ConnState>) -> Self {
        conn.begin();
        Self(Arc::clone(conn))
    }

    /// The connection.
    pub(crate) fn conn(&self) -> &ConnState {
        &self.0
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.end();
    }
}

impl ResponseBody {
    /// A fixed page.
    pub fn page(html: &'static str) -> Self {
        Self {
            kind: Kind::Page(Some(Bytes::from_static(html.as_bytes()))),
        }
    }

    /// No body.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Page(None),
        }
    }

    /// A replica's answer; `reuse` goes back to its slot's idle list once the answer ended.
    pub(crate) fn upstream(
        body: Incoming,
        reuse: Option<(Sender, Arc<Slot>)>,
        load: LoadGuard,
        active: Active,
    ) -> Self {
        let mut up = Upstream {
            body,
            reuse,
            load: Some(load),
            _active: active,
        };
        if up.body.is_end_stream() {
            up.finish();
        }
        Self {
            kind: Kind::Upstream(up),
        }
    }
}

impl Upstream {
    fn finish(&mut self) {
        if let Some((sender, slot)) = self.reuse.take() {
            slot.put_idle(sender);
        }
        self.load = None;
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Page(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(up) => {
                let frame = ready!(Pin::new(&mut up.body).poll_frame(cx));
                match &frame {
                    None => up.finish(),
                    Some(Err(_)) => {
                        up.reuse = None;
                        up.load = None;
                    }
                    Some(Ok(_)) if up.body.is_end_stream() => up.finish(),
                    Some(Ok(_)) => {}
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Page(bytes) => bytes.is_none(),
            Kind::Upstream(up) => up.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Page(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(up) => up.body.size_hint(),
        }
    }
}
