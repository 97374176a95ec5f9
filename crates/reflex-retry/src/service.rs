//! The [`Retry`] service and what its layer, services and futures share.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use reflex_core::{BoxError, Classify, Component, Sink};
use tokio::time::Instant;
use tower_service::Service;

use crate::Policy;
use crate::backoff::Backoff;
use crate::future::ResponseFuture;
use crate::handle::Stats;

/// A delay function of the user's: `(retry, previous delay) -> delay`.
pub(crate) type DelayFn = Arc<dyn Fn(u32, Duration) -> Duration + Send + Sync>;

/// Where delays come from.
pub(crate) enum Delays {
    Backoff(Backoff),
    Custom { f: DelayFn, cap: Duration },
}

// === impl Delays ===

impl Delays {
    pub(crate) fn cap(&self) -> Duration {
        match self {
            Self::Backoff(backoff) => backoff.cap(),
            Self::Custom { cap, .. } => *cap,
        }
    }

    /// The delay before retry `retry` (1 for the first), never above the
    /// cap.
    pub(crate) fn delay(&self, retry: u32, previous: Duration, stats: &Stats) -> Duration {
        match self {
            Self::Backoff(backoff) => backoff.delay(retry, previous, stats.unit()),
            Self::Custom { f, cap } => f(retry, previous).min(*cap),
        }
    }
}

/// How far ahead the layer sets a timer; further is never: a deadline or
/// an attempt timeout beyond it is none, and a retry that would begin
/// beyond it is not made. A century is beyond any request, and keeps every
/// instant far from where `Instant` arithmetic (ours, or the timer's as it
/// rounds a deadline up) overflows.
pub(crate) const HORIZON: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `delay` after `now`, or `None` when that is beyond the [`HORIZON`].
#[inline]
pub(crate) fn after(now: Instant, delay: Duration) -> Option<Instant> {
    if delay > HORIZON {
        return None;
    }
    now.checked_add(delay)
}

/// What a layer, its services and their futures share.
pub(crate) struct Shared<P, C> {
    pub(crate) policy: P,
    pub(crate) classifier: C,
    pub(crate) sink: Sink,
    pub(crate) max_attempts: u32,
    pub(crate) delays: Delays,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    /// The longest wait for an open breaker below; `None`: no wait.
    pub(crate) open_breaker_wait: Option<Duration>,
    pub(crate) stats: Arc<Stats>,
}

impl<P, C> Shared<P, C> {
    pub(crate) fn component(&self) -> &Component {
        &self.stats.component
    }

    /// When the first attempt's timer fires, if it has one: the earlier of
    /// its own time and the deadline; and the deadline.
    #[inline]
    pub(crate) fn first_timer(&self) -> (Option<Instant>, Option<Instant>) {
        if self.attempt_timeout.is_none() && self.deadline.is_none() {
            return (None, None);
        }
        self.start_timers()
    }

    /// A deadline or timeout beyond the [`HORIZON`] (`Duration::MAX`,
    /// say) is none: it would never pass.
    #[cold]
    fn start_timers(&self) -> (Option<Instant>, Option<Instant>) {
        let now = Instant::now();
        let deadline = self.deadline.and_then(|d| after(now, d));
        (self.attempt_end(now, deadline), deadline)
    }

    /// When an attempt started at `now` times out, if it can.
    pub(crate) fn attempt_end(&self, now: Instant, deadline: Option<Instant>) -> Option<Instant> {
        let own = self.attempt_timeout.and_then(|t| after(now, t));
        match (own, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

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
pub struct Retry<S, P = crate::DefaultPolicy, C = reflex_core::DefaultClassifier> {
    inner: S,
    shared: Arc<Shared<P, C>>,
}

// === impl Retry ===

impl<S, P, C> Retry<S, P, C> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<P, C>>) -> Self {
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

impl Retry<()> {
    /// A retry layer with the default configuration: a shorthand for
    /// `RetryLayer::builder().build()`.
    ///
    /// # Errors
    ///
    /// None with the defaults; the `Result` is the builder's.
    ///
    /// ```
    /// let layer = reflex_retry::Retry::layer()?;
    /// # let _ = layer;
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn layer() -> Result<crate::RetryLayer, reflex_core::ConfigError> {
        crate::RetryLayer::builder().build()
    }
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
        let shared = &self.shared;
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
            return ResponseFuture::new(self.inner.call(request), None, timer, deadline);
        };
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let future = service.call(request);
        ResponseFuture::new(
            future,
            Some((service, copy, Arc::clone(shared))),
            timer,
            deadline,
        )
    }
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
