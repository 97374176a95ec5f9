//! [`BreakerControl`] and [`ShedControl`]: how something outside a layer
//! (a witness's reflex, an operator's tool) steers it, without depending on
//! the layer's crate.

use crate::{BreakerState, ConfigError};

/// A circuit breaker steered from outside: `reflex-breaker`'s
/// `BreakerHandle` is one.
///
/// # Examples
///
/// ```
/// use std::sync::Mutex;
/// use reflex_core::{BreakerControl, BreakerState};
///
/// struct Fake(Mutex<BreakerState>);
///
/// impl BreakerControl for Fake {
///     fn state(&self) -> BreakerState { *self.0.lock().unwrap() }
///     fn force_open(&self) { *self.0.lock().unwrap() = BreakerState::ForcedOpen }
///     fn reset(&self) { *self.0.lock().unwrap() = BreakerState::Closed }
/// }
///
/// let breaker = Fake(Mutex::new(BreakerState::Closed));
/// breaker.force_open();
/// assert_eq!(breaker.state(), BreakerState::ForcedOpen);
/// ```
pub trait BreakerControl: Send + Sync + 'static {
    /// The state now.
    fn state(&self) -> BreakerState;

    /// Refuses every call until [`reset`](Self::reset).
    fn force_open(&self);

    /// Back to Closed, with empty counts.
    fn reset(&self);
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
