//! Deduplicating `http` requests (feature `http`): [`HttpKey`] (method,
//! authority, URI, `Authorization`, `Cookie`, `Range` and the conditional
//! headers, plus the headers you name, for GET and HEAD by default), response bodies buffered up to a
//! limit and shared ([`HttpShare`]), all built at once by
//! [`DedupBuilder::build_http`](crate::DedupBuilder::build_http).
//!
//! # Whose answer is shared
//!
//! Requests share a call only when their keys are equal: same method,
//! same authority (the URI's when it has one, else the `Host` header, so
//! two virtual hosts never share), same URI, same values of the keyed
//! headers. Even then, an answer goes to one request only (the one that
//! started the call gets it whole; every other waiter makes its own call,
//! and its answer is marked [`Sharing::Own`]), and is never cached, when:
//!
//! - its body is over the limit (nothing is truncated);
//! - it carries `Set-Cookie`;
//! - its `Cache-Control` says `private` or `no-store` (in any case, in any
//!   position of the list, with or without a value: `no-cache, private`,
//!   `PRIVATE="set-cookie"`);
//! - it has a `Vary` on a header the key does not hold (`Vary: *`
//!   always). The key holds `Host` and the headers of its [`HttpKey`]
//!   (`Authorization`, `Cookie`, `Range` and the `If-*` headers by
//!   default, plus those named with
//!   [`vary`](HttpKey::vary)): a `Vary: Accept-Encoding` answer is shared
//!   only with `.vary(ACCEPT_ENCODING)`. With a key function of your own
//!   ([`HttpShare::new`]), the layer knows no keyed header but `Host`, and
//!   an answer with any other `Vary` is not shared.
//!
//! # What the cache keeps
//!
//! With [`cache`](crate::DedupBuilder::cache), a shareable answer is kept
//! only if the classifier calls it a success (by default
//! [`ServerErrorsAsFailures`]: a 5xx is not kept; it is still shared with
//! the requests that waited on its call, as singleflight does), for the
//! layer's TTL or less: `Cache-Control: s-maxage` (or else `max-age`),
//! minus `Age`, when shorter; not at all for `max-age=0`, `no-cache`, or a
//! `max-age` that is not a number. `Expires` is not read. Without a
//! `max-age` or `s-maxage`, only the statuses a cache may keep unasked
//! (RFC 9111 §4.2.2: 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414,
//! 501) are kept: a 429, a 401 or a 302 is shared in flight, never cached.
//!
//! # Marks
//!
//! Each response to a keyed request carries its [`Sharing`] in its
//! extensions. The response to a request without a key (a POST, by
//! default) carries none (marking it would cost an allocation on a path
//! that otherwise has none), and is not buffered at all: it streams
//! through.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Empty, Full};
//! use reflex_dedup::{DedupLayer, HttpKey, Sharing};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let dedup = DedupLayer::builder()
//!     .component("catalog")
//!     .build_http::<Empty<Bytes>>(HttpKey::new().vary(http::header::ACCEPT_LANGUAGE), 64 * 1024)?;
//! let svc = dedup.layer(service_fn(|req: Request<Empty<Bytes>>| async move {
//!     tokio::task::yield_now().await;
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(req.uri().to_string()))))
//! }));
//! let get = || Request::get("/items/7").body(Empty::<Bytes>::new()).unwrap();
//! let (a, b) = tokio::join!(svc.clone().oneshot(get()), svc.clone().oneshot(get()));
//! let (a, b) = (a?, b?);
//! assert_eq!(a.extensions().get::<Sharing>(), Some(&Sharing::Shared));
//! assert_eq!(b.into_body().collect().await?.to_bytes(), "/items/7");
//! assert_eq!(dedup.handle().metrics().coalesced, 1);
//! # Ok(())
//! # }
//! ```

mod headers;
mod key;

pub use key::{HttpKey, RequestKey};

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Extensions, HeaderMap, HeaderName, Request, Response, StatusCode, Version};
use http_body::Body;
use pin_project_lite::pin_project;
use reflex_core::http::{Buffer, BufferedBody, buffer};
use reflex_core::{
    BoxError, Classify, ConfigError, DefaultClassifier, Outcome, ServerErrorsAsFailures,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Dedup, DedupBuilder, DedupHandle, DedupLayer, Share, Sharing};

