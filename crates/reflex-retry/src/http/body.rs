//! [`ReplayBody`]: a request body recorded as it is read, up to a limit, so
//! that a retry can send it again.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, SizeHint};
use pin_project_lite::pin_project;
use reflex_core::BoxError;
use reflex_core::http::BufferedBody;

use super::recording::{Polled, Reader};

pin_project! {
    /// A request body that can be sent again: recorded as the inner
    /// service reads it, up to a limit, so that a copy
    /// ([`try_clone`](Self::try_clone)) sends the same frames, data and
    /// trailers.
    ///
    /// Nothing is read before the inner service reads it: the first
    /// attempt streams the body as it comes, and the record keeps its
    /// chunks (shared, not copied). A copy sends what was recorded, then
    /// reads on where the body stopped, recording as it goes, so an attempt
    /// that failed before reading the whole body costs the next one
    /// nothing. Once more than the limit was read, the record is dropped:
    /// the copy reading then goes on to the end, unrecorded, and no other
    /// can be made or read (a copy made before reads [`NotReplayable`]).
    /// A body whose size hint says it is over the limit is not recorded at
    /// all; an empty body costs nothing.
    ///
    /// Its data is [`Bytes`] and its error a [`BoxError`], so the inner
    /// service can be anything that takes an `http` body: an axum `Route`,
    /// a hyper client.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use reflex_retry::http::ReplayBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let body = ReplayBody::new(Full::new(Bytes::from("v2")), 1024);
    /// let copy = body.try_clone().expect("within the limit");
    /// assert_eq!(body.collect().await?.to_bytes(), "v2");
    /// assert_eq!(copy.collect().await?.to_bytes(), "v2", "sent again, whole");
    ///
    /// let large = ReplayBody::new(Full::new(Bytes::from("too large")), 4);
    /// assert!(large.try_clone().is_none(), "sent once");
    /// # Ok(())
    /// # }
    /// ```
    pub struct ReplayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        // Nothing to send, as often as asked.
        Empty,
        // Sent once: neither recorded nor copied (a `BufferedBody` with
        // nothing read ahead, which only makes its data `Bytes` and its
        // error a `BoxError`).
        Once {
            #[pin]
            body: BufferedBody<B>,
        },
        // One copy of a recorded body.
        Recorded {
            reader: Reader<B>,
        },
    }
}

// === impl ReplayBody ===

impl<B: Body> ReplayBody<B> {
    /// `body`, recorded up to `limit` bytes of data as it is read; a body
    /// whose size hint is over `limit` is sent once and not recorded.
    pub fn new(body: B, limit: usize) -> Self {
        if body.is_end_stream() {
            return Self { kind: Kind::Empty };
        }
        let size_hint = body.size_hint();
        if size_hint.lower() > u64::try_from(limit).unwrap_or(u64::MAX) {
            return Self::once(body);
        }
        Self {
            kind: Kind::Recorded {
                reader: Reader::new(body, limit, size_hint),
            },
        }
    }
}

impl<B> ReplayBody<B> {
    /// `body`, sent once: no copy of it can be made.
    pub(crate) fn once(body: B) -> Self {
        Self {
            kind: Kind::Once {
                body: BufferedBody::streaming(VecDeque::new(), body),
            },
        }
    }

    /// A copy that sends the body from its start; `None` when it cannot be
    /// sent again: it was sent once, read past its limit, or failed.
    pub fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Empty => Some(Self { kind: Kind::Empty }),
            Kind::Once { .. } => None,
            Kind::Recorded { reader } => Some(Self {
                kind: Kind::Recorded {
                    reader: reader.try_clone()?,
                },
            }),
        }
    }

    /// `true` while a copy of the body can be sent:
    /// [`try_clone`](Self::try_clone) gives one, and a copy made before
    /// reads the whole body.
    pub fn is_replayable(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Once { .. } => false,
            Kind::Recorded { reader } => reader.is_replayable(),
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        match self.project().kind.project() {
            KindProj::Empty => Poll::Ready(None),
            KindProj::Once { body } => body.poll_frame(cx),
            KindProj::Recorded { reader } => reader.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Once { body } => body.is_end_stream(),
            Kind::Recorded { reader } => reader.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Once { body } => body.size_hint(),
            Kind::Recorded { reader } => reader.size_hint(),
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Empty => f.write_str("ReplayBody::Empty"),
            Kind::Once { .. } => f.write_str("ReplayBody::Once"),
            Kind::Recorded { reader } => {
                f.debug_tuple("ReplayBody::Recorded").field(reader).finish()
            }
        }
    }
}
