//! `http` glue every layer shares (feature `http`): the
//! [`ServerErrorsAsFailures`] and [`GrpcErrorsAsFailures`] classifiers, and
//! [`BufferedBody`] with
//! [`buffer`], which read a body into memory up to a limit so that it can
//! be copied (retried requests, shared responses).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::{BoxError, Classify, Outcome};

/// Classifies `http::Response`s: a 5xx status is a failure, every other
/// status a success, and an `Err` (the response never came) a failure.
///
/// A 4xx is the caller's mistake, not a sign of the dependency's health, so
/// it counts as a success; wrap this classifier in a closure to say otherwise
/// (for example to count 429 as a failure).
///
/// # Examples
///
/// ```
/// use http::{Response, StatusCode};
/// use reflex_core::{Classify, Outcome, ServerErrorsAsFailures};
///
/// let bad_gateway = Response::builder().status(StatusCode::BAD_GATEWAY).body(()).unwrap();
/// let not_found = Response::builder().status(StatusCode::NOT_FOUND).body(()).unwrap();
/// let classify = ServerErrorsAsFailures;
/// assert_eq!(classify.classify(Ok::<_, &()>(&bad_gateway)), Outcome::Failure);
/// assert_eq!(classify.classify(Ok::<_, &()>(&not_found)), Outcome::Success);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerErrorsAsFailures;

