//! Checking a [`BreakerConfig`]: every setting a builder refuses, and why.

use reflex_core::{ConfigError, ConfigErrorKind};

use crate::config::{
    BreakerConfig, LAYER, MAX_PROBES, MAX_WINDOW_BUCKETS, MAX_WINDOW_CALLS, Window,
};

// === impl BreakerConfig ===

impl BreakerConfig {
    /// The configuration, if every setting is valid.
    pub(crate) fn validate(self) -> Result<Self, ConfigError> {
        fn err(setting: &'static str, kind: ConfigErrorKind, reason: String) -> ConfigError {
            ConfigError::new(LAYER, setting, kind, reason)
        }
        fn rate(setting: &'static str, rate: f64) -> Result<(), ConfigError> {
            if rate > 0.0 && rate <= 1.0 {
                Ok(())
            } else {
                Err(err(
                    setting,
                    ConfigErrorKind::OutOfRange,
                    format!("must be in (0, 1], got {rate}"),
                ))
            }
        }
        if self.consecutive_failures == Some(0) {
            return Err(err(
                "consecutive_failures",
                ConfigErrorKind::Zero,
                "must be at least 1".into(),
            ));
        }
        if let Some(rate_) = self.failure_rate {
            rate("failure_rate", rate_)?;
        }
        if let Some((rate_, duration)) = self.slow_call {
            rate("slow_calls", rate_)?;
            if duration.is_zero() {
                return Err(err(
                    "slow_calls",
                    ConfigErrorKind::Zero,
                    "must be above zero".into(),
                ));
            }
        }
        if self.consecutive_failures.is_none() && !self.has_window() {
            return Err(err(
                "failure_rate",
                ConfigErrorKind::Missing,
                "or consecutive_failures or slow_calls is required: a breaker with no trip condition never opens (use MetricsOnly for that)".into(),
            ));
        }
        match self.window {
            Window::Count { calls } => {
                if calls == 0 {
                    return Err(err(
                        "count_window",
                        ConfigErrorKind::Zero,
                        "must hold at least 1 call".into(),
                    ));
                }
                if calls > MAX_WINDOW_CALLS {
                    return Err(err(
                        "count_window",
                        ConfigErrorKind::OutOfRange,
                        format!("must hold at most {MAX_WINDOW_CALLS} calls"),
                    ));
                }
            }
            Window::Time { length, buckets } => {
                if length.is_zero() {
                    return Err(err(
                        "time_window",
                        ConfigErrorKind::Zero,
                        "must be above zero".into(),
                    ));
                }
                if buckets == 0 {
                    return Err(err(
                        "time_window",
                        ConfigErrorKind::Zero,
                        "needs at least 1 bucket".into(),
                    ));
                }
                if buckets > MAX_WINDOW_BUCKETS {
                    return Err(err(
                        "time_window",
                        ConfigErrorKind::OutOfRange,
                        format!("buckets must be in 1..={MAX_WINDOW_BUCKETS}, got {buckets}"),
                    ));
                }
                if length.as_nanos() / u128::from(buckets) == 0 {
                    return Err(err(
                        "time_window",
                        ConfigErrorKind::OutOfRange,
                        "buckets must be at least a nanosecond long".into(),
                    ));
                }
            }
        }
        if self.minimum_calls == 0 {
            return Err(err(
                "minimum_calls",
                ConfigErrorKind::Zero,
                "must be at least 1".into(),
            ));
        }
        if let Window::Count { calls } = self.window {
            if self.minimum_calls > calls {
                return Err(err(
                    "minimum_calls",
                    ConfigErrorKind::OutOfRange,
                    format!(
                        "({}) must not exceed the count window ({calls}): the rates could never trip",
                        self.minimum_calls
                    ),
                ));
            }
        }
        if self.open_duration.is_zero() {
            return Err(err(
                "open_duration",
                ConfigErrorKind::Zero,
                "must be above zero".into(),
            ));
        }
        if let Some((factor, cap)) = self.open_backoff {
            if !(factor >= 1.0 && factor.is_finite()) {
                return Err(err(
                    "open_backoff",
                    ConfigErrorKind::OutOfRange,
                    format!("factor must be a finite number >= 1, got {factor}"),
                ));
            }
            if cap < self.open_duration {
                return Err(err(
                    "open_backoff",
                    ConfigErrorKind::OutOfRange,
                    "cap must not be below open_duration".into(),
                ));
            }
        }
        if self.probes == 0 {
            return Err(err(
                "half_open_probes",
                ConfigErrorKind::Zero,
                "must be at least 1".into(),
            ));
        }
        if self.probes > MAX_PROBES {
            return Err(err(
                "half_open_probes",
                ConfigErrorKind::OutOfRange,
                format!("must be at most {MAX_PROBES}"),
            ));
        }
        if self.probe_successes == 0 {
            return Err(err(
                "probe_successes",
                ConfigErrorKind::Zero,
                "must be at least 1".into(),
            ));
        }
        if self.probe_successes > MAX_PROBES {
            return Err(err(
                "probe_successes",
                ConfigErrorKind::OutOfRange,
                format!("must be at most {MAX_PROBES}"),
            ));
        }
        if self.half_open_max_wait.is_zero() {
            return Err(err(
                "half_open_max_wait",
                ConfigErrorKind::Zero,
                "must be above zero".into(),
            ));
        }
        Ok(self)
    }
}
