//! [`Logs`]: the `tracing` events of a slot layer, and how often each is
//! written (see `docs/slot.md`, "Logs").
//!
//! Every admission decision but an idle slot's start is a `DEBUG` event:
//! queued, started after waiting, replaced, refused (`SlotBusy`,
//! `SlotQueueFull`), abandoned. Refusals are also summed up at most once per
//! [`SUMMARY_INTERVAL`](reflex_core::log_limit::SUMMARY_INTERVAL): at `INFO`
//! for `SlotBusy` (`DropIfRunning` doing its job), at `WARN` for
//! `SlotQueueFull` (more waiting than the queues hold). Slot keys are
//! request data and are never logged. A limiter is consulted only when its
//! line's level is enabled.

use std::fmt;
use std::time::Duration;

use reflex_core::log_limit::LogLimit;
use reflex_core::{Component, RejectKind};
use tokio::time::Instant;
use tracing::Level;

/// One layer's limiters, and the origin of their clock.
pub(crate) struct Logs {
    origin: Instant,
    busy: LogLimit,
    queue_full: LogLimit,
}

// === impl Logs ===

impl Logs {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            busy: LogLimit::summary(),
            queue_full: LogLimit::summary(),
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// A request joined its slot's queue, `depth` deep.
    pub(crate) fn queued(component: &Component, depth: usize) {
        tracing::debug!(%component, depth, "request queued for its slot");
    }

    /// A request that waited took its slot.
    pub(crate) fn started_after_waiting(component: &Component) {
        tracing::debug!(%component, "queued request took its slot");
    }

    /// A newer request replaced a running (`was_running`) or waiting one.
    pub(crate) fn replaced(component: &Component, was_running: bool) {
        tracing::debug!(
            %component,
            kind = RejectKind::Replaced.as_str(),
            was_running,
            "request replaced by a newer one"
        );
    }

    /// `count` waiters left their queue because their callers were gone.
    pub(crate) fn abandoned(component: &Component, count: u64) {
        tracing::debug!(%component, count, "queued requests abandoned by their callers");
    }

    /// A request was refused: `SlotBusy` or `SlotQueueFull`.
    #[cold]
    pub(crate) fn refused(&self, component: &Component, kind: RejectKind) {
        tracing::debug!(%component, kind = kind.as_str(), "request refused by its slot");
        if kind == RejectKind::SlotQueueFull {
            if !tracing::enabled!(Level::WARN) {
                return;
            }
            if let Some(line) = self.queue_full.record(self.now()) {
                tracing::warn!(
                    %component,
                    kind = kind.as_str(),
                    count = line.count,
                    window_ms = line.window_ms(),
                    "requests refused: slot queues full"
                );
            }
        } else {
            if !tracing::enabled!(Level::INFO) {
                return;
            }
            if let Some(line) = self.busy.record(self.now()) {
                tracing::info!(
                    %component,
                    kind = kind.as_str(),
                    count = line.count,
                    window_ms = line.window_ms(),
                    "requests refused: slot busy"
                );
            }
        }
    }
}

impl fmt::Debug for Logs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logs").finish_non_exhaustive()
    }
}