/// An `http` response kept for sharing: its parts and its whole body.
#[derive(Debug, Clone)]
pub struct SharedResponse {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

/// Shares `http` responses whose body was buffered whole and whose headers
/// allow it (no `Set-Cookie`, not `private` or `no-store`, no `Vary` on a
/// header the key does not hold: see the [module docs](self)); marks each
/// with its [`Sharing`] (in its extensions); weighs them by their body
/// length; keeps them in the cache no longer than their `Cache-Control`
/// says.
///
/// # Examples
///
/// ```
/// use http::header::ACCEPT_ENCODING;
/// use reflex_dedup::{HttpKey, HttpShare};
///
/// // With a key function of your own: no `Vary` is trusted but on `Host`.
/// let own_key = HttpShare::new();
/// // With an `HttpKey`: its headers too (`build_http` does this).
/// let key = HttpKey::new().vary(ACCEPT_ENCODING);
/// let by_key = HttpShare::keyed_by(&key);
/// # let _ = (own_key, by_key);
/// ```
#[derive(Debug, Clone, Default)]
pub struct HttpShare {
    /// The headers the key holds (besides `Host`).
    keyed: Arc<[HeaderName]>,
}

// === impl HttpShare ===

impl HttpShare {
    /// Shares responses for requests keyed by a function of your own: the
    /// layer cannot know which headers it keys by, so a response with a
    /// `Vary` on any header but `Host` is not shared.
    pub fn new() -> Self {
        Self::default()
    }

    /// Shares responses for requests keyed by `key`: a response with a
    /// `Vary` on `Host` or on headers `key` holds may be shared.
    pub fn keyed_by(key: &HttpKey) -> Self {
        Self {
            keyed: Arc::clone(key.headers()),
        }
    }
}

impl<B> Share<Response<BufferedBody<B>>> for HttpShare {
    type Shared = SharedResponse;

    fn share(
        &self,
        response: Response<BufferedBody<B>>,
    ) -> Result<SharedResponse, Response<BufferedBody<B>>> {
        let Some(body) = response.body().bytes().cloned() else {
            return Err(response);
        };
        if !headers::shareable(response.headers(), &self.keyed) {
            return Err(response);
        }
        let trailers = response.body().trailers().cloned();
        let (parts, _) = response.into_parts();
        Ok(SharedResponse {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            extensions: parts.extensions,
            body,
            trailers,
        })
    }

    fn unshare(&self, shared: &SharedResponse) -> Response<BufferedBody<B>> {
        let mut response = Response::new(BufferedBody::buffered(
            shared.body.clone(),
            shared.trailers.clone(),
        ));
        *response.status_mut() = shared.status;
        *response.version_mut() = shared.version;
        *response.headers_mut() = shared.headers.clone();
        *response.extensions_mut() = shared.extensions.clone();
        response
    }

    fn mark(&self, response: &mut Response<BufferedBody<B>>, sharing: Sharing) {
        response.extensions_mut().insert(sharing);
    }

    fn weight(&self, shared: &SharedResponse) -> usize {
        shared.body.len()
    }

    fn max_age(&self, shared: &SharedResponse) -> Option<std::time::Duration> {
        match headers::max_age(&shared.headers) {
            Some(explicit) => Some(explicit),
            None if headers::cacheable_by_default(shared.status) => None,
            // A 429, a redirect, a 401 with nothing said: not kept.
            None => Some(std::time::Duration::ZERO),
        }
    }
}

/// The classifier of an `http` dedup layer: the one given to the builder
/// with [`classifier`](DedupBuilder::classifier), or
/// [`ServerErrorsAsFailures`] (a 5xx is not cached) when none was.
#[derive(Debug, Clone, Copy)]
pub struct HttpClassifier<C> {
    given: Option<C>,
}

impl<C, B> Classify<Response<B>, BoxError> for HttpClassifier<C>
where
    C: Classify<Response<B>, BoxError>,
{
    fn classify(&self, result: Result<&Response<B>, &BoxError>) -> Outcome {
        match &self.given {
            Some(given) => given.classify(result),
            None => ServerErrorsAsFailures.classify(result),
        }
    }
}

// === impl DedupBuilder (http) ===

impl<Req, K, KF, H, C> DedupBuilder<Req, K, KF, H, C> {
    /// Builds a layer for `http` requests with bodies of type `B`: keyed
    /// by `key`, response bodies buffered up to `body_limit` bytes and
    /// shared when their headers allow it (else the answer goes whole to
    /// the request that started the call, and the others make their own
    /// calls; see the [`http` module](crate::http)). The key function and
    /// `Share` given before are replaced; the classifier, when none was
    /// given, is [`ServerErrorsAsFailures`] (see [`HttpClassifier`]).
    ///
    /// # Errors
    ///
    /// As [`build`](DedupBuilder::build).
    pub fn build_http<B>(
        self,
        key: HttpKey,
        body_limit: usize,
    ) -> Result<HttpDedupLayer<B, C>, ConfigError> {
        let (builder, classifier, given) = self.take_classifier();
        let classifier = HttpClassifier {
            given: given.then_some(classifier),
        };
        Ok(HttpDedupLayer {
            dedup: builder
                .key_with(key.clone())
                .share(HttpShare::keyed_by(&key))
                .classifier(classifier)
                .build()?,
            key,
            body_limit,
        })
    }
}

/// A [`DedupLayer`] for `http`, over a layer that buffers response bodies;
/// from [`DedupBuilder::build_http`]. `C` is the classifier given to the
/// builder ([`HttpClassifier`] replaces the default one).
pub struct HttpDedupLayer<B, C = DefaultClassifier> {
    dedup: DedupLayer<Request<B>, RequestKey, HttpKey, HttpShare, HttpClassifier<C>>,
    /// The key function, again: which responses to buffer.
    key: HttpKey,
    body_limit: usize,
}

// === impl HttpDedupLayer ===

impl<B, C> HttpDedupLayer<B, C> {
    /// A handle to read keys in flight, coalesced requests and the cache.
    pub fn handle(&self) -> DedupHandle {
        self.dedup.handle()
    }

