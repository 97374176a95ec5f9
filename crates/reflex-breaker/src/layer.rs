//! [`CircuitBreakLayer`]: one breaker for the services it wraps.

use std::fmt;
use std::sync::Arc;

use reflex_core::{Control, DefaultClassifier, Handled};
use tower_layer::Layer;

use crate::backend::Backend;
use crate::builder::CircuitBreakBuilder;
use crate::handle::BreakerHandle;
use crate::memory::MemoryBackend;
use crate::service::CircuitBreak;
use crate::shared::Shared;

/// A circuit breaker for the services it wraps. See the [crate docs](crate).
///
/// # Clone
///
/// Clones share one breaker: every clone, and every service the layer
/// wraps, counts toward and is refused by the same state. Build one layer
/// per dependency.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_breaker::CircuitBreakLayer;
///
/// let breaker = CircuitBreakLayer::builder()
///     .component("payments")
///     .failure_rate(0.5)
///     .count_window(100)
///     .minimum_calls(20)
///     .consecutive_failures(5)
///     .open_duration(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(breaker.handle().state(), reflex_core::BreakerState::Closed);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub struct CircuitBreakLayer<C = DefaultClassifier, B = MemoryBackend> {
    shared: Arc<Shared<C, B>>,
}

// === impl CircuitBreakLayer ===

impl CircuitBreakLayer {
    /// Starts configuring a breaker.
    pub fn builder() -> CircuitBreakBuilder {
        CircuitBreakBuilder::new()
    }
}

impl<C, B: Backend> CircuitBreakLayer<C, B> {
    pub(crate) fn new(shared: Shared<C, B>) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }

    /// A handle to read the breaker's state and counts and set its state by
    /// hand.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(
            Arc::clone(&self.shared.backend) as Arc<dyn Backend>,
            self.shared.component.clone(),
        )
    }
}

impl<C, B> Clone for CircuitBreakLayer<C, B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, C, B> Layer<S> for CircuitBreakLayer<C, B> {
    type Service = CircuitBreak<S, C, B>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreak::new(inner, Arc::clone(&self.shared))
    }
}

/// The handle is the breaker's [`BreakerHandle`]; the control, the same
/// handle as a [`BreakerControl`](reflex_core::BreakerControl), for a
/// witness's reflexes to trip, throttle and reset it.
impl<C, B: Backend> Handled for CircuitBreakLayer<C, B> {
    type Handle = BreakerHandle;

    fn handle(&self) -> BreakerHandle {
        Self::handle(self)
    }

    fn control(&self) -> Option<Control> {
        Some(Control::Breaker(Arc::new(Self::handle(self))))
    }
}

impl<C, B: Backend> fmt::Debug for CircuitBreakLayer<C, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakLayer")
            .field("component", &self.shared.component)
            .field("state", &self.shared.backend.state())
            .finish_non_exhaustive()
    }
}
