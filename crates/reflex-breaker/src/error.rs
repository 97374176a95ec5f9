//! The errors of the breaker's own API (a refused call is a
//! [`Rejected`](reflex_core::Rejected), from reflex-core).

use reflex_core::BreakerState;

/// [`Backend::set_state`](crate::Backend::set_state) (or
/// [`BreakerHandle::set_state`](crate::BreakerHandle::set_state)) was asked
/// for a state only the breaker enters: Open or HalfOpen.
///
/// # Examples
///
/// ```
/// use reflex_breaker::{CircuitBreakLayer, ManualStateError};
/// use reflex_core::BreakerState;
///
/// let handle = CircuitBreakLayer::builder().build()?.handle();
/// let err = handle.set_state(BreakerState::Open).unwrap_err();
/// assert_eq!(err, ManualStateError(BreakerState::Open));
/// assert_eq!(err.to_string(), "the breaker enters open by itself; it cannot be set by hand");
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the breaker enters {0} by itself; it cannot be set by hand")]
pub struct ManualStateError(pub BreakerState);
