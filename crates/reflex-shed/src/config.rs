//! What a validated adaptive limit is, in the units the estimators count
//! in: nanoseconds, and limits as `f64` within [`Bounds`].

use std::time::Duration;

/// A validated adaptive limit, in the units the estimators count in
/// (nanoseconds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdaptiveConfig {
    pub(crate) floor: usize,
    pub(crate) ceiling: usize,
    pub(crate) initial: usize,
    pub(crate) window_ns: u64,
    pub(crate) min_samples: u64,
    pub(crate) algorithm: AlgorithmConfig,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum AlgorithmConfig {
    Gradient(GradientConfig),
    Aimd(AimdConfig),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct GradientConfig {
    pub(crate) tolerance: f64,
    pub(crate) smoothing: f64,
    pub(crate) probe_interval_ns: u64,
    pub(crate) probe_depth: f64,
    pub(crate) seed: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct AimdConfig {
    pub(crate) backoff: f64,
    pub(crate) increase: f64,
    pub(crate) timeout_ns: Option<u64>,
}

/// The floor and the ceiling, as the estimators count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bounds {
    pub(crate) floor: f64,
    pub(crate) ceiling: f64,
}

impl Bounds {
    /// `value` within the bounds (the floor for a NaN).
    pub(crate) fn clamp(self, value: f64) -> f64 {
        if value.is_nan() {
            return self.floor;
        }
        value.clamp(self.floor, self.ceiling)
    }
}

impl AdaptiveConfig {
    pub(crate) fn bounds(&self) -> Bounds {
        Bounds {
            floor: self.floor as f64,
            ceiling: self.ceiling as f64,
        }
    }
}

pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
