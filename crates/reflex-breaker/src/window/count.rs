//! [`CountWindow`]: the last `n` calls, exactly.

use super::{Counts, Sample, Totals};
use crate::config::MAX_WINDOW_CALLS;
use crate::loom::{AtomicU8, AtomicUsize, Ordering};

/// The last `n` calls, exactly: a ring of samples and their totals.
///
/// Recording takes one `fetch_add` on the cursor and a load of the slot it
/// lands on; only when the sample differs from the one it replaces (a
/// failure among successes) does it swap the slot and adjust the counts.
/// A healthy service's window is all successes: one atomic addition a call.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    /// Written by every call: on a cache line of its own, so that cores
    /// reading the breaker's state do not lose it each time.
    cursor: CacheLine<AtomicUsize>,
    counts: Counts,
}

/// A value alone on its cache line.
#[derive(Debug)]
#[repr(align(64))]
struct CacheLine<T>(T);

impl CountWindow {
    pub(crate) fn new(calls: u32) -> Self {
        debug_assert!((1..=MAX_WINDOW_CALLS).contains(&calls));
        Self {
            slots: (0..calls).map(|_| AtomicU8::new(Sample::EMPTY.0)).collect(),
            cursor: CacheLine(AtomicUsize::new(0)),
            counts: Counts::default(),
        }
    }

    #[inline]
    pub(crate) fn record(&self, sample: Sample) -> Option<Totals> {
        let index = self.cursor.0.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[index];
        if slot.load(Ordering::Relaxed) == sample.0 {
            // The call it replaces had the same outcome: nothing changes.
            return None;
        }
        let old = Sample(slot.swap(sample.0, Ordering::Relaxed));
        if old == sample {
            return None;
        }
        // Every change of a slot goes through this swap, so the counts
        // always come back to the sum of the slots.
        self.counts.add(sample, 1);
        self.counts.add(old, -1);
        Some(self.counts.totals())
    }

    pub(crate) fn totals(&self) -> Totals {
        self.counts.totals()
    }

    pub(crate) fn clear(&self) {
        for slot in self.slots.iter() {
            self.counts
                .add(Sample(slot.swap(Sample::EMPTY.0, Ordering::Relaxed)), -1);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::window::tests::{fail, ok, slow_ok, totals};

    #[test]
    fn a_count_window_holds_exactly_the_last_n_calls() {
        let window = CountWindow::new(4);
        for sample in [fail(), fail(), ok(), slow_ok()] {
            window.record(sample);
        }
        assert_eq!(window.totals(), totals(4, 2, 1));
        // Two successes push the two failures out.
        window.record(ok());
        window.record(ok());
        assert_eq!(window.totals(), totals(4, 0, 1));
        // The next failure replaces the third call (a success).
        window.record(fail());
        assert_eq!(window.totals(), totals(4, 1, 1));
        // And the next success the slow one.
        window.record(ok());
        assert_eq!(window.totals(), totals(4, 1, 0));
        window.clear();
        assert_eq!(window.totals(), Totals::default());
    }
}
