//! [`ResponseBody`]: the body of every response of an
//! [`HttpDedup`](super::HttpDedup) service, and [`CallBody`], the body of
//! an answer as a shared call holds it.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use reflex_core::BoxError;
use reflex_core::http::BufferedBody;

/// A response body of any type, boxed: the rest of a body too large to
/// share, as a shared call holds it.
pub type BoxBody = Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send + 'static>>;

/// The body of an answer as a shared call holds it, and as the classifier
/// of an [`HttpDedupLayer`](super::HttpDedupLayer) sees it: read whole (up
/// to the layer's body limit), or the part read and the rest, boxed.
pub type CallBody = BufferedBody<BoxBody>;

pin_project! {
    /// The body of a response of an [`HttpDedup`](super::HttpDedup)
    /// service: the inner service's body, streamed through untouched (a
    /// request without a key, or a follower's own call), or the body of
    /// an answer that went through a shared call or the cache.
    ///
    /// Its data is [`Bytes`] and its error a [`BoxError`]: an `axum` or
    /// `hyper` response body as it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body::Body;
    /// use reflex_core::BoxError;
    /// use reflex_dedup::http::ResponseBody;
    ///
    /// fn is_a_response_body<B: Body<Data = Bytes, Error = BoxError> + Send + 'static>() {}
    /// is_a_response_body::<ResponseBody<http_body_util::Full<Bytes>>>();
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        // Streamed through as it is: a `BufferedBody` with nothing read
        // ahead, which only makes its data `Bytes` and its error a
        // `BoxError`.
        Inner {
            #[pin]
            body: BufferedBody<B>,
        },
        Call {
            body: CallBody,
        },
    }
}

// === impl ResponseBody ===

impl<B> ResponseBody<B> {
    /// The inner service's body, streamed through.
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner {
                body: BufferedBody::streaming(VecDeque::new(), body),
            },
        }
    }

    /// The body of an answer that went through a shared call or the cache.
    pub(crate) fn call(body: CallBody) -> Self {
        Self {
            kind: Kind::Call { body },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Call { body } => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Call { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Call { body } => body.size_hint(),
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.debug_struct("ResponseBody").finish_non_exhaustive(),
            Kind::Call { body } => f.debug_tuple("ResponseBody").field(body).finish(),
        }
    }
}
