//! The [`CircuitBreak`] service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use reflex_core::{BoxError, Classify, Component, DefaultClassifier, RejectKind, Rejected};
use tokio::time::Instant;
use tower_service::Service;

use crate::backend::Backend;
use crate::future::{Guard, ResponseFuture};
use crate::memory::MemoryBackend;

/// What a layer, its services and their futures share.
///
/// Aligned to a cache line so that it does not share one with the `Arc`'s
/// reference counts: every call increments and decrements those, and on
/// another core that would evict the fields every call reads.
#[repr(align(64))]
pub(crate) struct Shared<C, B> {
    pub(crate) backend: Arc<B>,
    pub(crate) classifier: C,
    pub(crate) component: Component,
    /// Latencies are measured from here, in nanoseconds.
    pub(crate) base: Instant,
    /// Failures that are echoes of a failure below count as failures.
    pub(crate) count_echoes: bool,
}

impl<C, B> Shared<C, B> {
    pub(crate) fn new(
        backend: Arc<B>,
        classifier: C,
        component: Component,
        count_echoes: bool,
    ) -> Self {
        Self {
            backend,
            classifier,
            component,
            base: Instant::now(),
            count_echoes,
        }
    }

    /// Nanoseconds since `base`, now (saturating far below the reserved
    /// values a guard uses).
    pub(crate) fn since_base(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX >> 1)
    }
}

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

/// Admits a call through `shared`'s breaker and makes its future: the
/// inner call's, holding a guard, or a refusal ready at once.
#[inline]
pub(crate) fn admit<F, C, B: Backend>(
    shared: &Arc<Shared<C, B>>,
    call: impl FnOnce() -> F,
) -> ResponseFuture<F, C, B> {
    match shared.backend.admit() {
        Ok(ticket) => {
            // The guard exists before the inner call: a panic in `call`
            // drops it, which gives back a probe slot.
            let guard = Guard::new(Arc::clone(shared), ticket);
            ResponseFuture::admitted(call(), guard)
        }
        Err(refusal) => {
            let kind = if refusal.is_throttled() {
                RejectKind::Throttled
            } else {
                RejectKind::CircuitOpen
            };
            let rejected = Rejected::new(kind, shared.component.clone());
            ResponseFuture::refused(match refusal.retry_after() {
                Some(after) => rejected.with_retry_after(after),
                None => rejected,
            })
        }
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
