//! [`Logs`]: the `tracing` events of a shed layer, and how often each is
//! written (see `docs/shed.md`, "Logs").
//!
//! A shed request is a `DEBUG` event, and a summary of the sheds goes out at
//! `WARN` at most once per [`SUMMARY_INTERVAL`](reflex_core::log_limit::SUMMARY_INTERVAL);
//! soft-limit excursions and limit changes are logged each time, up to
//! [`CHANGES_PER_INTERVAL`](reflex_core::log_limit::CHANGES_PER_INTERVAL)
//! per interval. A limiter is consulted only when its line's level is
//! enabled, so a disabled level costs one check.

use std::time::Duration;

use reflex_core::log_limit::{LogLimit, millis};
use reflex_core::{Component, RejectKind};
use tokio::time::Instant;
use tracing::Level;

use crate::estimator::Recomputed;
use crate::gradient::GradientEvent;

/// A layer's limiters, and the origin of their clock.
#[derive(Debug)]
pub(crate) struct Logs {
    origin: Instant,
    sheds: LogLimit,
    changes: LogLimit,
}

// === impl Logs ===

impl Logs {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            sheds: LogLimit::summary(),
            changes: LogLimit::changes(),
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// A request was shed.
    pub(crate) fn shed(
        &self,
        component: &Component,
        in_flight: usize,
        hard_limit: usize,
        retry_after: Duration,
    ) {
        tracing::debug!(
            %component,
            kind = RejectKind::Shed.as_str(),
            in_flight,
            hard_limit,
            retry_after_ms = millis(retry_after),
            "request shed"
        );
        if !tracing::enabled!(Level::WARN) {
            return;
        }
        if let Some(line) = self.sheds.record(self.now()) {
            tracing::warn!(
                %component,
                kind = RejectKind::Shed.as_str(),
                count = line.count,
                window_ms = line.window_ms(),
                hard_limit,
                "requests shed"
            );
        }
    }

    pub(crate) fn soft_limit_exceeded(
        &self,
        component: &Component,
        in_flight: usize,
        soft_limit: usize,
        hard_limit: usize,
    ) {
        if !tracing::enabled!(Level::WARN) {
            return;
        }
        if let Some(line) = self.changes.record(self.now()) {
            tracing::warn!(
                %component,
                in_flight,
                soft_limit,
                hard_limit,
                suppressed = line.suppressed(),
                "in-flight requests above the soft limit"
            );
        }
    }

    pub(crate) fn soft_limit_recovered(
        &self,
        component: &Component,
        in_flight: usize,
        soft_limit: usize,
    ) {
        if !tracing::enabled!(Level::INFO) {
            return;
        }
        if let Some(line) = self.changes.record(self.now()) {
            tracing::info!(
                %component,
                in_flight,
                soft_limit,
                suppressed = line.suppressed(),
                "in-flight requests back under the soft limit"
            );
        }
    }

    pub(crate) fn hard_limit_changed(&self, component: &Component, from: usize, to: usize) {
        if !tracing::enabled!(Level::INFO) {
            return;
        }
        if let Some(line) = self.changes.record(self.now()) {
            tracing::info!(
                %component,
                from,
                to,
                suppressed = line.suppressed(),
                "hard limit changed"
            );
        }
    }
}

/// An adaptive limit closed a window: `DEBUG`, one line per window
/// (a few per second at most), and its probes.
pub(crate) fn adaptive_window(
    component: &Component,
    from: usize,
    recomputed: &Recomputed,
    published: Option<usize>,
) {
    if !tracing::enabled!(Level::DEBUG) {
        return;
    }
    let summary = &recomputed.summary;
    let latency_ms = summary.latency_ns / 1e6;
    match recomputed.event {
        Some(GradientEvent::ProbeStarted) => tracing::debug!(
            %component,
            from,
            to = recomputed.limit,
            latency_ms,
            "no-load latency probe started"
        ),
        Some(GradientEvent::ProbeEnded) => tracing::debug!(
            %component,
            from,
            to = recomputed.limit,
            latency_ms,
            "no-load latency probe ended"
        ),
        Some(GradientEvent::Starved) => tracing::debug!(
            %component,
            from,
            to = recomputed.limit,
            successes = summary.successes,
            refused = summary.refused,
            given_up = summary.given_up,
            "calls did not come back: a starved window closed"
        ),
        Some(GradientEvent::Baseline) | None => {}
    }
    tracing::debug!(
        %component,
        from,
        to = recomputed.limit,
        in_force = published,
        latency_ms,
        in_flight = summary.in_flight,
        successes = summary.successes,
        drops = summary.drops,
        "adaptive limit recomputed"
    );
}
