//! The permit counter: how many requests are in flight, against which limits.
//!
//! One word holds the in-flight count and, in its top bit, whether the count
//! is in an excursion above the soft limit. Admission is one compare-and-swap
//! on that word; release is one `fetch_sub`, plus a compare-and-swap only
//! when an excursion ends. Because admission checks before it increments,
//! the count never overshoots the hard limit, not even for an instant, and a
//! refused request never makes another one look refused.
//!
//! This module is the part the loom model checks (`src/tests/loom_counter.rs`).

use crate::loom::{AtomicUsize, Ordering};

/// The top bit of the state word: set while above the soft limit.
const OVER_SOFT: usize = 1 << (usize::BITS - 1);
/// The rest of the state word: the in-flight count.
const COUNT: usize = !OVER_SOFT;

/// The highest hard limit a counter accepts.
pub(crate) const MAX_LIMIT: usize = COUNT;

/// "No soft limit": no count is above it.
pub(crate) const NO_SOFT_LIMIT: usize = usize::MAX;

#[derive(Debug)]
pub(crate) struct Counter {
    state: AtomicUsize,
    hard: AtomicUsize,
    soft: AtomicUsize,
}

/// A successful admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admitted {
    /// In flight, this request included.
    pub(crate) in_flight: usize,
    /// This admission began an excursion above the soft limit.
    pub(crate) crossed_soft: bool,
}

// === impl Counter ===

impl Counter {
    /// `hard` must be in `1..=MAX_LIMIT`; `soft` below it or `NO_SOFT_LIMIT`.
    pub(crate) fn new(hard: usize, soft: usize) -> Self {
        Self {
            state: AtomicUsize::new(0),
            hard: AtomicUsize::new(hard),
            soft: AtomicUsize::new(soft),
        }
    }

    /// Admits one more request unless the hard limit is reached; on refusal
    /// returns the count in flight.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Result<Admitted, usize> {
        let hard = self.hard.load(Ordering::Relaxed);
        let soft = self.soft.load(Ordering::Relaxed);
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let count = current & COUNT;
            if count >= hard {
                return Err(count);
            }
            let in_flight = count + 1;
            let crossed_soft = in_flight > soft && current & OVER_SOFT == 0;
            let next = if crossed_soft {
                in_flight | OVER_SOFT
            } else {
                in_flight | (current & OVER_SOFT)
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Ok(Admitted {
                        in_flight,
                        crossed_soft,
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Releases one admitted request. Returns the count in flight when this
    /// release ended an excursion above the soft limit.
    #[inline]
    pub(crate) fn release(&self) -> Option<usize> {
        let previous = self.state.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(previous & COUNT > 0, "released more permits than acquired");
        if previous & OVER_SOFT == 0 {
            return None;
        }
        self.end_excursion(previous - 1)
    }

    #[cold]
    fn end_excursion(&self, mut current: usize) -> Option<usize> {
        let low_water = low_water(self.soft.load(Ordering::Relaxed));
        loop {
            let count = current & COUNT;
            if current & OVER_SOFT == 0 || count > low_water {
                return None;
            }
            match self.state.compare_exchange_weak(
                current,
                count,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(count),
                Err(actual) => current = actual,
            }
        }
    }

    /// Requests in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.state.load(Ordering::Acquire) & COUNT
    }

    pub(crate) fn hard_limit(&self) -> usize {
        self.hard.load(Ordering::Relaxed)
    }

    pub(crate) fn soft_limit(&self) -> usize {
        self.soft.load(Ordering::Relaxed)
    }

    /// Sets both limits; takes effect for the next admission. Requests in
    /// flight above a lowered limit finish; none is cancelled.
    pub(crate) fn set_limits(&self, hard: usize, soft: usize) {
        self.soft.store(soft, Ordering::Relaxed);
        self.hard.store(hard, Ordering::Relaxed);
    }
}

/// The count at or below which an excursion above `soft` ends: 90% of the
/// soft limit, and at least one below it, so a count hovering at the soft
/// limit warns once, not once per request.
pub(crate) fn low_water(soft: usize) -> usize {
    if soft == NO_SOFT_LIMIT {
        return NO_SOFT_LIMIT;
    }
    soft.saturating_sub((soft / 10).max(1))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_hard_limit_and_refuses_the_next() {
        let counter = Counter::new(2, NO_SOFT_LIMIT);
        assert_eq!(counter.try_acquire().map(|a| a.in_flight), Ok(1));
        assert_eq!(counter.try_acquire().map(|a| a.in_flight), Ok(2));
        assert_eq!(counter.try_acquire(), Err(2));
        assert_eq!(counter.in_flight(), 2, "a refusal leaves no trace");
        counter.release();
        assert_eq!(counter.try_acquire().map(|a| a.in_flight), Ok(2));
    }

    #[test]
    fn warns_once_per_excursion_above_the_soft_limit() {
        // soft 10: over at 11, low water 9.
        let counter = Counter::new(20, 10);
        let crossings: Vec<bool> = (0..15)
            .map(|_| counter.try_acquire().unwrap().crossed_soft)
            .collect();
        assert_eq!(crossings.iter().filter(|c| **c).count(), 1);
        assert!(crossings[10], "the 11th request crosses");

        // Hovering between 10 and 11 does not end the excursion...
        for _ in 0..5 {
            assert_eq!(counter.release(), None);
        }
        assert_eq!(counter.in_flight(), 10);
        assert!(!counter.try_acquire().unwrap().crossed_soft);
        assert_eq!(counter.release(), None);
        // ...falling to the low-water mark does, once.
        assert_eq!(counter.release(), Some(9));
        assert_eq!(counter.release(), None);
        // And a new excursion warns again.
        counter.try_acquire().unwrap();
        counter.try_acquire().unwrap();
        assert!(counter.try_acquire().unwrap().crossed_soft);
    }

    #[test]
    fn low_water_is_below_the_soft_limit() {
        assert_eq!(low_water(0), 0);
        assert_eq!(low_water(1), 0);
        assert_eq!(low_water(9), 8);
        assert_eq!(low_water(100), 90);
        assert_eq!(low_water(NO_SOFT_LIMIT), NO_SOFT_LIMIT);
    }

    #[test]
    fn a_lowered_limit_applies_to_the_next_admission() {
        let counter = Counter::new(4, NO_SOFT_LIMIT);
        for _ in 0..3 {
            counter.try_acquire().unwrap();
        }
        counter.set_limits(2, NO_SOFT_LIMIT);
        assert_eq!(counter.try_acquire(), Err(3));
        counter.release();
        assert_eq!(counter.try_acquire(), Err(2));
        counter.release();
        assert_eq!(counter.try_acquire().map(|a| a.in_flight), Ok(2));
    }
}
