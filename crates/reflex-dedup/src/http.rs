//! Deduplicating `http` requests (feature `http`): [`HttpKey`] (method,
//! URI, `Authorization` and `Cookie`, plus the headers you name, for GET
//! and HEAD by default), response bodies buffered up to a limit and shared
//! ([`HttpShare`]), all built at once by
//! [`DedupBuilder::build_http`](crate::DedupBuilder::build_http).
//!
//! A response whose body is over the limit is not shared: the request that
//! started the call gets it whole, and every other waiter makes its own
//! call. Nothing is truncated. The response to a request without a key
//! (a POST, by default) is not buffered at all: it streams through, marked
//! [`Sharing::Own`]. Each response carries its [`Sharing`] in its
//! extensions.
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

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{
    Extensions, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri,
    Version,
};
use http_body::Body;
use pin_project_lite::pin_project;
use reflex_core::http::{Buffer, BufferedBody, buffer};
use reflex_core::{BoxError, ConfigError};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Dedup, DedupBuilder, DedupHandle, DedupLayer, KeyFn, Share, Sharing};

/// The key of an `http` request: its method and URI, and the values of the
/// headers its [`HttpKey`] names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey {
    method: Method,
    uri: Uri,
    vary: Box<[Option<HeaderValue>]>,
}

/// Keys `http` requests by method and URI, plus the values of the headers
/// it varies on: two requests that differ in one of them are not the same
/// request. It varies on `Authorization` and `Cookie` by default, so one
/// user's answer is never shared with (or cached for) another; name more
/// with [`vary`](Self::vary) (`Accept`, `Accept-Language`, …). Only GET
/// and HEAD are keyed by default; other methods pass through.
///
/// To share answers across credentials (the resource is the same for
/// everyone, whoever asks), opt out with [`ignore`](Self::ignore).
///
/// # Examples
///
/// ```
/// use http::{Request, header};
/// use reflex_dedup::{HttpKey, KeyFn};
///
/// let key = HttpKey::new();
/// let alice = Request::get("/me").header("authorization", "alice").body(()).unwrap();
/// let bob = Request::get("/me").header("authorization", "bob").body(()).unwrap();
/// let post = Request::post("/me").body(()).unwrap();
/// assert_ne!(key.key(&alice), key.key(&bob));
/// assert_eq!(key.key(&alice), key.key(&alice.clone()));
/// assert_eq!(key.key(&post), None);
///
/// // A public resource: anyone's answer will do.
/// let public = HttpKey::new().ignore(&header::AUTHORIZATION).ignore(&header::COOKIE);
/// assert_eq!(public.key(&alice), public.key(&bob));
/// ```
#[derive(Debug, Clone)]
pub struct HttpKey {
    methods: Arc<[Method]>,
    vary: Arc<[HeaderName]>,
}

// === impl HttpKey ===

impl HttpKey {
    /// GET and HEAD requests, by method, URI, `Authorization` and
    /// `Cookie`.
    pub fn new() -> Self {
        Self {
            methods: Arc::new([Method::GET, Method::HEAD]),
            vary: Arc::new([http::header::AUTHORIZATION, http::header::COOKIE]),
        }
    }

    /// Also keys by the value of `header` (absent is a value too). Naming
    /// one already keyed by changes nothing.
    #[must_use]
    pub fn vary(self, header: HeaderName) -> Self {
        if self.vary.contains(&header) {
            return self;
        }
        let mut vary = self.vary.to_vec();
        vary.push(header);
        Self {
            vary: vary.into(),
            ..self
        }
    }

    /// No longer keys by `header`: requests that differ only in it share
    /// one call (and one cached answer). For `Authorization` and `Cookie`,
    /// only when the answer is the same whoever asks.
    #[must_use]
    pub fn ignore(self, header: &HeaderName) -> Self {
        Self {
            vary: self.vary.iter().filter(|h| *h != header).cloned().collect(),
            ..self
        }
    }

    /// `true` when requests of `method` are keyed.
    fn keys(&self, method: &Method) -> bool {
        self.methods.contains(method)
    }

    /// Keys requests of these methods, instead of GET and HEAD. Name only
    /// methods whose requests are safe to answer with another's response.
    #[must_use]
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        Self {
            methods: methods.into_iter().collect(),
            ..self
        }
    }
}

impl Default for HttpKey {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> KeyFn<Request<B>, RequestKey> for HttpKey {
    fn key(&self, request: &Request<B>) -> Option<RequestKey> {
        if !self.keys(request.method()) {
            return None;
        }
        let headers = request.headers();
        Some(RequestKey {
            method: request.method().clone(),
            uri: request.uri().clone(),
            vary: self
                .vary
                .iter()
                .map(|name| headers.get(name).cloned())
                .collect(),
        })
    }
}

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

/// Shares `http` responses whose body was buffered whole; marks each with
/// its [`Sharing`] (in its extensions); weighs them by their body length.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpShare;

impl<B> Share<Response<BufferedBody<B>>> for HttpShare {
    type Shared = SharedResponse;

    fn share(
        &self,
        response: Response<BufferedBody<B>>,
    ) -> Result<SharedResponse, Response<BufferedBody<B>>> {
        let Some(body) = response.body().bytes().cloned() else {
            return Err(response);
        };
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
}

// === impl DedupBuilder (http) ===

impl<Req, K, KF, H> DedupBuilder<Req, K, KF, H> {
    /// Builds a layer for `http` requests with bodies of type `B`: keyed
    /// by `key`, response bodies buffered up to `body_limit` bytes and
    /// shared (a larger one goes whole to the request that started the
    /// call, and the others make their own calls). The key function and
    /// `Share` given before are replaced.
    ///
    /// # Errors
    ///
    /// As [`build`](DedupBuilder::build).
    pub fn build_http<B>(
        self,
        key: HttpKey,
        body_limit: usize,
    ) -> Result<HttpDedupLayer<B>, ConfigError> {
        Ok(HttpDedupLayer {
            dedup: self.key_with(key.clone()).share(HttpShare).build()?,
            key,
            body_limit,
        })
    }
}

/// A [`DedupLayer`] for `http`, over a layer that buffers response bodies;
/// from [`DedupBuilder::build_http`].
pub struct HttpDedupLayer<B> {
    dedup: DedupLayer<Request<B>, RequestKey, HttpKey, HttpShare>,
    /// The key function, again: which responses to buffer.
    key: HttpKey,
    body_limit: usize,
}

// === impl HttpDedupLayer ===

impl<B> HttpDedupLayer<B> {
    /// A handle to read keys in flight, coalesced requests and the cache.
    pub fn handle(&self) -> DedupHandle {
        self.dedup.handle()
    }

    /// The largest response body shared, in bytes.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }
}

impl<B> Clone for HttpDedupLayer<B> {
    fn clone(&self) -> Self {
        Self {
            dedup: self.dedup.clone(),
            key: self.key.clone(),
            body_limit: self.body_limit,
        }
    }
}

impl<B> fmt::Debug for HttpDedupLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDedupLayer")
            .field("dedup", &self.dedup)
            .field("key", &self.key)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

impl<S, B, RB> Layer<S> for HttpDedupLayer<B>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: Body + Unpin + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Service = Dedup<BufferResponse<S>, Request<B>, RequestKey, HttpKey, HttpShare>;

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
/// unread, marked [`Sharing::Own`].
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
                        let (mut parts, body) = response.into_parts();
                        parts.extensions.insert(Sharing::Own);
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
