//! [`HttpRetryLayer`] and its service, [`HttpRetry`]: retries `http`
//! requests, their bodies recorded on the way to be sent again.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use http_body::Body;
use reflex_core::{BoxError, Classify, Handled};
use tower_layer::Layer;
use tower_service::Service;

use super::body::ReplayBody;
use super::classify::RetryableResponses;
use super::policy::{HttpPolicy, is_idempotent};
use crate::future::ResponseFuture;
use crate::handle::RetryHandle;
use crate::layer::RetryLayer;
use crate::policy::Policy;
use crate::service;
use crate::shared::Shared;

/// Retries `http` requests per [`HttpPolicy`]: a layer whose services take
/// `Request<B>` and call the service inside with `Request<ReplayBody<B>>`.
/// From [`RetryLayer::builder().http()`](crate::RetryBuilder::http).
///
/// It sits anywhere in a stack, below a shed layer as any other layer: a
/// request's body is recorded as the service inside reads it
/// ([`ReplayBody`]), so nothing is read, and nothing waits, before the
/// request reaches this layer. Requests that are not retried (a method
/// that is not idempotent, one attempt only, a body known to be over the
/// limit) get a body that is passed through as it is; an empty body is
/// never recorded.
///
/// # Clone
///
/// Clones share one budget and one set of counts, as [`RetryLayer`]'s do.
///
/// # Examples
///
/// ```
/// use reflex_retry::RetryLayer;
///
/// let retry = RetryLayer::builder().http().body_limit(16 * 1024).build()?;
/// assert_eq!(retry.body_limit(), 16 * 1024);
/// assert_eq!(retry.handle().metrics().retries, 0);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub struct HttpRetryLayer<C = RetryableResponses> {
    retry: RetryLayer<HttpPolicy, C>,
    body_limit: usize,
}

/// The service of [`HttpRetryLayer`]: turns `Request<B>` into
/// `Request<ReplayBody<B>>` and retries it.
///
/// # Clone
///
/// Clones share the layer's budget and counts. A call moves the ready
/// inner service into its response future (and keeps a clone, which must
/// be polled ready again), as [`Retry`](crate::Retry)'s does.
pub struct HttpRetry<S, C = RetryableResponses> {
    inner: S,
    shared: Arc<Shared<HttpPolicy, C>>,
    body_limit: usize,
}

// === impl HttpRetryLayer ===

impl<C> HttpRetryLayer<C> {
    pub(crate) fn new(retry: RetryLayer<HttpPolicy, C>, body_limit: usize) -> Self {
        Self { retry, body_limit }
    }

    /// A handle to read what the layer did and the budget it has left.
    pub fn handle(&self) -> RetryHandle {
        self.retry.handle()
    }

    /// The most data recorded of a request body to send it again, in
    /// bytes.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }
}

impl<C> Clone for HttpRetryLayer<C> {
    fn clone(&self) -> Self {
        Self {
            retry: self.retry.clone(),
            body_limit: self.body_limit,
        }
    }
}

impl<S, C> Layer<S> for HttpRetryLayer<C> {
    type Service = HttpRetry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpRetry {
            inner,
            shared: Arc::clone(&self.retry.shared),
            body_limit: self.body_limit,
        }
    }
}

/// The handle; nothing for a witness's reflexes to steer.
impl<C> Handled for HttpRetryLayer<C> {
    type Handle = RetryHandle;

    fn handle(&self) -> RetryHandle {
        Self::handle(self)
    }
}

impl<C> fmt::Debug for HttpRetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRetryLayer")
            .field("retry", &self.retry)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

// === impl HttpRetry ===

impl<S, C> HttpRetry<S, C> {
    reflex_core::inner_accessors!(inner: S);
}

impl<S, C, B> Service<Request<B>> for HttpRetry<S, C>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    HttpPolicy: Policy<Request<ReplayBody<B>>, S::Response>,
    C: Classify<S::Response, BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Request<ReplayBody<B>>, HttpPolicy, C>;

    /// Ready when the inner service is. Retries wait in the response
    /// future, never here.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let body = if self.shared.max_attempts > 1 && is_idempotent(&parts.method) {
            ReplayBody::new(body, self.body_limit)
        } else {
            ReplayBody::once(body)
        };
        service::call(
            &mut self.inner,
            &self.shared,
            Request::from_parts(parts, body),
        )
    }
}

impl<S: Clone, C> Clone for HttpRetry<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            body_limit: self.body_limit,
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for HttpRetry<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRetry")
            .field("inner", &self.inner)
            .field("component", self.shared.component())
            .field("max_attempts", &self.shared.max_attempts)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}
