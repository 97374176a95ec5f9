//! [`Shared`]: what a retry layer, its services and their futures share.

use std::sync::Arc;
use std::time::Duration;

use reflex_core::{Component, Sink};
use tokio::time::Instant;

use crate::backoff::Delays;
use crate::stats::Stats;
use crate::timer::after;

/// What a layer, its services and their futures share.
pub(crate) struct Shared<P, C> {
    pub(crate) policy: P,
    pub(crate) classifier: C,
    pub(crate) sink: Sink,
    pub(crate) max_attempts: u32,
    pub(crate) delays: Delays,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    /// The longest wait for an open breaker below; `None`: no wait.
    pub(crate) open_breaker_wait: Option<Duration>,
    pub(crate) stats: Arc<Stats>,
}

// === impl Shared ===

impl<P, C> Shared<P, C> {
    pub(crate) fn component(&self) -> &Component {
        &self.stats.component
    }

    /// When the first attempt's timer fires, if it has one: the earlier of
    /// its own time and the deadline; and the deadline.
    #[inline]
    pub(crate) fn first_timer(&self) -> (Option<Instant>, Option<Instant>) {
        if self.attempt_timeout.is_none() && self.deadline.is_none() {
            return (None, None);
        }
        self.start_timers()
    }

    /// A deadline or timeout beyond the [`HORIZON`](crate::timer::HORIZON)
    /// (`Duration::MAX`, say) is none: it would never pass.
    #[cold]
    fn start_timers(&self) -> (Option<Instant>, Option<Instant>) {
        let now = Instant::now();
        let deadline = self.deadline.and_then(|d| after(now, d));
        (self.attempt_end(now, deadline), deadline)
    }

    /// When an attempt started at `now` times out, if it can.
    pub(crate) fn attempt_end(&self, now: Instant, deadline: Option<Instant>) -> Option<Instant> {
        let own = self.attempt_timeout.and_then(|t| after(now, t));
        match (own, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
