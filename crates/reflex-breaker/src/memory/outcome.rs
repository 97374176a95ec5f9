//! How a [`MemoryBackend`] records a finished call: in its window, its run
//! of failures and its throttle, and whether that trips it; or, for a
//! probe, whether it closes or re-opens.

use reflex_core::{Outcome, TransitionReason};

use super::MemoryBackend;
use super::word::{CLOSED, HALF_OPEN, ONE_PROBE, ONE_WIN, OPEN, code, generation, probes, wins};
use crate::backend::Ticket;
use crate::loom::Ordering;
use crate::throttle::On;
use crate::window::{Sample, Totals};

// === impl MemoryBackend ===

impl MemoryBackend {
    #[inline]
    pub(super) fn record_counted(&self, ticket: Ticket, failed: bool, slow: bool) {
        if !(failed || slow) && self.window.is_none() {
            // A plain success with no window only ends a run of failures.
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.reset_run(ticket);
            }
            return;
        }
        self.record_in_window(ticket, failed, slow);
    }

    /// A success ends a run of failures, unless it was admitted before a
    /// transition (its outcome belongs to a state that is gone).
    #[cold]
    fn reset_run(&self, ticket: Ticket) {
        if generation(self.word.load(Ordering::Acquire)) == ticket.generation() {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }

    fn record_in_window(&self, ticket: Ticket, failed: bool, slow: bool) {
        let word = self.word.load(Ordering::Acquire);
        if generation(word) != ticket.generation() {
            // Admitted before a transition: its outcome belongs to a state
            // that is gone.
            return;
        }
        let consecutive = if failed {
            // Saturating: a MetricsOnly breaker counts failures in a row
            // without ever tripping, and must not wrap back to zero.
            self.consecutive
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |run| {
                    run.checked_add(1)
                })
                .map_or(u32::MAX, |run| run + 1)
        } else {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            0
        };
        let changed = self
            .window
            .as_ref()
            .and_then(|window| window.record(Sample::new(failed, slow), || self.now()));
        if code(word) != CLOSED {
            return;
        }
        if failed || slow {
            self.maybe_trip(word, consecutive, changed);
        } else if changed
            .is_some_and(|totals| totals.calls == u64::from(self.config.minimum_calls()))
        {
            // A success can trip a rate only by bringing the window up to
            // its minimum number of calls: otherwise it lowers the rates or
            // leaves them be. (A time window re-checks at its next failure.)
            self.maybe_trip(word, consecutive, changed);
        }
    }

    /// After a failure or a slow call while Closed, or a success that
    /// brought a count window up to its minimum: does it trip? `totals` are
    /// the window's, when the caller already has them.
    #[cold]
    fn maybe_trip(&self, word: u64, consecutive: u32, totals: Option<Totals>) {
        let mut now = None;
        let mut clock = || *now.get_or_insert_with(|| self.now());
        let reason = if self
            .config
            .consecutive_failures()
            .is_some_and(|limit| consecutive >= limit)
        {
            TransitionReason::ConsecutiveFailures
        } else if let Some(reason) = self.window.as_ref().and_then(|window| {
            let totals = totals.unwrap_or_else(|| window.totals(&mut clock));
            self.rate_trip(totals)
        }) {
            reason
        } else {
            return;
        };
        let now = clock();
        self.transition(word, OPEN, reason, now);
    }

    fn rate_trip(&self, totals: Totals) -> Option<TransitionReason> {
        if totals.calls < u64::from(self.config.minimum_calls()) {
            return None;
        }
        if let (Some(threshold), Some(rate)) = (self.config.failure_rate(), totals.failure_rate()) {
            if rate >= threshold {
                return Some(TransitionReason::FailureRate);
            }
        }
        if let (Some((threshold, _)), Some(rate)) = (self.config.slow_call(), totals.slow_rate()) {
            if rate >= threshold {
                return Some(TransitionReason::SlowCallRate);
            }
        }
        None
    }

    #[cold]
    pub(super) fn record_probe(&self, ticket: Ticket, outcome: Outcome, slow: bool) {
        loop {
            let word = self.word.load(Ordering::Acquire);
            if code(word) != HALF_OPEN || generation(word) != ticket.generation() {
                // A probe of a half-open spell that is over.
                return;
            }
            match outcome {
                // Ignored counts for nothing, slow or not.
                Outcome::Ignored => {
                    if self.release_probe(word, 0) {
                        self.half_open_progress.store(self.now(), Ordering::Release);
                        return;
                    }
                }
                Outcome::Failure => {
                    self.transition(word, OPEN, TransitionReason::ProbeFailed, self.now());
                    return;
                }
                _ if slow => {
                    self.transition(word, OPEN, TransitionReason::ProbeFailed, self.now());
                    return;
                }
                Outcome::Success if wins(word) + 1 >= self.config.probe_successes() => {
                    self.transition(word, CLOSED, TransitionReason::ProbesSucceeded, self.now());
                    return;
                }
                Outcome::Success => {
                    if self.release_probe(word, ONE_WIN) {
                        self.half_open_progress.store(self.now(), Ordering::Release);
                        return;
                    }
                }
            }
        }
    }

    /// Counts a finished call in the throttle's window: a success is a
    /// request accepted, a failure one not; an ignored call is neither.
    #[cold]
    pub(super) fn record_throttled(&self, throttle: On<'_>, outcome: Outcome) {
        match outcome {
            Outcome::Success => throttle.record(true, self.now()),
            Outcome::Failure => throttle.record(false, self.now()),
            Outcome::Ignored => {}
        }
    }

    /// Gives back the probe slot `word` counts for this call, adding `win`.
    pub(super) fn release_probe(&self, word: u64, win: u64) -> bool {
        debug_assert!(probes(word) > 0);
        self.word
            .compare_exchange_weak(
                word,
                word - ONE_PROBE + win,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}
