//! [`RetryLayer`]: the built layer.

use std::fmt;
use std::sync::Arc;

use reflex_core::{DefaultClassifier, Handled};
use tower_layer::Layer;

use crate::handle::RetryHandle;
use crate::policy::DefaultPolicy;
use crate::service::Retry;
use crate::shared::Shared;

/// Retries failed calls of the services it wraps, within a budget. See
/// the [crate docs](crate).
///
/// # Clone
///
/// Clones share one budget and one set of counts: build one layer per
/// dependency, and clone it for every service that calls that dependency.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_retry::{Jitter, RetryLayer};
///
/// let retry = RetryLayer::builder()
///     .component("payments")
///     .max_attempts(4)
///     .backoff(Duration::from_millis(50), 2.0)
///     .jitter(Jitter::Equal)
///     .budget(0.1, 5, Duration::from_secs(10))
///     .attempt_timeout(Duration::from_millis(500))
///     .deadline(Duration::from_secs(3))
///     .build()?;
/// assert_eq!(retry.handle().metrics().retries, 0);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub struct RetryLayer<P = DefaultPolicy, C = DefaultClassifier> {
    pub(crate) shared: Arc<Shared<P, C>>,
}

// === impl RetryLayer ===

impl<P, C> RetryLayer<P, C> {
    /// A handle to read what the layer did and the budget it has left.
    pub fn handle(&self) -> RetryHandle {
        RetryHandle::new(Arc::clone(&self.shared.stats))
    }
}

impl<P, C> Clone for RetryLayer<P, C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, P, C> Layer<S> for RetryLayer<P, C> {
    type Service = Retry<S, P, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, Arc::clone(&self.shared))
    }
}

/// The handle; nothing for a witness's reflexes to steer.
impl<P, C> Handled for RetryLayer<P, C> {
    type Handle = RetryHandle;

    fn handle(&self) -> RetryHandle {
        Self::handle(self)
    }
}

impl<P, C> fmt::Debug for RetryLayer<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("component", self.shared.component())
            .field("max_attempts", &self.shared.max_attempts)
            .field("attempt_timeout", &self.shared.attempt_timeout)
            .field("deadline", &self.shared.deadline)
            .field("open_breaker_wait", &self.shared.open_breaker_wait)
            .finish_non_exhaustive()
    }
}
