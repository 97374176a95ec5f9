//! Body buffering (feature `http`): [`buffer`] reads a body into memory up
//! to a limit, into a [`BufferedBody`] that can be copied when it was read
//! whole (retried requests, shared responses).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BoxError;

pin_project! {
    /// A body read into memory: buffered whole (up to the limit it was
    /// read with, by [`buffer`]: `reflex-dedup` shares response bodies this
    /// way), or, when it was larger, the part read so far followed by the
    /// rest of the original body, which can be sent once only.
    ///
    /// Its data is [`Bytes`] and its error a [`BoxError`].
    pub struct BufferedBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Buffered {
            data: Bytes,
            trailers: Option<HeaderMap>,
            data_sent: bool,
            trailers_sent: bool,
        },
        Streaming {
            prefix: VecDeque<Bytes>,
            #[pin]
            rest: B,
        },
    }
}

// === impl BufferedBody ===

impl<B> BufferedBody<B> {
    /// An empty body, replayable.
    pub fn empty() -> Self {
        Self::buffered(Bytes::new(), None)
    }

    /// A whole body, replayable.
    pub fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: Kind::Buffered {
                data,
                trailers,
                data_sent: false,
                trailers_sent: false,
            },
        }
    }

    /// `prefix` (already read from `rest`), then the rest of `rest`: sent
    /// once only.
    pub fn streaming(prefix: VecDeque<Bytes>, rest: B) -> Self {
        Self {
            kind: Kind::Streaming { prefix, rest },
        }
    }

    /// A fresh copy of a buffered body, from its start; `None` for a body
    /// that was too large to buffer.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use reflex_core::http::BufferedBody;
    ///
    /// let body = BufferedBody::<()>::buffered(Bytes::from("abc"), None);
    /// assert_eq!(body.bytes().map(|b| b.len()), Some(3));
    /// assert!(body.try_clone().is_some());
    /// ```
    pub fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Buffered { data, trailers, .. } => {
                Some(Self::buffered(data.clone(), trailers.clone()))
            }
            Kind::Streaming { .. } => None,
        }
    }

    /// The whole data of a buffered body (from its start, whatever was
    /// sent); `None` for one too large to buffer.
    pub fn bytes(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Buffered { data, .. } => Some(data),
            Kind::Streaming { .. } => None,
        }
    }

    /// The trailers of a buffered body, if it had any.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        match &self.kind {
            Kind::Buffered { trailers, .. } => trailers.as_ref(),
            Kind::Streaming { .. } => None,
        }
    }

    /// `true` when the body is buffered whole and can be copied.
    pub fn is_buffered(&self) -> bool {
        matches!(self.kind, Kind::Buffered { .. })
    }
}

impl<B> Body for BufferedBody<B>
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
            KindProj::Buffered {
                data,
                trailers,
                data_sent,
                trailers_sent,
            } => {
                if !*data_sent {
                    *data_sent = true;
                    if !data.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(data.clone()))));
                    }
                }
                if !*trailers_sent {
                    *trailers_sent = true;
                    if let Some(trailers) = trailers {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
                    }
                }
                Poll::Ready(None)
            }
            KindProj::Streaming { prefix, rest } => {
                if let Some(chunk) = prefix.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                match ready!(rest.poll_frame(cx)) {
                    Some(Ok(frame)) => Poll::Ready(Some(Ok(
                        frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
                    ))),
                    Some(Err(err)) => Poll::Ready(Some(Err(err.into()))),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered {
                data,
                trailers,
                data_sent,
                trailers_sent,
            } => (*data_sent || data.is_empty()) && (*trailers_sent || trailers.is_none()),
            Kind::Streaming { prefix, rest } => prefix.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered {
                data, data_sent, ..
            } => SizeHint::with_exact(if *data_sent { 0 } else { data.len() as u64 }),
            Kind::Streaming { prefix, rest } => {
                let read: u64 = prefix.iter().map(|chunk| chunk.len() as u64).sum();
                let hint = rest.size_hint();
                let mut sum = SizeHint::new();
                sum.set_lower(hint.lower().saturating_add(read));
                if let Some(upper) = hint.upper() {
                    sum.set_upper(upper.saturating_add(read));
                }
                sum
            }
        }
    }
}

