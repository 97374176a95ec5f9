//! Retrying `http` requests (feature `http`): [`HttpPolicy`] (idempotent
//! methods; connect errors, 502, 503, 504 and 429; `Retry-After`),
//! [`RetryableResponses`] (the classifier to match), and [`ReplayBody`]
//! with [`ReplayBodyLayer`], which buffer a request body up to a limit so
//! that it can be sent again.
//!
//! Build all of it at once with
//! [`RetryBuilder::build_http`](crate::RetryBuilder::build_http):
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use reflex_retry::RetryLayer;
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let retry = RetryLayer::builder().http().build_http(64 * 1024)?;
//! let handle = retry.handle();
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let mut svc = retry.layer(service_fn(move |_req: Request<reflex_retry::http::ReplayBody<Full<Bytes>>>| {
//!     let call = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     async move {
//!         let status = if call == 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!         Ok::<_, std::convert::Infallible>(Response::builder().status(status).body(()).unwrap())
//!     }
//! }));
//! let request = Request::put("http://db/item/1").body(Full::new(Bytes::from("v2")))?;
//! let response = svc.ready().await?.call(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(handle.metrics().retries, 1);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use reflex_core::http::{Buffer, buffer};
use reflex_core::{BoxError, Classify, Outcome, ServerErrorsAsFailures};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Decision, Policy, Retry, RetryBuilder, RetryHandle, RetryLayer, parse_retry_after};

// === impl RetryBuilder (http) ===

impl<P, C> RetryBuilder<P, C> {
    /// Retries `http` requests: the policy becomes [`HttpPolicy`] and the
    /// classifier [`RetryableResponses`]. Finish with
    /// [`build_http`](RetryBuilder::build_http) to buffer request bodies
    /// too.
    pub fn http(self) -> RetryBuilder<HttpPolicy, RetryableResponses> {
        self.policy(HttpPolicy).classifier(RetryableResponses)
    }
}

impl<C> RetryBuilder<HttpPolicy, C> {
    /// Builds the layer behind a [`ReplayBodyLayer`] of `body_limit` bytes:
    /// a request body of up to `body_limit` bytes is buffered and can be
    /// sent again; a larger one is sent once and its request not retried.
    ///
    /// # Errors
    ///
    /// As [`build`](RetryBuilder::build).
    pub fn build_http(
        self,
        body_limit: usize,
    ) -> Result<HttpRetryLayer<C>, reflex_core::ConfigError> {
        Ok(HttpRetryLayer {
            retry: self.build()?,
            replay: ReplayBodyLayer::new(body_limit),
        })
    }
}

/// A [`RetryLayer`] for `http`, behind a [`ReplayBodyLayer`]; from
/// [`RetryBuilder::build_http`].
///
/// # Clone
///
/// Clones share one budget and one set of counts, as [`RetryLayer`]'s do.
pub struct HttpRetryLayer<C = RetryableResponses> {
    retry: RetryLayer<HttpPolicy, C>,
    replay: ReplayBodyLayer,
}

// === impl HttpRetryLayer ===

impl<C> HttpRetryLayer<C> {
    /// A handle to read what the layer did and the budget it has left.
    pub fn handle(&self) -> RetryHandle {
        self.retry.handle()
    }

    /// The largest request body buffered for replay, in bytes.
    pub fn body_limit(&self) -> usize {
        self.replay.limit()
    }
}

impl<C> Clone for HttpRetryLayer<C> {
    fn clone(&self) -> Self {
        Self {
            retry: self.retry.clone(),
            replay: self.replay,
        }
    }
}

impl<S, C> Layer<S> for HttpRetryLayer<C> {
    type Service = ReplayBodyService<Retry<S, HttpPolicy, C>>;

    fn layer(&self, inner: S) -> Self::Service {
        self.replay.layer(self.retry.layer(inner))
    }
}

impl<C> fmt::Debug for HttpRetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRetryLayer")
            .field("retry", &self.retry)
            .field("body_limit", &self.replay.limit())
            .finish()
    }
}

/// Retries idempotent `http` requests that failed in a way worth retrying.
///
/// - **Which requests:** the idempotent methods of RFC 9110 (GET, HEAD,
///   OPTIONS, PUT, DELETE, TRACE), whose body could be buffered
///   ([`ReplayBody`]). Any other request is sent once: nothing is copied.
/// - **Which failures:** an `Err` from the inner service (a connect error,
///   a reset, a per-attempt timeout: resending an idempotent request is
///   safe whether or not it arrived), and the statuses 502, 503, 504 and
///   429.
/// - **When:** after the backoff, or after what a `Retry-After` header of a
///   429 or 503 says (whole seconds or an http-date), when the layer's cap
///   allows it. A malformed value is ignored.
///
/// # Examples
///
/// ```
/// use http::{Request, Response, StatusCode};
/// use reflex_retry::http::{HttpPolicy, ReplayBody};
/// use reflex_retry::{Decision, Policy};
///
/// let get = Request::get("/").body(ReplayBody::<()>::empty()).unwrap();
/// let post = Request::post("/").body(ReplayBody::<()>::empty()).unwrap();
/// let busy = Response::builder()
///     .status(StatusCode::TOO_MANY_REQUESTS)
///     .header("retry-after", "3")
///     .body(())
///     .unwrap();
/// let policy: &dyn Policy<Request<ReplayBody<()>>, Response<()>> = &HttpPolicy;
/// assert!(policy.clone_request(&get).is_some());
/// assert!(policy.clone_request(&post).is_none(), "POST is not idempotent");
/// assert_eq!(
///     policy.retry(&get, Ok(&busy)),
///     Decision::After(std::time::Duration::from_secs(3)),
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpPolicy;

