//! [`Logs`]: the `tracing` events of a breaker layer, and how often each is
//! written (see `docs/breaker.md`, "Logs").
//!
//! A refused request is a `DEBUG` event, and a summary of the refusals goes
//! out at `INFO` at most once per
//! [`SUMMARY_INTERVAL`](reflex_core::log_limit::SUMMARY_INTERVAL) (the
//! opening was the `WARN`). State changes are `WARN` (opened, forced open)
//! or `INFO` (every other), up to
//! [`CHANGES_PER_INTERVAL`](reflex_core::log_limit::CHANGES_PER_INTERVAL)
//! per interval for the whole layer, every key's included. A keyed
//! breaker's key is request data: it is only in `DEBUG` events. A limiter is
//! consulted only when its line's level is enabled.

use std::fmt;
use std::time::Duration;

use reflex_core::log_limit::{LogLimit, millis};
use reflex_core::{BreakerState, Component, RejectKind, TransitionReason};
use tokio::time::Instant;
use tracing::Level;

/// The key of a keyed layer's breaker, as a `tracing` field; `None` for a
/// component's breaker and for a keyed layer's default one.
pub(crate) type KeyField<'a> =
    Option<tracing::field::DisplayValue<&'a (dyn fmt::Display + Send + Sync)>>;

/// One layer's limiters (shared by every key's breaker), and the origin
/// of their clock.
pub(crate) struct Logs {
    origin: Instant,
    open_refusals: LogLimit,
    throttled: LogLimit,
    changes: LogLimit,
}

/// A breaker's change of state, as logged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Change {
    pub(crate) from: BreakerState,
    pub(crate) to: BreakerState,
    pub(crate) reason: TransitionReason,
    /// How long it stays open, when it opened.
    pub(crate) open_for: Option<Duration>,
}

// === impl Logs ===

impl Logs {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            open_refusals: LogLimit::summary(),
            throttled: LogLimit::summary(),
            changes: LogLimit::changes(),
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The `suppressed` field of a state-change line, when its level is
    /// `enabled` (the caller's `tracing::enabled!`, so the layer's change
    /// limiter is consulted only then) and the limiter lets the line out.
    fn change_line(&self, enabled: bool) -> Option<u64> {
        if !enabled {
            return None;
        }
        self.changes
            .record(self.now())
            .map(|line| line.suppressed())
    }

    /// A request was refused: the breaker is open (`CircuitOpen`) or its
    /// throttle dropped it (`Throttled`).
    #[cold]
    #[inline(never)]
    pub(crate) fn refused(
        &self,
        component: &Component,
        kind: RejectKind,
        retry_after: Option<Duration>,
    ) {
        let retry_after_ms = retry_after.map(millis);
        tracing::debug!(
            %component,
            kind = kind.as_str(),
            retry_after_ms,
            "request refused by the circuit breaker"
        );
        if !tracing::enabled!(Level::INFO) {
            return;
        }
        let limit = match kind {
            RejectKind::Throttled => &self.throttled,
            _ => &self.open_refusals,
        };
        if let Some(line) = limit.record(self.now()) {
            tracing::info!(
                %component,
                kind = kind.as_str(),
                count = line.count,
                window_ms = line.window_ms(),
                retry_after_ms,
                "requests refused by the circuit breaker"
            );
        }
    }

    /// A breaker changed state. `key`: the breaker of a keyed layer.
    pub(crate) fn changed(&self, component: &Component, key: Option<KeyField<'_>>, change: Change) {
        let Change {
            from,
            to,
            reason,
            open_for,
        } = change;
        let (from, to, reason) = (from.as_str(), to.as_str(), reason.as_str());
        let open_for_ms = open_for.map(millis);
        let keyed = key.is_some();
        if let Some(key) = key {
            tracing::debug!(
                %component,
                key,
                from,
                to,
                reason,
                open_for_ms,
                "keyed circuit breaker changed state"
            );
        }
        if change.to.refuses() {
            let Some(suppressed) = self.change_line(tracing::enabled!(Level::WARN)) else {
                return;
            };
            // Only an opening has an `open_for_ms`: a forced open has none.
            let message = match (keyed, change.to) {
                (true, _) => "a keyed circuit breaker opened",
                (false, BreakerState::ForcedOpen) => "circuit breaker forced open",
                (false, _) => "circuit breaker opened",
            };
            tracing::warn!(%component, from, to, reason, open_for_ms, suppressed, "{message}");
        } else {
            let Some(suppressed) = self.change_line(tracing::enabled!(Level::INFO)) else {
                return;
            };
            let message = if keyed {
                "a keyed circuit breaker changed state"
            } else {
                "circuit breaker changed state"
            };
            tracing::info!(%component, from, to, reason, suppressed, "{message}");
        }
    }

    /// A breaker's throttle was set to `k`, or taken off (`None`).
    pub(crate) fn throttle(
        &self,
        component: &Component,
        key: Option<KeyField<'_>>,
        k: Option<f64>,
    ) {
        if let Some(key) = key {
            tracing::debug!(%component, key, k, "keyed circuit breaker throttle set");
        }
        let Some(suppressed) = self.change_line(tracing::enabled!(Level::INFO)) else {
            return;
        };
        match k {
            Some(k) => tracing::info!(%component, k, suppressed, "circuit breaker throttling"),
            None => tracing::info!(%component, suppressed, "circuit breaker no longer throttling"),
        }
    }
}

impl fmt::Debug for Logs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logs").finish_non_exhaustive()
    }
}
