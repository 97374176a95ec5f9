//! How long to wait before each retry: [`Backoff`] and [`Jitter`], or a
//! delay function of the user's.

use std::sync::Arc;
use std::time::Duration;

use reflex_core::{ConfigError, ConfigErrorKind};

use crate::LAYER;

/// How the delay is spread around its exponential ceiling, after AWS's
/// "Exponential Backoff And Jitter": jitter keeps clients that failed
/// together from retrying together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Exactly the ceiling: `min(cap, base × multiplier^(n−1))`.
    None,
    /// Uniform in `[0, ceiling]`.
    #[default]
    Full,
    /// Uniform in `[ceiling / 2, ceiling]`.
    Equal,
    /// Uniform in `[base, 3 × previous delay]`, capped: each delay grows
    /// from the one before rather than from the retry number.
    Decorrelated,
}

/// Exponential backoff with a cap and jitter.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_retry::{Backoff, Jitter};
///
/// let backoff = Backoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(60), Jitter::None)?;
/// assert_eq!(backoff.delay(1, Duration::ZERO, 0.5), Duration::from_millis(100));
/// assert_eq!(backoff.delay(4, Duration::ZERO, 0.5), Duration::from_millis(800));
/// assert_eq!(backoff.delay(40, Duration::ZERO, 0.5), Duration::from_secs(60));
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    multiplier: f64,
    cap: Duration,
    jitter: Jitter,
}

// === impl Backoff ===

impl Backoff {
    /// Delays growing from `base` by `multiplier` per retry, never above
    /// `cap`, spread by `jitter`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `base` is zero, `multiplier` is below 1 or not
    /// finite, or `cap` is below `base`.
    pub fn new(
        base: Duration,
        multiplier: f64,
        cap: Duration,
        jitter: Jitter,
    ) -> Result<Self, ConfigError> {
        if base.is_zero() {
            return Err(ConfigError::new(
                LAYER,
                "backoff",
                ConfigErrorKind::Zero,
                "base must be above zero",
            ));
        }
        if !(multiplier.is_finite() && multiplier >= 1.0) {
            return Err(ConfigError::new(
                LAYER,
                "backoff",
                ConfigErrorKind::OutOfRange,
                format!("multiplier must be a finite number >= 1, got {multiplier}"),
            ));
        }
        if cap < base {
            return Err(ConfigError::new(
                LAYER,
                "backoff",
                ConfigErrorKind::OutOfRange,
                "cap must not be below base",
            ));
        }
        Ok(Self {
            base,
            multiplier,
            cap,
            jitter,
        })
    }

    /// The cap on every delay.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The un-jittered delay before retry `retry` (1 for the first retry):
    /// `min(cap, base × multiplier^(retry−1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let grown = self.base.as_secs_f64() * self.multiplier.powi(exponent);
        match Duration::try_from_secs_f64(grown) {
            Ok(grown) if grown < self.cap => grown,
            // Beyond the cap, or beyond any `Duration`.
            _ => self.cap,
        }
    }

    /// The delay before retry `retry` (1 for the first), given the delay
    /// before the previous retry (`Duration::ZERO` for the first; only
    /// decorrelated jitter reads it) and a uniform sample `unit` in `[0, 1)`
    /// (values outside are clamped). Never above the cap.
    pub fn delay(&self, retry: u32, previous: Duration, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let delay = match self.jitter {
            Jitter::None => self.ceiling(retry),
            Jitter::Full => share(self.ceiling(retry), unit),
            Jitter::Equal => {
                let ceiling = self.ceiling(retry);
                ceiling / 2 + share(ceiling - ceiling / 2, unit)
            }
            Jitter::Decorrelated => {
                let high = previous.max(self.base).saturating_mul(3).min(self.cap);
                self.base
                    .saturating_add(share(high.saturating_sub(self.base), unit))
            }
        };
        delay.min(self.cap)
    }
}

/// `unit` (in `[0, 1]`) of `duration`, never above it: `Duration::mul_f64`
/// panics when rounding through `f64` takes a duration near
/// `Duration::MAX` past it.
fn share(duration: Duration, unit: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() * unit)
        .map_or(duration, |share| share.min(duration))
}

/// A delay function of the user's: `(retry, previous delay) -> delay`.
pub(crate) type DelayFn = Arc<dyn Fn(u32, Duration) -> Duration + Send + Sync>;

/// Where a layer's delays come from.
pub(crate) enum Delays {
    Backoff(Backoff),
    Custom { f: DelayFn, cap: Duration },
}

// === impl Delays ===

impl Delays {
    /// The longest delay before a retry.
    pub(crate) fn cap(&self) -> Duration {
        match self {
            Self::Backoff(backoff) => backoff.cap(),
            Self::Custom { cap, .. } => *cap,
        }
    }

    /// The delay before retry `retry` (1 for the first), never above the
    /// cap; `unit` draws the jitter's uniform sample, when one is needed.
    pub(crate) fn delay(
        &self,
        retry: u32,
        previous: Duration,
        unit: impl FnOnce() -> f64,
    ) -> Duration {
        match self {
            Self::Backoff(backoff) => backoff.delay(retry, previous, unit()),
            Self::Custom { f, cap } => f(retry, previous).min(*cap),
        }
    }
}
