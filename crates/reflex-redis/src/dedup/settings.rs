//! A fleet dedup layer's settings: their defaults and their checks.

use std::fmt;
use std::time::Duration;

use reflex_core::{Component, ConfigError, ConfigErrorKind, Sink};

/// The name configuration errors carry.
pub(crate) const LAYER: &str = "fleet-dedup";

/// The longest duration a setting takes.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// The largest result Redis stores (a string's limit).
const MAX_RESULT_BYTES: usize = 512 * 1024 * 1024;

/// A layer's checked settings.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) component: Component,
    pub(crate) sink: Sink,
    pub(crate) lease_ttl: Duration,
    pub(crate) result_ttl: Duration,
    pub(crate) max_result_bytes: usize,
    pub(crate) max_wait: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            component: Component::default(),
            sink: Sink::none(),
            lease_ttl: Duration::from_secs(2),
            result_ttl: Duration::from_secs(2),
            max_result_bytes: 64 * 1024,
            max_wait: Duration::from_secs(5),
        }
    }
}

impl Settings {
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        for (setting, value, least) in [
            ("lease_ttl", self.lease_ttl, Duration::from_millis(1)),
            ("result_ttl", self.result_ttl, Duration::from_millis(1)),
            ("max_wait", self.max_wait, Duration::ZERO),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(
                    LAYER,
                    setting,
                    ConfigErrorKind::Zero,
                    "must be above zero",
                ));
            }
            if value < least || value > MAX_DURATION {
                return Err(ConfigError::new(
                    LAYER,
                    setting,
                    ConfigErrorKind::OutOfRange,
                    format!("must be between {least:?} and an hour, got {value:?}"),
                ));
            }
        }
        if self.max_result_bytes == 0 {
            return Err(ConfigError::new(
                LAYER,
                "max_result_bytes",
                ConfigErrorKind::Zero,
                "must be at least 1",
            ));
        }
        if self.max_result_bytes > MAX_RESULT_BYTES {
            return Err(ConfigError::new(
                LAYER,
                "max_result_bytes",
                ConfigErrorKind::OutOfRange,
                "must be at most 512 MiB (a Redis string)",
            ));
        }
        Ok(())
    }

    /// A duration in whole milliseconds, as `PX` takes it (checked: 1 ms
    /// to an hour).
    pub(crate) fn millis(value: Duration) -> u64 {
        u64::try_from(value.as_millis()).unwrap_or(u64::MAX).max(1)
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("component", &self.component)
            .field("lease_ttl", &self.lease_ttl)
            .field("result_ttl", &self.result_ttl)
            .field("max_result_bytes", &self.max_result_bytes)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}
