//! The words of the breaker's signals: [`BreakerState`] and
//! [`TransitionReason`].

use std::fmt;

/// The state of a circuit breaker.
///
/// Closed admits, Open refuses, HalfOpen probes. The last three are set by
/// hand (through a breaker's handle) and stay until changed by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through and are counted; enough failures trip it open.
    Closed,
    /// Calls are refused at once until the open duration has passed.
    Open,
    /// A limited number of probe calls go through; their outcome closes or
    /// re-opens the breaker.
    HalfOpen,
    /// Set by hand: every call is refused until the breaker is reset.
    ForcedOpen,
    /// Set by hand: every call goes through and nothing is counted.
    Disabled,
    /// Set by hand: every call goes through and is counted, but the breaker
    /// never trips.
    MetricsOnly,
}

// === impl BreakerState ===

impl BreakerState {
    /// Every state, in the order they are declared: what a metric with a
    /// series for each state (one `1`, the others `0`) walks.
    ///
    /// ```
    /// use reflex_core::BreakerState;
    ///
    /// assert_eq!(BreakerState::ALL[0], BreakerState::Closed);
    /// assert!(BreakerState::ALL.contains(&BreakerState::MetricsOnly));
    /// ```
    pub const ALL: &'static [Self] = &[
        Self::Closed,
        Self::Open,
        Self::HalfOpen,
        Self::ForcedOpen,
        Self::Disabled,
        Self::MetricsOnly,
    ];

    /// A short, stable, lowercase name, fit for metric labels and logs.
    ///
    /// ```
    /// assert_eq!(reflex_core::BreakerState::HalfOpen.as_str(), "half_open");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
            Self::MetricsOnly => "metrics_only",
        }
    }

    /// `true` for the states that refuse calls (`Open`, `ForcedOpen`).
    /// A HalfOpen breaker refuses only beyond its probes.
    pub fn refuses(self) -> bool {
        matches!(self, Self::Open | Self::ForcedOpen)
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a circuit breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// Too many failures in a row.
    ConsecutiveFailures,
    /// The failure rate over the window reached its threshold.
    FailureRate,
    /// The slow-call rate over the window reached its threshold.
    SlowCallRate,
    /// The open duration passed: time to probe.
    OpenDurationElapsed,
    /// Enough probes succeeded.
    ProbesSucceeded,
    /// A probe failed (or was slow).
    ProbeFailed,
    /// Probes were admitted but none reported within the half-open maximum
    /// wait: the breaker re-opened rather than stay stuck.
    HalfOpenTimeout,
    /// Changed by hand through a handle (force, disable, reset, …).
    Manual,
    /// Opened from outside (a witness's reflex, an operator) through
    /// `BreakerControl::trip`, as if a trip condition had held: the open
    /// duration runs, then half-open probes decide recovery. Unlike
    /// [`Manual`](Self::Manual) ForcedOpen, no one has to reset it.
    Tripped,
}

// === impl TransitionReason ===

impl TransitionReason {
    /// A short, stable, lowercase name, fit for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::FailureRate => "failure_rate",
            Self::SlowCallRate => "slow_call_rate",
            Self::OpenDurationElapsed => "open_duration_elapsed",
            Self::ProbesSucceeded => "probes_succeeded",
            Self::ProbeFailed => "probe_failed",
            Self::HalfOpenTimeout => "half_open_timeout",
            Self::Manual => "manual",
            Self::Tripped => "tripped",
        }
    }
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
