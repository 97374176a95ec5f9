//! What an adaptive layer's calls tell its estimator: a completed call is
//! a sample, one given up on only a sign; a window they close recomputes
//! the limit.

use reflex_core::Outcome;

use super::{Permit, Shared};
use crate::estimator::{Estimator, Recomputed};
use crate::logs;

// === impl Shared ===

impl Shared {
    /// A completed call of an adaptive layer: timed, counted with the
    /// calls in flight now (itself included), and the limit recomputed if
    /// it closed a window.
    pub(super) fn sample(&self, admitted_at: u64, failed: bool) {
        self.tell(|estimator, now, in_flight| {
            let latency = now.saturating_sub(admitted_at);
            estimator.record(latency, in_flight, failed, now)
        });
    }

    /// An admitted call of an adaptive layer given up on before it
    /// completed (its future dropped): no sample, only a sign, if it waited
    /// long, that calls do not come back.
    #[cold]
    pub(super) fn given_up(&self, admitted_at: u64) {
        self.tell(|estimator, now, in_flight| {
            estimator.given_up(now.saturating_sub(admitted_at), in_flight, now)
        });
    }

    /// A call of an adaptive layer that completed with an outcome to be
    /// ignored.
    #[cold]
    pub(super) fn ignored(&self) {
        self.tell(|estimator, now, in_flight| estimator.ignored(in_flight, now));
    }

    /// Tells an adaptive layer's estimator of a call, with the time and
    /// the calls in flight now (the call itself included); publishes the
    /// limit if that closed a window.
    #[inline]
    fn tell(&self, event: impl FnOnce(&Estimator, u64, usize) -> Option<Recomputed>) {
        let Some(estimator) = &self.estimator else {
            return;
        };
        let now = self.now();
        if let Some(recomputed) = event(estimator, now, self.counter.in_flight()) {
            self.recomputed(&recomputed);
        }
    }

    #[cold]
    pub(super) fn recomputed(&self, recomputed: &Recomputed) {
        let before = self.steering.inputs().base;
        self.steering.set_base(recomputed.limit);
        let published = self.publish(false);
        logs::adaptive_window(
            &self.component,
            before,
            recomputed,
            published.changed.map(|(_, to)| to),
        );
    }
}

// === impl Permit ===

impl Permit {
    /// The call admitted at `admitted_at` ended with `outcome`: an adaptive
    /// layer samples it (an ignored outcome is no sample, only a call that
    /// came back), before the permit is given back (in flight is read with
    /// this call still counted).
    #[inline]
    pub(crate) fn sample(&self, admitted_at: u64, outcome: Outcome) {
        match outcome {
            Outcome::Success => self.shared.sample(admitted_at, false),
            Outcome::Failure => self.shared.sample(admitted_at, true),
            Outcome::Ignored => self.shared.ignored(),
        }
    }

    /// The call admitted at `admitted_at` was given up on before it
    /// completed.
    #[cold]
    pub(crate) fn given_up(&self, admitted_at: u64) {
        self.shared.given_up(admitted_at);
    }
}
