//! [`BreakerMetrics`]: a breaker's live numbers.

use reflex_core::BreakerState;

/// A breaker's live numbers: its state, the counts and rates of its
/// window, and its totals since it was built. From
/// [`BreakerHandle::metrics`](crate::BreakerHandle::metrics) (also the
/// handle's [`LayerHandle::metrics`](reflex_core::LayerHandle::metrics)).
///
/// # Examples
///
/// ```
/// use reflex_breaker::{BreakerMetrics, CircuitBreakLayer};
/// use reflex_core::BreakerState;
///
/// let handle = CircuitBreakLayer::builder().build()?.handle();
/// let metrics: BreakerMetrics = handle.metrics();
/// assert_eq!(metrics.state, BreakerState::Closed);
/// assert_eq!((metrics.calls, metrics.failure_rate), (0, None));
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BreakerMetrics {
    /// The state now.
    pub state: BreakerState,
    /// Calls in the window (success or failure; ignored calls excluded).
    /// Always 0 for a breaker with no rate configured (consecutive failures
    /// only): it keeps no window.
    pub calls: u32,
    /// Failures in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow_calls: u32,
    /// `failures / calls`, `None` on an empty window.
    pub failure_rate: Option<f64>,
    /// `slow_calls / calls`, `None` on an empty window.
    pub slow_call_rate: Option<f64>,
    /// Failures in a row, now.
    pub consecutive_failures: u32,
    /// Probes running now (half-open).
    pub probes_in_flight: u32,
    /// Calls refused because the breaker was open, forced open, or
    /// half-open with every probe out, since it was built (throttled calls
    /// are counted apart, in [`throttled_total`](Self::throttled_total)).
    pub rejected_total: u64,
    /// The throttle's multiplier `k`, while throttling is on.
    pub throttle: Option<f64>,
    /// The probability that a call asking now is refused by the throttle
    /// (while Closed): `max(0, (requests − k × accepts) / (requests + 1))`
    /// over the throttle's window. `None` while throttling is off.
    pub throttle_probability: Option<f64>,
    /// Calls refused by the throttle since the breaker was built.
    pub throttled_total: u64,
    /// State changes since the breaker was built.
    pub transitions_total: u64,
}

// === impl BreakerMetrics ===

impl BreakerMetrics {
    /// Metrics of a breaker in `state` with nothing counted yet: what a
    /// [`Backend`](crate::Backend) of another crate starts from (the struct
    /// is `#[non_exhaustive]`, so it cannot be written as a literal there),
    /// setting the fields it keeps.
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_breaker::BreakerMetrics;
    /// use reflex_core::BreakerState;
    ///
    /// let mut metrics = BreakerMetrics::new(BreakerState::Open);
    /// metrics.rejected_total = 12;
    /// assert_eq!((metrics.state, metrics.calls, metrics.rejected_total), (BreakerState::Open, 0, 12));
    /// ```
    pub fn new(state: BreakerState) -> Self {
        Self {
            state,
            calls: 0,
            failures: 0,
            slow_calls: 0,
            failure_rate: None,
            slow_call_rate: None,
            consecutive_failures: 0,
            probes_in_flight: 0,
            rejected_total: 0,
            throttle: None,
            throttle_probability: None,
            throttled_total: 0,
            transitions_total: 0,
        }
    }
}
