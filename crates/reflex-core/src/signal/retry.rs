//! The word of the retry layer's signals: [`RetryReason`].

use std::fmt;

/// Why the retry layer retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryReason {
    /// The attempt ended in an error the policy retries.
    Error,
    /// The attempt's response was a failure the policy retries.
    Response,
    /// The response said when to retry (`Retry-After`), and the delay is
    /// what it said.
    RetryAfter,
    /// The attempt ran out of its per-attempt time.
    AttemptTimeout,
    /// A circuit breaker below refused the attempt, and the delay is the
    /// time until it probes.
    CircuitOpen,
}

// === impl RetryReason ===

impl RetryReason {
    /// A short, stable, lowercase name, fit for metric labels and logs.
    ///
    /// ```
    /// assert_eq!(reflex_core::RetryReason::RetryAfter.as_str(), "retry_after");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Response => "response",
            Self::RetryAfter => "retry_after",
            Self::AttemptTimeout => "attempt_timeout",
            Self::CircuitOpen => "circuit_open",
        }
    }
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
