//! [`BreakerHandle`]: a breaker's live state, read and set by hand.

use std::fmt;
use std::sync::Arc;

use reflex_core::{BreakerState, Component, ConfigError, ConfigErrorKind};

use crate::backend::Backend;
use crate::config::LAYER;
use crate::error::ManualStateError;
use crate::metrics::BreakerMetrics;

/// Reads a breaker's state and counts, sets its state by hand, trips it and
/// throttles it.
///
/// Got from [`CircuitBreakLayer::handle`](crate::CircuitBreakLayer::handle).
/// Reflexes (a witness acting on the edge of a failing dependency) and
/// operators use it, directly or as a [`BreakerControl`](reflex_core::BreakerControl).
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
    pub fn metrics(&self) -> BreakerMetrics {
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

    /// Opens the breaker now, as if its own trip condition had held: Open
    /// for its open duration (grown by the backoff, as any open), then
    /// half-open probes decide, as after any trip, whether it closes or
    /// opens again. Nobody has to reset it. The transition is reported with
    /// [`TransitionReason::Tripped`](reflex_core::TransitionReason::Tripped).
    ///
    /// Only a Closed breaker trips: an Open or HalfOpen one already refuses
    /// or probes, and a state set by hand (ForcedOpen, Disabled,
    /// MetricsOnly) is left as it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use reflex_breaker::CircuitBreakLayer;
    /// use reflex_core::BreakerState;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), reflex_core::ConfigError> {
    /// let handle = CircuitBreakLayer::builder()
    ///     .open_duration(Duration::from_secs(5))
    ///     .build()?
    ///     .handle();
    /// handle.trip();
    /// assert_eq!(handle.state(), BreakerState::Open);
    ///
    /// handle.force_open();
    /// handle.trip();
    /// assert_eq!(handle.state(), BreakerState::ForcedOpen, "set by hand: left alone");
    /// # Ok(())
    /// # }
    /// ```
    pub fn trip(&self) {
        self.backend.trip();
    }

    /// Throttles the calls the breaker admits while Closed, adaptively
    /// (client-side adaptive throttling, from Google's SRE book): with
    /// `Some(k)`, each call is refused with probability
    ///
    /// `p = max(0, (requests − k × accepts) / (requests + 1))`
    ///
    /// where, over the last two seconds, `requests` are the calls admitted
    /// that ended in a success or a failure and `accepts` the successes, as
    /// the classifier says (refused calls are not counted, unlike the
    /// book's rule: see the crate's docs). With a share `a` succeeding, `p`
    /// settles at about `1 − k × a`: nothing is refused while more than
    /// `1 / k` succeed. A larger `k` refuses later. `None` stops
    /// throttling; turning it on starts from an empty window.
    ///
    /// A throttled call is refused at once with a
    /// [`Rejected`](reflex_core::Rejected) of kind
    /// [`Throttled`](reflex_core::RejectKind::Throttled) and a
    /// `retry_after` of 250 ms; it is not a failure of the breaker's own
    /// rules. Open, HalfOpen and the manual states do not throttle (they
    /// refuse, probe, or are set by hand); the setting stays through them
    /// and applies again once the breaker is Closed.
    /// [`BreakerMetrics::throttled_total`] counts the throttled calls.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] ([`OutOfRange`](ConfigErrorKind::OutOfRange)) when
    /// `k` is not a finite number at least 1: the throttle is left as it
    /// was.
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_breaker::CircuitBreakLayer;
    ///
    /// let handle = CircuitBreakLayer::builder().build()?.handle();
    /// handle.throttle(Some(2.0))?;
    /// assert_eq!(handle.metrics().throttle, Some(2.0));
    /// assert_eq!(handle.metrics().throttle_probability, Some(0.0), "nothing failed yet");
    /// assert!(handle.throttle(Some(0.5)).is_err());
    /// handle.throttle(None)?;
    /// assert_eq!(handle.metrics().throttle, None);
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn throttle(&self, k: Option<f64>) -> Result<(), ConfigError> {
        if let Some(k) = k {
            if !(k.is_finite() && k >= 1.0) {
                return Err(ConfigError::new(
                    LAYER,
                    "throttle",
                    ConfigErrorKind::OutOfRange,
                    format!("k must be a finite number >= 1, got {k}"),
                ));
            }
        }
        self.backend.set_throttle(k);
        Ok(())
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

reflex_core::layer_handle!(
    /// The same numbers as the inherent [`metrics`](BreakerHandle::metrics).
    BreakerHandle => BreakerMetrics
);

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

    fn trip(&self) {
        Self::trip(self);
    }

    fn throttle(&self, k: Option<f64>) -> Result<(), ConfigError> {
        Self::throttle(self, k)
    }
}
