//! The call a keyed `http` request shares: the inner call, then its
//! response body read up to the layer's limit so that it can be copied,
//! boxed for the flight that runs it. A response whose head does not show
//! that its body fits (an event stream, no length known, a length over
//! the limit) is not read: it is handed over at once, unshareable.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use reflex_core::BoxError;
use reflex_core::http::{Buffer, BufferedBody, buffer};

use super::body::CallBody;

/// A shared `http` call, as its flight holds it: of any inner service,
/// for any request body.
pub(crate) type HttpCall =
    Pin<Box<dyn Future<Output = Result<Response<CallBody>, BoxError>> + Send + 'static>>;

/// The shared call of an inner `future`, its response body read up to
/// `limit` bytes when its head shows that it fits ([`fits`]); else the
/// response as it came, its body unread (so not shareable: its caller
/// gets it at once, and the requests that joined make their own calls).
pub(crate) fn shared_call<F, E, RB>(future: F, limit: usize) -> HttpCall
where
    F: Future<Output = Result<Response<RB>, E>> + Send + 'static,
    E: Into<BoxError>,
    RB: Body + Unpin + Send + 'static,
    RB::Error: Into<BoxError>,
{
    Box::pin(BufferCall {
        state: State::Calling { future, limit },
    })
}

pin_project! {
    struct BufferCall<F, RB> {
        #[pin]
        state: State<F, RB>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, RB> {
        Calling {
            #[pin]
            future: F,
            limit: usize,
        },
        Reading {
            parts: Option<http::response::Parts>,
            body: Buffer<RB>,
        },
    }
}

impl<F, E, RB> Future for BufferCall<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    RB: Body + Unpin + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Output = Result<Response<CallBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Calling { future, limit } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    if !fits(&response, *limit) {
                        return Poll::Ready(Ok(response.map(unread)));
                    }
                    let (parts, body) = response.into_parts();
                    State::Reading {
                        parts: Some(parts),
                        body: buffer(body, *limit),
                    }
                }
                StateProj::Reading { parts, body } => {
                    let body = ready!(Pin::new(body).poll(cx))?;
                    let parts = parts.take().expect("a shared call polled after completion");
                    return Poll::Ready(Ok(Response::from_parts(parts, erase(body))));
                }
            };
            this.state.set(next);
        }
    }
}

/// `true` when the head of `response` shows that its body fits in `limit`
/// bytes, so that reading it whole holds nobody back for long: a body at
/// its end, or bounded within the limit by its size hint (a whole body's
/// is exact: `Full`, an `axum` handler's string) or its `Content-Length`.
/// Never for `Content-Type: text/event-stream` (an SSE stream may never
/// end), nor for a body of unknown length (a long poll, a chunked
/// stream): those are not held back.
fn fits<B: Body>(response: &Response<B>, limit: usize) -> bool {
    let body = response.body();
    if body.is_end_stream() {
        return true;
    }
    let headers = response.headers();
    if event_stream(headers) {
        return false;
    }
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    if body.size_hint().upper().is_some_and(|upper| upper <= limit) {
        return true;
    }
    content_length(headers).is_some_and(|length| length <= limit)
}

/// `true` when a `Content-Type` is `text/event-stream` (any parameters).
fn event_stream(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_TYPE).iter().any(|value| {
        let media = value
            .as_bytes()
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default();
        media
            .trim_ascii()
            .eq_ignore_ascii_case(b"text/event-stream")
    })
}

/// The `Content-Length`, when there is one and it is a number.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(CONTENT_LENGTH)?.to_str().ok()?;
    value.trim().parse().ok()
}

/// `body`, unread, as a shared call holds it: boxed, streamed through.
fn unread<RB>(body: RB) -> CallBody
where
    RB: Body + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let body = BufferedBody::streaming(VecDeque::new(), body);
    BufferedBody::streaming(VecDeque::new(), Box::pin(body))
}

/// `body` of whatever type, as a shared call holds it: a whole body as it
/// is (its bytes are shared, not copied), the rest of a larger one boxed.
fn erase<RB>(body: BufferedBody<RB>) -> CallBody
where
    RB: Body + Send + 'static,
    RB::Error: Into<BoxError>,
{
    match body.bytes() {
        Some(bytes) => BufferedBody::buffered(bytes.clone(), body.trailers().cloned()),
        None => BufferedBody::streaming(VecDeque::new(), Box::pin(body)),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    use super::*;

    #[tokio::test]
    async fn a_body_over_the_limit_is_read_no_further_and_kept_whole() {
        let answer = |size: usize| async move {
            Ok::<_, BoxError>(Response::new(Full::new(Bytes::from(vec![b'x'; size]))))
        };
        let small = shared_call(answer(10), 16).await.unwrap();
        assert_eq!(small.body().bytes().map(Bytes::len), Some(10));
        let large = shared_call(answer(64), 16).await.unwrap();
        assert!(!large.body().is_buffered());
        let body = large.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 64, "nothing lost");
    }

    /// A body of unknown length that never ends: one frame, then nothing.
    struct Endless(bool);

    impl Body for Endless {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
            if std::mem::replace(&mut self.0, true) {
                return Poll::Pending;
            }
            Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from("data: 1\n\n")))))
        }
    }

    /// The shared call of an answer with these headers and `body`, polled
    /// once: `Some` when it is ready at once.
    fn polled_once<B>(headers: &[(&str, &str)], body: B) -> Option<Response<CallBody>>
    where
        B: Body + Unpin + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut response = Response::builder();
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        let response = response.body(body).unwrap();
        let mut call = shared_call(async move { Ok::<_, BoxError>(response) }, 64);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match call.as_mut().poll(&mut cx) {
            Poll::Ready(result) => Some(result.unwrap()),
            Poll::Pending => None,
        }
    }

    #[test]
    fn a_body_not_known_to_fit_is_handed_over_unread() {
        let sse = [("content-type", "Text/Event-Stream; charset=utf-8")];
        let sse = polled_once(&sse, Endless(false)).expect("an event stream is not held");
        assert!(!sse.body().is_buffered());
        let unknown = polled_once(&[], Endless(false)).expect("nor a body of unknown length");
        assert!(!unknown.body().is_buffered());
        let over = polled_once(&[("content-length", "65")], Endless(false));
        assert!(
            !over
                .expect("nor one longer than the limit")
                .body()
                .is_buffered()
        );
        // An event stream with a small exact size is still not read.
        let small_sse = [("content-type", "text/event-stream")];
        let small_sse = polled_once(&small_sse, Full::new(Bytes::from("data: 1\n\n")));
        assert!(!small_sse.unwrap().body().is_buffered());
    }

    #[test]
    fn a_body_known_to_fit_is_read_whole() {
        let whole = polled_once(&[], Full::new(Bytes::from("hello"))).unwrap();
        assert_eq!(whole.body().bytes().map(|b| &b[..]), Some(&b"hello"[..]));
        let empty = polled_once(
            &[("content-type", "text/event-stream")],
            Full::new(Bytes::new()),
        );
        assert!(
            empty.unwrap().body().is_buffered(),
            "an empty body is whole"
        );
        // A length within the limit: read (and, as it never ends, held).
        assert!(polled_once(&[("content-length", "64")], Endless(false)).is_none());
    }
}
