//! How a [`MemoryBackend`] admits a call: at once while Closed (unless the
//! throttle refuses), as a probe while half-open, never while open.

use std::time::Duration;

use reflex_core::TransitionReason;

use super::MemoryBackend;
use super::word::{
    CLOSED, DISABLED, FORCED_OPEN, HALF_OPEN, METRICS_ONLY, ONE_PROBE, OPEN, code, generation,
    nanos, probes,
};
use crate::backend::{Refusal, Ticket, TicketKind};
use crate::loom::Ordering;
use crate::throttle;

// === impl MemoryBackend ===

impl MemoryBackend {
    #[cold]
    fn refuse(&self, retry_after: Option<Duration>) -> Refusal {
        self.rejected_total.fetch_add(1, Ordering::Relaxed);
        Refusal::new(retry_after)
    }

    /// Admits a call while Closed, unless the throttle refuses it.
    #[inline]
    pub(super) fn admit_closed(&self, word: u64) -> Result<Ticket, Refusal> {
        if let Some(throttle) = self.throttle.on() {
            if throttle.refuses(self.now()) {
                return Err(Refusal::throttled(Some(throttle::RETRY_AFTER)));
            }
        }
        Ok(Ticket::with(generation(word), TicketKind::Counted))
    }

    #[cold]
    pub(super) fn admit_slow(&self) -> Result<Ticket, Refusal> {
        loop {
            let word = self.word.load(Ordering::Acquire);
            let decided = match code(word) {
                CLOSED => Some(self.admit_closed(word)),
                METRICS_ONLY => Some(Ok(Ticket::with(generation(word), TicketKind::Counted))),
                DISABLED => Some(Ok(Ticket::with(generation(word), TicketKind::Uncounted))),
                FORCED_OPEN => Some(Err(self.refuse(None))),
                OPEN => self.admit_open(word),
                _ => self.admit_half_open(word),
            };
            if let Some(decided) = decided {
                return decided;
            }
        }
    }

    #[cold]
    fn admit_open(&self, word: u64) -> Option<Result<Ticket, Refusal>> {
        let now = self.now();
        let until = self.open_until.load(Ordering::Acquire);
        if now < until {
            return Some(Err(self.refuse(Some(Duration::from_nanos(until - now)))));
        }
        let next = self.transition(word, HALF_OPEN, TransitionReason::OpenDurationElapsed, now)?;
        Some(Ok(Ticket::with(generation(next), TicketKind::Probe)))
    }

    #[cold]
    fn admit_half_open(&self, word: u64) -> Option<Result<Ticket, Refusal>> {
        if probes(word) < self.config.probes() {
            return self
                .word
                .compare_exchange_weak(word, word + ONE_PROBE, Ordering::AcqRel, Ordering::Acquire)
                .ok()
                .map(|_| Ok(Ticket::with(generation(word), TicketKind::Probe)));
        }
        // Every probe is out. If none has reported for too long, re-open
        // rather than stay stuck on probes that will never report.
        let now = self.now();
        let waited = now.saturating_sub(self.half_open_progress.load(Ordering::Acquire));
        let max_wait = nanos(self.config.half_open_max_wait());
        if waited >= max_wait {
            self.transition(word, OPEN, TransitionReason::HalfOpenTimeout, now);
            return None;
        }
        // The longest this call would have to wait for a decision.
        Some(Err(
            self.refuse(Some(Duration::from_nanos(max_wait - waited)))
        ))
    }
}
