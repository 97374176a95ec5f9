//! The [`Retry`] service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use reflex_core::{BoxError, Classify, DefaultClassifier};
use tower_service::Service;

use crate::attempts::Retryable;
use crate::future::ResponseFuture;
use crate::policy::{DefaultPolicy, Policy};
use crate::shared::Shared;

/// Retries the failed calls of the service it wraps. Built by
/// [`RetryLayer`](crate::RetryLayer).
///
/// # Clone
///
/// Clones share the layer's budget and counts. A call moves the ready
/// inner service into its response future (and keeps a clone, which must
/// be polled ready again): the future drives that service to readiness
/// before each retry.
///
/// # Examples
///
/// ```
/// use reflex_retry::RetryLayer;
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let layer = RetryLayer::builder().max_attempts(3).build()?;
/// let mut svc = layer.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n + 1) }));
/// assert_eq!(svc.ready().await?.call(41).await?, 42);
/// let _inner = svc.into_inner();
/// # Ok(())
/// # }
/// ```
pub struct Retry<S, P = DefaultPolicy, C = DefaultClassifier> {
    inner: S,
    shared: Arc<Shared<P, C>>,
}

// === impl Retry ===

impl<S, P, C> Retry<S, P, C> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<P, C>>) -> Self {
        Self { inner, shared }
    }

    reflex_core::inner_accessors!(inner: S);
}

impl<S, P, C, Request> Service<Request> for Retry<S, P, C>
where
    S: Service<Request> + Clone,
    S::Error: Into<BoxError>,
    P: Policy<Request, S::Response>,
    C: Classify<S::Response, BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Request, P, C>;

    /// Ready when the inner service is. Retries wait in the response
    /// future, never here.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        call(&mut self.inner, &self.shared, request)
    }
}

/// Makes the first attempt of `request` on the ready `inner` service: the
/// call of [`Retry`], and of the http retry service once the request's
/// body can be sent again.
#[inline]
pub(crate) fn call<S, Request, P, C>(
    inner: &mut S,
    shared: &Arc<Shared<P, C>>,
    request: Request,
) -> ResponseFuture<S, Request, P, C>
where
    S: Service<Request> + Clone,
    P: Policy<Request, S::Response>,
{
    if let Some(budget) = &shared.stats.budget {
        budget.deposit(|| shared.stats.now());
    }
    let copy = if shared.max_attempts > 1 {
        shared.policy.clone_request(&request)
    } else {
        None
    };
    let (timer, deadline) = shared.first_timer();
    let Some(copy) = copy else {
        // Sent once: nothing to keep, no service to move.
        return ResponseFuture::new(inner.call(request), None, timer, deadline);
    };
    // The ready service goes with the request; the clone left behind must
    // be polled ready again.
    let clone = inner.clone();
    let mut service = std::mem::replace(inner, clone);
    let future = service.call(request);
    ResponseFuture::new(
        future,
        Some(Retryable::new(service, copy, Arc::clone(shared))),
        timer,
        deadline,
    )
}

impl<S: Clone, P, C> Clone for Retry<S, P, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, P, C> fmt::Debug for Retry<S, P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("component", self.shared.component())
            .field("max_attempts", &self.shared.max_attempts)
            .finish_non_exhaustive()
    }
}