/// `true` for the methods RFC 9110 calls idempotent.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// `true` for the statuses [`HttpPolicy`] retries.
fn is_retryable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS
    )
}

impl<B, R> Policy<Request<ReplayBody<B>>, Response<R>> for HttpPolicy {
    fn clone_request(&self, request: &Request<ReplayBody<B>>) -> Option<Request<ReplayBody<B>>> {
        if !is_idempotent(request.method()) {
            return None;
        }
        let body = request.body().try_clone()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }

    fn retry(
        &self,
        _request: &Request<ReplayBody<B>>,
        result: Result<&Response<R>, &BoxError>,
    ) -> Decision {
        let response = match result {
            Err(_) => return Decision::Backoff,
            Ok(response) if is_retryable(response.status()) => response,
            Ok(_) => return Decision::Stop,
        };
        let asks = matches!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        match asks.then(|| retry_after(response.headers())).flatten() {
            Some(after) => Decision::After(after),
            None => Decision::Backoff,
        }
    }
}

/// The `Retry-After` of `headers`, if there is exactly one and it reads.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let mut values = headers.get_all(RETRY_AFTER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_retry_after(value.to_str().ok()?, SystemTime::now())
}

/// Classifies `http` responses for retrying: a 5xx or a 429, and every
/// `Err`, is a failure; anything else a success. That is
/// [`ServerErrorsAsFailures`] with a 429 a failure too (the breaker's
/// classifier counts a 429 as a success: it says nothing of the
/// dependency's health, but it is worth retrying later).
///
/// # Examples
///
/// ```
/// use http::{Response, StatusCode};
/// use reflex_core::{Classify, Outcome};
/// use reflex_retry::http::RetryableResponses;
///
/// let busy = Response::builder().status(StatusCode::TOO_MANY_REQUESTS).body(()).unwrap();
/// assert_eq!(RetryableResponses.classify(Ok::<_, &()>(&busy)), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryableResponses;

impl<R, E> Classify<Response<R>, E> for RetryableResponses {
    fn classify(&self, result: Result<&Response<R>, &E>) -> Outcome {
        match result {
            Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => Outcome::Failure,
            result => ServerErrorsAsFailures.classify(result),
        }
    }
}

/// A request body that can be sent again: buffered whole (up to the limit
/// of the [`ReplayBodyLayer`] that made it), or, when it was larger, the
/// part read so far followed by the rest, sent once. See
/// [`BufferedBody`](reflex_core::http::BufferedBody).
pub type ReplayBody<B> = reflex_core::http::BufferedBody<B>;

/// Makes request bodies replayable: buffers each body of up to `limit`
/// bytes before the request goes on, so a retry layer inside can send it
/// again. A larger body (by its size hint, or once more than `limit` bytes
/// were read) goes on as it is, after what was read, and is sent once.
///
/// An empty body (`is_end_stream`) is not read at all. Buffering happens
/// before the first attempt: the request waits for its whole body (up to
/// the limit) before it is sent.
///
/// # Examples
///
/// ```
/// use reflex_retry::http::ReplayBodyLayer;
///
/// let layer = ReplayBodyLayer::new(64 * 1024);
/// assert_eq!(layer.limit(), 64 * 1024);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ReplayBodyLayer {
    limit: usize,
}

// === impl ReplayBodyLayer ===

impl ReplayBodyLayer {
    /// Buffers bodies of up to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }

    /// The largest body buffered, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl<S> Layer<S> for ReplayBodyLayer {
    type Service = ReplayBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReplayBodyService {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`ReplayBodyLayer`]: turns `Request<B>` into
/// `Request<ReplayBody<B>>`.
#[derive(Debug, Clone)]
pub struct ReplayBodyService<S> {
    inner: S,
    limit: usize,
}

// === impl ReplayBodyService ===

impl<S> ReplayBodyService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for ReplayBodyService<S>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ReplayFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let mut buffering = buffer(body, self.limit);
        match buffering.ready_now() {
            // Empty, or known too large: nothing to read first.
            Some(body) => ReplayFuture {
                state: ReplayState::Calling {
                    future: self.inner.call(Request::from_parts(parts, body)),
                },
            },
            None => {
                // The ready service goes with the request; the clone left
                // behind must be polled ready again.
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                ReplayFuture {
                    state: ReplayState::Buffering {
                        buffering,
                        rest: Some((parts, service)),
                    },
                }
            }
        }
    }
}

pin_project! {
    /// The response future of [`ReplayBodyService`]: reads the body (up to
    /// the limit), then runs the inner call.
    pub struct ReplayFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: ReplayState<S, B>,
    }
}

pin_project! {
    #[project = ReplayStateProj]
    enum ReplayState<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        Buffering {
            buffering: Buffer<B>,
            rest: Option<(http::request::Parts, S)>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
    }
}

impl<S, B> Future for ReplayFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let future = match this.state.as_mut().project() {
                ReplayStateProj::Calling { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                ReplayStateProj::Buffering { buffering, rest } => {
                    let body = ready!(Pin::new(buffering).poll(cx));
                    let Some((parts, mut service)) = rest.take() else {
                        panic!("ReplayFuture polled after completion")
                    };
                    service.call(Request::from_parts(parts, body?))
                }
            };
            this.state.set(ReplayState::Calling { future });
        }
    }
}

impl<S, B> fmt::Debug for ReplayFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ReplayState::Buffering { .. } => "buffering",
            ReplayState::Calling { .. } => "calling",
        };
        f.debug_struct("ReplayFuture")
            .field("state", &state)
            .finish()
    }
}
