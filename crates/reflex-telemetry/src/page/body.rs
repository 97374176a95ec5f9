//! [`PageBody`]: the body of every response of the live page.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::events::EventStream;

/// The body of a [`LivePage`](super::LivePage) response: the whole of it
/// at once (the page, the snapshot, an error), or an event stream that
/// lasts until the client goes away. An `http_body::Body` of `Bytes` that
/// never fails, so axum and hyper serve it as it is.
///
/// # Examples
///
/// ```
/// use http_body_util::BodyExt;
/// use reflex_telemetry::page::PageBody;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let body = PageBody::from("hello");
/// let bytes = body.collect().await.unwrap().to_bytes();
/// assert_eq!(&bytes[..], b"hello");
/// # }
/// ```
pub struct PageBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Events(Box<EventStream>),
}

// === impl PageBody ===

impl PageBody {
    /// A body with nothing in it.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Full(None),
        }
    }

    pub(crate) fn events(stream: EventStream) -> Self {
        Self {
            kind: Kind::Events(Box::new(stream)),
        }
    }
}

impl From<Bytes> for PageBody {
    fn from(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }
}

impl From<&'static str> for PageBody {
    fn from(text: &'static str) -> Self {
        Bytes::from_static(text.as_bytes()).into()
    }
}

impl Default for PageBody {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for PageBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(bytes) => f
                .debug_struct("PageBody")
                .field("len", &bytes.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Events(stream) => f.debug_tuple("PageBody").field(stream).finish(),
        }
    }
}

impl Body for PageBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Events(stream) => stream
                .poll_chunk(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Events(stream) => stream.is_ended(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Events(_) => SizeHint::default(),
        }
    }
}
