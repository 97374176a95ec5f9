//! How a [`MemoryBackend`] changes state: under its transition lock, one
//! compare-and-swap of the state word, then the signal and the `tracing`
//! event, outside the lock.

use std::time::Duration;

use reflex_core::{Signal, TransitionReason};

use super::word::{
    CLOSED, DISABLED, HALF_OPEN, OPEN, code, generation, nanos, next_generation, pack, state_of,
};
use super::{MemoryBackend, Scope};
use crate::logs::Change;
use crate::loom::Ordering;

// === impl MemoryBackend ===

impl MemoryBackend {
    /// Moves from the state `from` (its code and generation) to `to`, unless
    /// another transition got there first. Returns the new word.
    #[cold]
    pub(super) fn transition(
        &self,
        from: u64,
        to: u64,
        reason: TransitionReason,
        now: u64,
    ) -> Option<u64> {
        let serialised = self.transition.lock().unwrap_or_else(|e| e.into_inner());
        let mut current = self.word.load(Ordering::Acquire);
        if code(current) != code(from) || generation(current) != generation(from) {
            return None;
        }
        let mut open_for = None;
        match to {
            OPEN => {
                // Under the lock: no other writer but a reset, also under it.
                let opens = self.opens_in_row.load(Ordering::Relaxed).saturating_add(1);
                self.opens_in_row.store(opens, Ordering::Relaxed);
                let open = self.config.open_duration_after(opens);
                let until = now.saturating_add(nanos(open));
                self.open_until.store(until, Ordering::Release);
                open_for = Some(open);
            }
            HALF_OPEN => self.half_open_progress.store(now, Ordering::Release),
            CLOSED => {
                self.opens_in_row.store(0, Ordering::Relaxed);
                self.clear_counts();
            }
            DISABLED => self.clear_counts(),
            _ => {}
        }
        // Leaving Open for HalfOpen, the caller is the first probe.
        let first_probes =
            u32::from(to == HALF_OPEN && reason == TransitionReason::OpenDurationElapsed);
        let next = pack(to, next_generation(current), first_probes);
        // Only probe counts change the word outside this lock, and they
        // keep code and generation: retry until our swap lands.
        while let Err(actual) =
            self.word
                .compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire)
        {
            current = actual;
        }
        self.transitions_total.fetch_add(1, Ordering::Relaxed);
        if let (CLOSED, Scope::Keyed { closes, .. }) = (to, &self.scope) {
            closes.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        // The sink and tracing are user code: never under the lock (a sink
        // may steer this very breaker through its handle).
        drop(serialised);
        self.report(code(from), to, reason, open_for);
        Some(next)
    }

    fn clear_counts(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        if let Some(window) = &self.window {
            window.clear();
        }
    }

    fn report(&self, from: u64, to: u64, reason: TransitionReason, open_for: Option<Duration>) {
        let (from, to) = (state_of(from), state_of(to));
        let component = self.config.component();
        let change = Change {
            from,
            to,
            reason,
            open_for,
        };
        self.config.logs.changed(component, self.key(), change);
        let signal = match &self.scope {
            Scope::Component => Signal::BreakerTransition { from, to, reason },
            Scope::Keyed { .. } => Signal::KeyedBreakerTransition { from, to, reason },
        };
        self.config.sink().emit(component, signal);
    }
}
