//! The `tracing` events of a retry layer (see `docs/retry.md`, "Logs").
//!
//! Retries and how a retried request ended are `DEBUG` events; a retry the
//! budget refuses is a `DEBUG` event too, and a summary of them goes out
//! at `WARN` at most once per
//! [`SUMMARY_INTERVAL`](reflex_core::log_limit::SUMMARY_INTERVAL) (a
//! budget that runs dry means retries are being cut in an outage, or the
//! budget is too tight). The limiter is consulted only when `WARN` is
//! enabled.

use std::time::Duration;

use reflex_core::RetryReason;
use reflex_core::log_limit::millis;
use tracing::Level;

use crate::stats::Stats;

/// What the budget-refusal events call the refusal (not a
/// [`RejectKind`](reflex_core::RejectKind): the caller gets the last
/// attempt's own result).
const BUDGET_EXHAUSTED: &str = "retry_budget_exhausted";

/// Attempt `attempt` is about to be made, after `delay`, because of
/// `reason`.
pub(crate) fn retrying(stats: &Stats, attempt: u32, delay: Duration, reason: RetryReason) {
    // A delay the failed attempt asked for: `Retry-After`, or an open
    // breaker's.
    let retry_after_ms =
        matches!(reason, RetryReason::RetryAfter | RetryReason::CircuitOpen).then(|| millis(delay));
    tracing::debug!(
        component = %stats.component,
        attempt,
        delay_ms = millis(delay),
        reason = reason.as_str(),
        retry_after_ms,
        "retrying"
    );
}

/// The budget refused attempt `attempt`.
#[cold]
pub(crate) fn budget_exhausted(stats: &Stats, attempt: u32) {
    let component = &stats.component;
    tracing::debug!(
        %component,
        kind = BUDGET_EXHAUSTED,
        attempt,
        "retry refused by the retry budget"
    );
    if !tracing::enabled!(Level::WARN) {
        return;
    }
    if let Some(line) = stats.budget_refusals.record(stats.now()) {
        tracing::warn!(
            %component,
            kind = BUDGET_EXHAUSTED,
            count = line.count,
            window_ms = line.window_ms(),
            "retries refused by the retry budget"
        );
    }
}

/// A request that was retried ended after `attempts` attempts, a success
/// (`recovered`) or not.
pub(crate) fn ended(stats: &Stats, attempts: u32, recovered: bool) {
    tracing::debug!(
        component = %stats.component,
        attempts,
        recovered,
        "retried request ended"
    );
}
