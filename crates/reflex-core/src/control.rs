//! [`BreakerControl`] and [`ShedControl`]: how something outside a layer
//! (a witness's reflex, an operator's tool) steers it, without depending on
//! the layer's crate.

use crate::{BreakerState, ConfigError};

/// A circuit breaker steered from outside: `reflex-breaker`'s
/// `BreakerHandle` is one.
///
/// Two ways to stop calls, for two situations. A dependency that fails
/// every call (a blackout) is best [`trip`](Self::trip)ped: the breaker
/// opens as if its own rule had tripped, and its half-open probes find out
/// when the dependency is back, whoever tripped it. A dependency that fails
/// a share of its calls (a brownout) is best [`throttle`](Self::throttle)d:
/// the calls that would succeed still go through. [`force_open`](Self::force_open)
/// is for an operator who knows better: nothing gets through, nothing is
/// probed, until [`reset`](Self::reset).
///
/// All methods are required: none has an honest default. A control that
/// cannot probe cannot trip (`force_open` in its place would keep the
/// dependency dark until someone resets it, the very thing `trip` avoids),
/// and one that cannot throttle should refuse to, as its own error says.
///
/// # Examples
///
/// ```
/// use std::sync::Mutex;
/// use reflex_core::{BreakerControl, BreakerState, ConfigError, ConfigErrorKind};
///
/// struct Fake(Mutex<(BreakerState, Option<f64>)>);
///
/// impl BreakerControl for Fake {
///     fn state(&self) -> BreakerState { self.0.lock().unwrap().0 }
///     fn force_open(&self) { self.0.lock().unwrap().0 = BreakerState::ForcedOpen }
///     fn reset(&self) { self.0.lock().unwrap().0 = BreakerState::Closed }
///     fn trip(&self) {
///         let mut state = self.0.lock().unwrap();
///         if state.0 == BreakerState::Closed {
///             state.0 = BreakerState::Open;
///         }
///     }
///     fn throttle(&self, k: Option<f64>) -> Result<(), ConfigError> {
///         if k.is_some_and(|k| !(k.is_finite() && k >= 1.0)) {
///             return Err(ConfigError::new(
///                 "breaker", "throttle", ConfigErrorKind::OutOfRange, "k must be finite, >= 1",
///             ));
///         }
///         self.0.lock().unwrap().1 = k;
///         Ok(())
///     }
/// }
///
/// let breaker = Fake(Mutex::new((BreakerState::Closed, None)));
/// breaker.trip();
/// assert_eq!(breaker.state(), BreakerState::Open);
/// assert!(breaker.throttle(Some(0.5)).is_err());
/// breaker.throttle(Some(2.0))?;
/// # Ok::<_, ConfigError>(())
/// ```
pub trait BreakerControl: Send + Sync + 'static {
    /// The state now.
    fn state(&self) -> BreakerState;

    /// Refuses every call until [`reset`](Self::reset): no probe, no end
    /// but a reset.
    fn force_open(&self);

    /// Back to Closed, with empty counts.
    fn reset(&self);

    /// Opens a Closed breaker now, as if its own trip condition had held:
    /// it stays open its open duration, then half-open probes decide
    /// whether it closes or opens again, as for any trip. The transition's
    /// reason is [`TransitionReason::Tripped`](crate::TransitionReason::Tripped).
    ///
    /// Does nothing unless Closed: an Open or HalfOpen breaker already
    /// refuses or probes, and a state set by hand (ForcedOpen, Disabled,
    /// MetricsOnly) is the operator's and stays.
    fn trip(&self);

    /// Throttles the calls a Closed breaker admits, adaptively: with
    /// `Some(k)`, each call is refused with probability
    /// `max(0, (requests − k × accepts) / (requests + 1))` over a recent
    /// window (client-side adaptive throttling, from Google's SRE book), so
    /// nothing is refused while more than `1 / k` of the calls succeed.
    /// `None` stops throttling.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `k` is not a finite number at least 1 (the
    /// throttle is left as it was), or when the breaker cannot throttle.
    fn throttle(&self, k: Option<f64>) -> Result<(), ConfigError>;
}

/// A concurrency shed layer steered from outside: `reflex-shed`'s
/// `ShedHandle` is one.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use reflex_core::{ConfigError, ConfigErrorKind, ShedControl};
///
/// struct Fake(AtomicUsize);
///
/// impl ShedControl for Fake {
///     fn hard_limit(&self) -> usize { self.0.load(Ordering::Relaxed) }
///     fn set_hard_limit(&self, limit: usize) -> Result<(), ConfigError> {
///         if limit == 0 {
///             return Err(ConfigError::new("shed", "hard_limit", ConfigErrorKind::Zero, "at least 1"));
///         }
///         self.0.store(limit, Ordering::Relaxed);
///         Ok(())
///     }
/// }
///
/// let shed = Fake(AtomicUsize::new(64));
/// shed.set_hard_limit(32)?;
/// assert_eq!(shed.hard_limit(), 32);
/// # Ok::<_, ConfigError>(())
/// ```
pub trait ShedControl: Send + Sync + 'static {
    /// The hard limit in force.
    fn hard_limit(&self) -> usize;

    /// Changes the hard limit.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the layer refuses the limit (zero).
    fn set_hard_limit(&self, limit: usize) -> Result<(), ConfigError>;
}