impl<B, Err> Classify<http::Response<B>, Err> for ServerErrorsAsFailures {
    fn classify(&self, result: Result<&http::Response<B>, &Err>) -> Outcome {
        match result {
            Ok(response) if response.status().is_server_error() => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// Classifies gRPC responses by the status the server put in the response
/// head: the codes that say something about the dependency's health are
/// failures, `CANCELLED` is ignored, every other code is a success, and an
/// `Err` (the response never came) is a failure.
///
/// The failures, by default: `UNKNOWN` (2), `DEADLINE_EXCEEDED` (4),
/// `RESOURCE_EXHAUSTED` (8), `INTERNAL` (13), `UNAVAILABLE` (14) and
/// `DATA_LOSS` (15). A code the caller got wrong (`INVALID_ARGUMENT`,
/// `NOT_FOUND`, `PERMISSION_DENIED`, …) is the caller's mistake, not a sign
/// of the dependency's health. [`with_failure`](Self::with_failure) and
/// [`without_failure`](Self::without_failure) change the set; codes are
/// numbers, as in `tonic::Code::Unavailable as i32`. `CANCELLED` made a
/// failure counts as one; `OK` (0) made a failure makes every answer whose
/// code is in its trailers a failure too, since the head says nothing.
///
/// Where the code is read:
///
/// - A `grpc-status` header: a server answering with an error before any
///   message sends it there ("trailers-only"), as tonic does for a handler's
///   `Err(Status)` and for [`Status::into_http`]. A value that is not a code
///   of the gRPC spec (0 to 16) counts as `UNKNOWN`, as gRPC clients read it.
/// - No `grpc-status` and an http status other than 200 (a proxy answered):
///   the code gRPC maps that status to (429, 502, 503 and 504 are
///   `UNAVAILABLE`; 400 `INTERNAL`; 401 `UNAUTHENTICATED`; 403
///   `PERMISSION_DENIED`; 404 `UNIMPLEMENTED`; any other `UNKNOWN`).
/// - Otherwise the code comes in the trailers, after the messages, which a
///   classifier of the response head cannot see: the call is a success.
///   An error a streaming server sends after its first message is not
///   counted.
///
/// [`Status::into_http`]: https://docs.rs/tonic/latest/tonic/struct.Status.html#method.into_http
///
/// # Examples
///
/// ```
/// use http::Response;
/// use reflex_core::{Classify, GrpcErrorsAsFailures, Outcome};
///
/// let status = |code: &str| Response::builder().header("grpc-status", code).body(()).unwrap();
/// let classify = GrpcErrorsAsFailures::new();
/// assert_eq!(classify.classify(Ok::<_, &()>(&status("14"))), Outcome::Failure); // UNAVAILABLE
/// assert_eq!(classify.classify(Ok::<_, &()>(&status("5"))), Outcome::Success); // NOT_FOUND
/// assert_eq!(classify.classify(Ok::<_, &()>(&status("1"))), Outcome::Ignored); // CANCELLED
///
/// // NOT_FOUND as a failure too:
/// let strict = classify.with_failure(5);
/// assert_eq!(strict.classify(Ok::<_, &()>(&status("5"))), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcErrorsAsFailures {
    /// Bit `n` set: code `n` is a failure.
    failures: u32,
}

/// gRPC codes this classifier names.
const GRPC_OK: i32 = 0;
const GRPC_CANCELLED: i32 = 1;
const GRPC_UNKNOWN: i32 = 2;
const GRPC_PERMISSION_DENIED: i32 = 7;
const GRPC_UNIMPLEMENTED: i32 = 12;
const GRPC_INTERNAL: i32 = 13;
const GRPC_UNAVAILABLE: i32 = 14;
const GRPC_UNAUTHENTICATED: i32 = 16;
const GRPC_HIGHEST: i32 = 16;

// === impl GrpcErrorsAsFailures ===

impl GrpcErrorsAsFailures {
    /// The default failures: `UNKNOWN`, `DEADLINE_EXCEEDED`,
    /// `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS`.
    pub const fn new() -> Self {
        Self {
            failures: 1 << 2 | 1 << 4 | 1 << 8 | 1 << 13 | 1 << 14 | 1 << 15,
        }
    }

    /// Counts `code` as a failure too. A number outside the gRPC spec's
    /// codes (0 to 16) is read as `UNKNOWN`, so it changes nothing here.
    #[must_use]
    pub const fn with_failure(mut self, code: i32) -> Self {
        if 0 <= code && code <= GRPC_HIGHEST {
            self.failures |= 1 << code;
        }
        self
    }

    /// Counts `code` as a success instead of a failure.
    #[must_use]
    pub const fn without_failure(mut self, code: i32) -> Self {
        if 0 <= code && code <= GRPC_HIGHEST {
            self.failures &= !(1 << code);
        }
        self
    }

    /// The outcome of a call that ended with gRPC status `code`.
    ///
    /// ```
    /// use reflex_core::{GrpcErrorsAsFailures, Outcome};
    ///
    /// assert_eq!(GrpcErrorsAsFailures::new().outcome_of(0), Outcome::Success);
    /// assert_eq!(GrpcErrorsAsFailures::new().outcome_of(4), Outcome::Failure);
    /// assert_eq!(GrpcErrorsAsFailures::new().outcome_of(99), Outcome::Failure); // UNKNOWN
    /// ```
    pub const fn outcome_of(&self, code: i32) -> Outcome {
        let code = if 0 <= code && code <= GRPC_HIGHEST {
            code
        } else {
            GRPC_UNKNOWN
        };
        if self.failures & (1 << code) != 0 {
            Outcome::Failure
        } else if code == GRPC_CANCELLED {
            Outcome::Ignored
        } else {
            Outcome::Success
        }
    }
}

impl Default for GrpcErrorsAsFailures {
    fn default() -> Self {
        Self::new()
    }
}

/// The gRPC code in a response head, if it carries one.
fn grpc_code<B>(response: &http::Response<B>) -> Option<i32> {
    if let Some(value) = response.headers().get("grpc-status") {
        // One or two ASCII digits, as gRPC clients read it: "+14", "014"
        // or "-0" are not codes.
        let code = match *value.as_bytes() {
            [d @ b'0'..=b'9'] => i32::from(d - b'0'),
            [b'1', d @ b'0'..=b'6'] => 10 + i32::from(d - b'0'),
            _ => GRPC_UNKNOWN,
        };
        return Some(code);
    }
    // gRPC's mapping of the http status a proxy may answer with.
    let code = match response.status().as_u16() {
        200 => return None,
        400 => GRPC_INTERNAL,
        401 => GRPC_UNAUTHENTICATED,
        403 => GRPC_PERMISSION_DENIED,
        404 => GRPC_UNIMPLEMENTED,
        429 | 502 | 503 | 504 => GRPC_UNAVAILABLE,
        _ => GRPC_UNKNOWN,
    };
    Some(code)
}

impl<B, Err> Classify<http::Response<B>, Err> for GrpcErrorsAsFailures {
    fn classify(&self, result: Result<&http::Response<B>, &Err>) -> Outcome {
        match result {
            Ok(response) => self.outcome_of(grpc_code(response).unwrap_or(GRPC_OK)),
            Err(_) => Outcome::Failure,
        }
    }
}

pin_project! {
    /// A request body that can be sent again: buffered whole (up to the
    /// limit it was read with, by [`buffer`] or by a layer built on it, such
    /// as `reflex-retry`'s `ReplayBodyLayer`), or, when it was larger, the
    /// part read so far followed by the rest of the original body, which
    /// can be sent once only.
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Response, StatusCode};

    fn classify(status: u16) -> Outcome {
        let response = Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .body(())
            .unwrap();
        ServerErrorsAsFailures.classify(Ok::<_, &()>(&response))
    }

    #[test]
    fn every_5xx_is_a_failure_and_nothing_else_is() {
        for status in 100..=999u16 {
            let expected = if (500..600).contains(&status) {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            assert_eq!(classify(status), expected, "status {status}");
        }
    }

    fn grpc(status: u16, code: Option<&[u8]>) -> Outcome {
        let mut response = Response::builder().status(StatusCode::from_u16(status).unwrap());
        if let Some(code) = code {
            response = response.header("grpc-status", http::HeaderValue::from_bytes(code).unwrap());
        }
        GrpcErrorsAsFailures::new().classify(Ok::<_, &()>(&response.body(()).unwrap()))
    }

    #[test]
    fn grpc_codes_of_the_dependencys_health_are_failures_and_cancelled_is_ignored() {
        let failures = [2, 4, 8, 13, 14, 15];
        for code in 0..=16 {
            let expected = if failures.contains(&code) {
                Outcome::Failure
            } else if code == 1 {
                Outcome::Ignored
            } else {
                Outcome::Success
            };
            let header = code.to_string();
            assert_eq!(grpc(200, Some(header.as_bytes())), expected, "code {code}");
        }
    }

    #[test]
    fn a_grpc_status_that_is_not_a_code_counts_as_unknown() {
        for malformed in [
            &b"17"[..],
            b"-1",
            b"",
            b"fourteen",
            b"1 4",
            b"\xff",
            b"99999999999",
            b"+14",
            b"014",
            b"00",
            b"-0",
            b"20",
        ] {
            assert_eq!(
                grpc(200, Some(malformed)),
                Outcome::Failure,
                "{malformed:?}"
            );
        }
        let unknown_is_fine = GrpcErrorsAsFailures::new().without_failure(2);
        let response = Response::builder()
            .header("grpc-status", "abc")
            .body(())
            .unwrap();
        assert_eq!(
            unknown_is_fine.classify(Ok::<_, &()>(&response)),
            Outcome::Success
        );
    }

    #[test]
    fn without_grpc_status_the_http_status_maps_as_grpc_says() {
        assert_eq!(
            grpc(200, None),
            Outcome::Success,
            "the code is in the trailers"
        );
        for unavailable in [429, 502, 503, 504] {
            assert_eq!(grpc(unavailable, None), Outcome::Failure, "{unavailable}");
        }
        assert_eq!(grpc(400, None), Outcome::Failure, "INTERNAL");
        assert_eq!(grpc(500, None), Outcome::Failure, "UNKNOWN");
        assert_eq!(grpc(401, None), Outcome::Success, "UNAUTHENTICATED");
        assert_eq!(grpc(403, None), Outcome::Success, "PERMISSION_DENIED");
        assert_eq!(grpc(404, None), Outcome::Success, "UNIMPLEMENTED");
        // A grpc-status wins over the http status.
        assert_eq!(grpc(503, Some(b"0")), Outcome::Success);
    }

    #[test]
    fn the_failure_set_changes_one_code_at_a_time_and_ignores_codes_outside_the_spec() {
        let classify = GrpcErrorsAsFailures::new()
            .with_failure(5)
            .without_failure(8);
        assert_eq!(classify.outcome_of(5), Outcome::Failure);
        assert_eq!(classify.outcome_of(8), Outcome::Success);
        assert_eq!(classify.outcome_of(14), Outcome::Failure);
        assert_eq!(classify.with_failure(40), classify);
        assert_eq!(classify.without_failure(-3), classify);
        let err: Result<&Response<()>, &&str> = Err(&"connection refused");
        assert_eq!(classify.classify(err), Outcome::Failure);
    }

    #[test]
    fn a_missing_response_is_a_failure() {
        let err: Result<&Response<()>, &&str> = Err(&"connection refused");
        assert_eq!(ServerErrorsAsFailures.classify(err), Outcome::Failure);
    }
}
