//! [`Logs`]: the `tracing` events of a dedup layer, and how often each is
//! written (see `docs/dedup.md`, "Logs").
//!
//! What happens to one request is a `TRACE` event (it joined a call, it
//! was answered from the cache) or a `DEBUG` one (it made its own call, its
//! leader left, it gave up waiting, it was refused). Refusals and wait
//! timeouts are also summed up at most once per
//! [`SUMMARY_INTERVAL`](reflex_core::log_limit::SUMMARY_INTERVAL): at `WARN`
//! for timeouts and for a full table (more distinct keys than
//! `max_keys`), at `INFO` for `InProgress` (a duplicate refused, as
//! configured). Keys are request data and are never logged. A limiter is
//! consulted only when its line's level is enabled.

use std::fmt;
use std::time::Duration;

use reflex_core::log_limit::{LogLimit, millis};
use reflex_core::{Component, RejectKind};
use tokio::time::Instant;
use tracing::Level;

/// What the wait-timeout events call a waiter that gave up (not a
/// [`RejectKind`]: its caller gets a
/// [`WaitTimedOut`](crate::WaitTimedOut)).
const WAIT_TIMEOUT: &str = "wait_timeout";

/// One layer's limiters, and the origin of their clock.
pub(crate) struct Logs {
    origin: Instant,
    timeouts: LogLimit,
    full: LogLimit,
    in_progress: LogLimit,
}

// === impl Logs ===

impl Logs {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            timeouts: LogLimit::summary(),
            full: LogLimit::summary(),
            in_progress: LogLimit::summary(),
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// A request joined the call of another, as one of `waiters`.
    pub(crate) fn coalesced(component: &Component, waiters: usize) {
        tracing::trace!(%component, waiters, "request joined a shared call");
    }

    /// A request was answered from the cache (`stale`: past its TTL).
    pub(crate) fn cache_hit(component: &Component, stale: bool) {
        tracing::trace!(%component, stale, "request answered from the cache");
    }

    /// The cache could not keep an answer: heavier than the byte bound, or
    /// with no age left.
    pub(crate) fn not_kept(component: &Component, weight: usize, max_bytes: usize, ttl: Duration) {
        tracing::debug!(
            %component,
            weight,
            max_bytes,
            ttl_ms = millis(ttl),
            "answer not cached: over the byte bound or no age left"
        );
    }

    /// The cache evicted its `evicted` oldest answers to make room.
    pub(crate) fn evicted(component: &Component, evicted: usize) {
        tracing::trace!(%component, evicted, "cache evicted its oldest answers");
    }

    /// A follower got no copy of the call's answer (it could not be shared)
    /// and makes its own call.
    pub(crate) fn own_call(component: &Component) {
        tracing::debug!(%component, "answer not shareable: a follower makes its own call");
    }

    /// The request that started a call left (its caller dropped it) while
    /// others wait on: the call goes on for them.
    pub(crate) fn leader_left(component: &Component) {
        tracing::debug!(%component, "leader left: the shared call goes on for the others");
    }

    /// A shared call ended without an answer for this waiter (it panicked).
    pub(crate) fn aborted(component: &Component) {
        tracing::debug!(
            %component,
            kind = RejectKind::DedupAborted.as_str(),
            "shared call ended without an answer"
        );
    }

    /// A waiter gave up after `timeout` (`leader`: it started the call).
    #[cold]
    pub(crate) fn wait_timed_out(&self, component: &Component, timeout: Duration, leader: bool) {
        let timeout_ms = millis(timeout);
        tracing::debug!(
            %component,
            kind = WAIT_TIMEOUT,
            timeout_ms,
            leader,
            "wait on a shared call timed out"
        );
        if !tracing::enabled!(Level::WARN) {
            return;
        }
        if let Some(line) = self.timeouts.record(self.now()) {
            tracing::warn!(
                %component,
                kind = WAIT_TIMEOUT,
                count = line.count,
                window_ms = line.window_ms(),
                timeout_ms,
                "waits on shared calls timed out"
            );
        }
    }

    /// A request was refused: `InProgress` or `DedupFull`.
    #[cold]
    pub(crate) fn refused(&self, component: &Component, kind: RejectKind) {
        tracing::debug!(%component, kind = kind.as_str(), "request refused by dedup");
        if kind == RejectKind::DedupFull {
            if !tracing::enabled!(Level::WARN) {
                return;
            }
            if let Some(line) = self.full.record(self.now()) {
                tracing::warn!(
                    %component,
                    kind = kind.as_str(),
                    count = line.count,
                    window_ms = line.window_ms(),
                    "requests refused by dedup: too many distinct keys in flight"
                );
            }
        } else {
            if !tracing::enabled!(Level::INFO) {
                return;
            }
            if let Some(line) = self.in_progress.record(self.now()) {
                tracing::info!(
                    %component,
                    kind = kind.as_str(),
                    count = line.count,
                    window_ms = line.window_ms(),
                    "requests refused by dedup: identical request in progress"
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
