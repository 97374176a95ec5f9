//! [`BreakerHandle`]: a breaker's live state, read and set by hand.

use std::fmt;
use std::sync::Arc;

use reflex_core::{BreakerState, Component};

use crate::backend::{Backend, ManualStateError, Metrics};

/// Reads a breaker's state and counts, and sets its state by hand.
///
/// Got from [`CircuitBreakLayer::handle`](crate::CircuitBreakLayer::handle).
/// Reflexes (the witness forcing breakers open during a cascade) and
/// operators use it.
///
/// # Clone
///
/// Clones read and steer the same breaker.
///
/// # Examples
///
/// ```
/// use reflex_breaker::CircuitBreakLayer;
/// use reflex_core::BreakerState;
///
/// let breaker = CircuitBreakLayer::builder().build()?;
/// let handle = breaker.handle();
/// handle.force_open();
/// assert_eq!(handle.state(), BreakerState::ForcedOpen);
/// handle.reset();
/// assert_eq!(handle.state(), BreakerState::Closed);
/// assert_eq!(handle.metrics().transitions_total, 2);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct BreakerHandle {
    backend: Arc<dyn Backend>,
    component: Component,
}

// === impl BreakerHandle ===

impl BreakerHandle {
    pub(crate) fn new(backend: Arc<dyn Backend>, component: Component) -> Self {
        Self { backend, component }
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        self.backend.state()
    }

    /// Counts and rates now: calls, failures and slow calls in the window,
    /// their rates, failures in a row, probes out, refusals and transitions
    /// since the breaker was built.
    pub fn metrics(&self) -> Metrics {
        self.backend.metrics()
    }

    /// The component the breaker guards.
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// Refuses every call until [`reset`](Self::reset) (or another manual
    /// state).
    pub fn force_open(&self) {
        self.set(BreakerState::ForcedOpen);
    }

    /// Lets every call through and counts nothing.
    pub fn disable(&self) {
        self.set(BreakerState::Disabled);
    }

    /// Lets every call through and counts them, but never trips.
    pub fn metrics_only(&self) {
        self.set(BreakerState::MetricsOnly);
    }

    /// Back to Closed with empty counts and the base open duration.
    pub fn reset(&self) {
        self.set(BreakerState::Closed);
    }

    /// Sets a manual state (or Closed).
    ///
    /// # Errors
    ///
    /// For `Open` and `HalfOpen`, which the breaker enters by itself.
    pub fn set_state(&self, state: BreakerState) -> Result<(), ManualStateError> {
        self.backend.set_state(state)
    }

    fn set(&self, state: BreakerState) {
        // Only the states the breaker enters by itself are refused.
        let set = self.backend.set_state(state);
        debug_assert!(set.is_ok(), "{state} is a manual state");
    }
}

impl fmt::Debug for BreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerHandle")
            .field("component", &self.component)
            .field("state", &self.state())
            .finish()
    }
}

impl reflex_core::BreakerControl for BreakerHandle {
    fn state(&self) -> BreakerState {
        Self::state(self)
    }

    fn force_open(&self) {
        Self::force_open(self);
    }

    fn reset(&self) {
        Self::reset(self);
    }
}
