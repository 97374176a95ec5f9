//! [`Settings`]: what a retry builder was told, its defaults, and the one
//! place they are checked and turned into a layer.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use reflex_core::{Component, ConfigError, ConfigErrorKind, Sink};

use crate::LAYER;
use crate::backoff::{Backoff, DelayFn, Delays, Jitter};
use crate::budget::RetryBudget;
use crate::layer::RetryLayer;
use crate::shared::Shared;
use crate::stats::Stats;

/// Everything a retry builder holds but the policy, the classifier and
/// how it takes requests, not yet validated.
pub(crate) struct Settings {
    pub(crate) component: Component,
    pub(crate) sink: Sink,
    pub(crate) max_attempts: u32,
    pub(crate) base: Duration,
    pub(crate) multiplier: f64,
    pub(crate) cap: Duration,
    pub(crate) jitter: Jitter,
    pub(crate) delay_fn: Option<DelayFn>,
    /// `None`: no budget.
    pub(crate) budget: Option<BudgetSettings>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) open_breaker_wait: Option<Duration>,
}

/// The arguments of [`RetryBuilder::budget`](crate::RetryBuilder::budget).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BudgetSettings {
    pub(crate) ratio: f64,
    pub(crate) min_per_sec: u32,
    pub(crate) ttl: Duration,
}

// === impl Settings ===

impl Default for Settings {
    /// The defaults [`RetryBuilder`](crate::RetryBuilder)'s docs list.
    fn default() -> Self {
        Self {
            component: Component::default(),
            sink: Sink::none(),
            max_attempts: 3,
            base: Duration::from_millis(100),
            multiplier: 2.0,
            cap: Duration::from_secs(60),
            jitter: Jitter::Full,
            delay_fn: None,
            budget: Some(BudgetSettings {
                ratio: 0.2,
                min_per_sec: 10,
                ttl: Duration::from_secs(10),
            }),
            attempt_timeout: None,
            deadline: None,
            open_breaker_wait: None,
        }
    }
}

impl Settings {
    /// Checks the settings and builds the layer that retries with `policy`
    /// and `classifier`.
    pub(crate) fn layer<P, C>(
        self,
        policy: P,
        classifier: C,
    ) -> Result<RetryLayer<P, C>, ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::new(
                LAYER,
                "max_attempts",
                ConfigErrorKind::Zero,
                "at least one attempt is needed",
            ));
        }
        for (setting, duration) in [
            ("attempt_timeout", self.attempt_timeout),
            ("deadline", self.deadline),
            ("wait_for_open_breaker", self.open_breaker_wait),
        ] {
            if duration.is_some_and(|d| d.is_zero()) {
                return Err(ConfigError::new(
                    LAYER,
                    setting,
                    ConfigErrorKind::Zero,
                    "must be above zero",
                ));
            }
        }
        let backoff = Backoff::new(self.base, self.multiplier, self.cap, self.jitter)?;
        if self.open_breaker_wait.is_some_and(|wait| wait > self.cap) {
            return Err(ConfigError::new(
                LAYER,
                "wait_for_open_breaker",
                ConfigErrorKind::OutOfRange,
                "must not be above max_delay, the cap on every wait before a retry",
            ));
        }
        let delays = match self.delay_fn {
            Some(f) => Delays::Custom { f, cap: self.cap },
            None => Delays::Backoff(backoff),
        };
        let budget = self
            .budget
            .map(|b| RetryBudget::new(b.ratio, b.min_per_sec, b.ttl))
            .transpose()?;
        let seed = RandomState::new().hash_one(0u8);
        Ok(RetryLayer {
            shared: Arc::new(Shared {
                policy,
                classifier,
                sink: self.sink,
                max_attempts: self.max_attempts,
                delays,
                attempt_timeout: self.attempt_timeout,
                deadline: self.deadline,
                open_breaker_wait: self.open_breaker_wait,
                stats: Arc::new(Stats::new(self.component, budget, seed)),
            }),
        })
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("component", &self.component)
            .field("max_attempts", &self.max_attempts)
            .field("base", &self.base)
            .field("multiplier", &self.multiplier)
            .field("cap", &self.cap)
            .field("jitter", &self.jitter)
            .field("delay_fn", &self.delay_fn.as_ref().map(|_| "custom"))
            .field("budget", &self.budget)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("deadline", &self.deadline)
            .field("open_breaker_wait", &self.open_breaker_wait)
            .finish_non_exhaustive()
    }
}