impl<B> fmt::Debug for BufferedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Buffered { data, .. } => f
                .debug_struct("BufferedBody")
                .field("buffered", &data.len())
                .finish(),
            Kind::Streaming { prefix, .. } => f
                .debug_struct("BufferedBody")
                .field("streaming_after", &prefix.len())
                .finish(),
        }
    }
}

/// Reads `body` into a [`BufferedBody`]: whole when it holds at most
/// `limit` bytes; else what was read, then the rest, unread. An empty body
/// (`is_end_stream`) is not read at all, and one whose size hint says it is
/// larger than `limit` is not read either.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use reflex_core::http::buffer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let small = buffer(Full::new(Bytes::from("hello")), 16).await?;
/// assert_eq!(small.bytes().map(|b| &b[..]), Some(&b"hello"[..]));
/// let large = buffer(Full::new(Bytes::from(vec![0; 64])), 16).await?;
/// assert!(!large.is_buffered());
/// # Ok(())
/// # }
/// ```
pub fn buffer<B>(body: B, limit: usize) -> Buffer<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    let state = if body.is_end_stream() {
        BufferState::Done(Some(BufferedBody::empty()))
    } else if body.size_hint().lower() > limit as u64 {
        BufferState::Done(Some(BufferedBody::streaming(VecDeque::new(), body)))
    } else {
        BufferState::Reading {
            body: Some(body),
            chunks: VecDeque::new(),
            read: 0,
        }
    };
    Buffer { state, limit }
}

/// The future of [`buffer`].
pub struct Buffer<B> {
    state: BufferState<B>,
    limit: usize,
}

enum BufferState<B> {
    Done(Option<BufferedBody<B>>),
    Reading {
        body: Option<B>,
        chunks: VecDeque<Bytes>,
        read: usize,
    },
}

impl<B> Buffer<B> {
    /// Takes the body at once when it needs no reading (empty, or known
    /// too large); `None` when it must be read (poll the future).
    pub fn ready_now(&mut self) -> Option<BufferedBody<B>> {
        match &mut self.state {
            BufferState::Done(body) => body.take(),
            BufferState::Reading { .. } => None,
        }
    }
}

impl<B> Future for Buffer<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<BufferedBody<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let limit = this.limit;
        let (body, chunks, read) = match &mut this.state {
            BufferState::Done(done) => {
                return Poll::Ready(Ok(done.take().expect("Buffer polled after completion")));
            }
            BufferState::Reading { body, chunks, read } => (body, chunks, read),
        };
        loop {
            let Some(source) = body.as_mut() else {
                panic!("Buffer polled after completion")
            };
            match ready!(Pin::new(source).poll_frame(cx)) {
                Some(Err(err)) => {
                    *body = None;
                    return Poll::Ready(Err(err.into()));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let chunk = data.copy_to_bytes(data.remaining());
                        *read = read.saturating_add(chunk.len());
                        chunks.push_back(chunk);
                        if *read > limit {
                            // Too large: what was read, then the rest, once.
                            let rest = body.take().expect("checked above");
                            let prefix = std::mem::take(chunks);
                            return Poll::Ready(Ok(BufferedBody::streaming(prefix, rest)));
                        }
                    }
                    Err(frame) => {
                        // Trailers end a body.
                        *body = None;
                        let trailers = frame.into_trailers().ok();
                        return Poll::Ready(Ok(BufferedBody::buffered(
                            concat(chunks, *read),
                            trailers,
                        )));
                    }
                },
                None => {
                    *body = None;
                    return Poll::Ready(Ok(BufferedBody::buffered(concat(chunks, *read), None)));
                }
            }
        }
    }
}

impl<B> fmt::Debug for Buffer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            BufferState::Done(_) => "done",
            BufferState::Reading { .. } => "reading",
        };
        f.debug_struct("Buffer")
            .field("state", &state)
            .field("limit", &self.limit)
            .finish()
    }
}

/// The chunks as one `Bytes` (no copy for a single chunk).
fn concat(chunks: &mut VecDeque<Bytes>, len: usize) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop_front().unwrap_or_default(),
        _ => {
            let mut whole = BytesMut::with_capacity(len);
            for chunk in chunks.drain(..) {
                whole.extend_from_slice(&chunk);
            }
            whole.freeze()
        }
    }
}