    /// The largest response body shared, in bytes.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }
}

impl<B, C: Clone> Clone for HttpDedupLayer<B, C> {
    fn clone(&self) -> Self {
        Self {
            dedup: self.dedup.clone(),
            key: self.key.clone(),
            body_limit: self.body_limit,
        }
    }
}

impl<B, C> fmt::Debug for HttpDedupLayer<B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDedupLayer")
            .field("dedup", &self.dedup)
            .field("key", &self.key)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

impl<S, B, RB, C> Layer<S> for HttpDedupLayer<B, C>
where
    C: Clone,
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: Body + Unpin + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Service =
        Dedup<BufferResponse<S>, Request<B>, RequestKey, HttpKey, HttpShare, HttpClassifier<C>>;

    fn layer(&self, inner: S) -> Self::Service {
        self.dedup.layer(BufferResponse {
            inner,
            key: self.key.clone(),
            limit: self.body_limit,
        })
    }
}

/// Buffers the body of each response to a keyed request of the service it
/// wraps, up to a limit (see [`BufferedBody`]), so it can be shared. The
/// response to a request its [`HttpKey`] does not key streams through
/// unread and unmarked (no [`Sharing`]: nothing is allocated for it).
#[derive(Debug, Clone)]
pub struct BufferResponse<S> {
    inner: S,
    key: HttpKey,
    limit: usize,
}

impl<S, B, RB> Service<Request<B>> for BufferResponse<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Body + Unpin,
    RB::Error: Into<BoxError>,
{
    type Response = Response<BufferedBody<RB>>;
    type Error = BoxError;
    type Future = BufferFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Without a key the request passes through `Dedup` untouched: its
        // response is never shared, so nothing is read ahead.
        let limit = self.key.keys(request.method()).then_some(self.limit);
        BufferFuture {
            state: BufferState::Calling {
                future: self.inner.call(request),
                limit,
            },
        }
    }
}

pin_project! {
    /// The response future of [`BufferResponse`].
    pub struct BufferFuture<F, RB> {
        #[pin]
        state: BufferState<F, RB>,
    }
}

pin_project! {
    #[project = BufferStateProj]
    enum BufferState<F, RB> {
        Calling {
            #[pin]
            future: F,
            // `None`: a request without a key, its body streamed through.
            limit: Option<usize>,
        },
        Reading {
            parts: Option<http::response::Parts>,
            body: Buffer<RB>,
        },
    }
}

impl<F, RB, E> Future for BufferFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    RB: Body + Unpin,
    RB::Error: Into<BoxError>,
{
    type Output = Result<Response<BufferedBody<RB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                BufferStateProj::Calling { future, limit } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    let Some(limit) = *limit else {
                        // Not marked: an extension would be the only
                        // allocation of this request.
                        let (parts, body) = response.into_parts();
                        let body = BufferedBody::streaming(VecDeque::new(), body);
                        return Poll::Ready(Ok(Response::from_parts(parts, body)));
                    };
                    let (parts, body) = response.into_parts();
                    BufferState::Reading {
                        parts: Some(parts),
                        body: buffer(body, limit),
                    }
                }
                BufferStateProj::Reading { parts, body } => {
                    let body = ready!(Pin::new(body).poll(cx))?;
                    let parts = parts.take().expect("BufferFuture polled after completion");
                    return Poll::Ready(Ok(Response::from_parts(parts, body)));
                }
            };
            this.state.set(next);
        }
    }
}

impl<F, RB> fmt::Debug for BufferFuture<F, RB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferFuture").finish_non_exhaustive()
    }
}
