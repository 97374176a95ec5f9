//! Checking a [`BreakerConfig`]: every setting a builder refuses, and why.

use std::borrow::Cow;

use reflex_core::{ConfigError, ConfigErrorKind};

use crate::config::{
    BreakerConfig, LAYER, MAX_PROBES, MAX_WINDOW_BUCKETS, MAX_WINDOW_CALLS, Window,
};

/// `setting` is zero where it must not be; `reason` completes the sentence.
fn zero(setting: &'static str, reason: &'static str) -> ConfigError {
    ConfigError::new(LAYER, setting, ConfigErrorKind::Zero, reason)
}

/// `setting` is outside its range; `reason` completes the sentence.
fn out_of_range(setting: &'static str, reason: impl Into<Cow<'static, str>>) -> ConfigError {
    ConfigError::new(LAYER, setting, ConfigErrorKind::OutOfRange, reason)
}

/// A rate must be in (0, 1].
fn rate(setting: &'static str, rate: f64) -> Result<(), ConfigError> {
    if rate > 0.0 && rate <= 1.0 {
        Ok(())
    } else {
        Err(out_of_range(
            setting,
            format!("must be in (0, 1], got {rate}"),
        ))
    }
}

/// A number of probes must be in 1..=[`MAX_PROBES`].
fn probe_count(setting: &'static str, count: u32) -> Result<(), ConfigError> {
    if count == 0 {
        return Err(zero(setting, "must be at least 1"));
    }
    if count > MAX_PROBES {
        return Err(out_of_range(
            setting,
            format!("must be at most {MAX_PROBES}"),
        ));
    }
    Ok(())
}

// === impl BreakerConfig ===

impl BreakerConfig {
    /// The configuration, if every setting is valid.
    pub(crate) fn validate(self) -> Result<Self, ConfigError> {
        if self.consecutive_failures == Some(0) {
            return Err(zero("consecutive_failures", "must be at least 1"));
        }
        if let Some(failure_rate) = self.failure_rate {
            rate("failure_rate", failure_rate)?;
        }
        if let Some((slow_rate, duration)) = self.slow_call {
            rate("slow_calls", slow_rate)?;
            if duration.is_zero() {
                return Err(zero("slow_calls", "must be above zero"));
            }
        }
        if self.consecutive_failures.is_none() && !self.has_window() {
            return Err(ConfigError::new(
                LAYER,
                "failure_rate",
                ConfigErrorKind::Missing,
                "or consecutive_failures or slow_calls is required: a breaker with no trip condition never opens (use MetricsOnly for that)",
            ));
        }
        self.validate_window()?;
        if self.open_duration.is_zero() {
            return Err(zero("open_duration", "must be above zero"));
        }
        if let Some((factor, cap)) = self.open_backoff {
            if !(factor >= 1.0 && factor.is_finite()) {
                return Err(out_of_range(
                    "open_backoff",
                    format!("factor must be a finite number >= 1, got {factor}"),
                ));
            }
            if cap < self.open_duration {
                return Err(out_of_range(
                    "open_backoff",
                    "cap must not be below open_duration",
                ));
            }
        }
        probe_count("half_open_probes", self.probes)?;
        probe_count("probe_successes", self.probe_successes)?;
        if self.half_open_max_wait.is_zero() {
            return Err(zero("half_open_max_wait", "must be above zero"));
        }
        Ok(self)
    }

    /// The window and the minimum number of calls in it.
    fn validate_window(&self) -> Result<(), ConfigError> {
        match self.window {
            Window::Count { calls } => {
                if calls == 0 {
                    return Err(zero("count_window", "must hold at least 1 call"));
                }
                if calls > MAX_WINDOW_CALLS {
                    return Err(out_of_range(
                        "count_window",
                        format!("must hold at most {MAX_WINDOW_CALLS} calls"),
                    ));
                }
            }
            Window::Time { length, buckets } => {
                if length.is_zero() {
                    return Err(zero("time_window", "must be above zero"));
                }
                if buckets == 0 {
                    return Err(zero("time_window", "needs at least 1 bucket"));
                }
                if buckets > MAX_WINDOW_BUCKETS {
                    return Err(out_of_range(
                        "time_window",
                        format!("buckets must be in 1..={MAX_WINDOW_BUCKETS}, got {buckets}"),
                    ));
                }
                if length.as_nanos() / u128::from(buckets) == 0 {
                    return Err(out_of_range(
                        "time_window",
                        "buckets must be at least a nanosecond long",
                    ));
                }
            }
        }
        if self.minimum_calls == 0 {
            return Err(zero("minimum_calls", "must be at least 1"));
        }
        if let Window::Count { calls } = self.window {
            if self.minimum_calls > calls {
                return Err(out_of_range(
                    "minimum_calls",
                    format!(
                        "({}) must not exceed the count window ({calls}): the rates could never trip",
                        self.minimum_calls
                    ),
                ));
            }
        }
        Ok(())
    }
}
