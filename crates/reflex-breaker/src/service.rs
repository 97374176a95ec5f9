//! The [`CircuitBreak`] service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use reflex_core::{BoxError, Classify, DefaultClassifier};
use tower_service::Service;

use crate::admit::admit;
use crate::backend::Backend;
use crate::future::ResponseFuture;
use crate::memory::MemoryBackend;
use crate::shared::Shared;

/// Refuses calls while its breaker is open, and counts the outcome of the
/// calls it lets through. Built by [`CircuitBreakLayer`](crate::CircuitBreakLayer).
///
/// # Clone
///
/// Clones share the breaker. A service holds no readiness or permit of its
/// own, so a clone taken before `poll_ready` is as good as the original.
///
/// # Examples
///
/// ```
/// use reflex_breaker::CircuitBreakLayer;
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let layer = CircuitBreakLayer::builder().consecutive_failures(3).build()?;
/// let mut svc = layer.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n + 1) }));
/// assert_eq!(svc.ready().await?.call(41).await?, 42);
/// let _inner = svc.into_inner();
/// # Ok(())
/// # }
/// ```
pub struct CircuitBreak<S, C = DefaultClassifier, B = MemoryBackend> {
    inner: S,
    shared: Arc<Shared<C, B>>,
}

// === impl CircuitBreak ===

impl<S, C, B> CircuitBreak<S, C, B> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<C, B>>) -> Self {
        Self { inner, shared }
    }

    reflex_core::inner_accessors!(inner: S);
}

impl CircuitBreak<()> {
    /// A breaker layer with the default configuration: a shorthand for
    /// `CircuitBreakLayer::builder().build()`.
    ///
    /// # Errors
    ///
    /// None with the defaults; the `Result` is the builder's.
    ///
    /// ```
    /// let layer = reflex_breaker::CircuitBreak::layer()?;
    /// # let _ = layer;
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn layer() -> Result<crate::CircuitBreakLayer, reflex_core::ConfigError> {
        crate::CircuitBreakLayer::builder().build()
    }
}

impl<S, C, B, Request> Service<Request> for CircuitBreak<S, C, B>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, BoxError>,
    B: Backend,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, B>;

    /// Ready when the inner service is: an open breaker refuses from `call`,
    /// at once, and never waits.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        let inner = &mut self.inner;
        admit(&self.shared, || inner.call(request))
    }
}

impl<S: Clone, C, B> Clone for CircuitBreak<S, C, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, C, B: Backend> fmt::Debug for CircuitBreak<S, C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreak")
            .field("inner", &self.inner)
            .field("component", &self.shared.component)
            .field("state", &self.shared.backend.state())
            .finish()
    }
}
