//! The permit counter: how many requests are in flight, against which limit.
//!
//! One 64-bit word holds all that admission decides on:
//!
//! ```text
//!  63            32 31 30             0
//! [  hard limit   |S |  in-flight count ]
//! ```
//!
//! `S` is set while the count is in an excursion above the soft limit.
//! Admission is one compare-and-swap on the word, release one `fetch_sub`
//! (plus a compare-and-swap only when an excursion ends), and a limit change
//! a compare-and-swap too. Because the limit and the count live in one word,
//! every admission is decided against the limit in force at that instant: the
//! count never overshoots it, a refused request leaves no trace that could
//! make a concurrent one look refused, and an admission ordered after a limit
//! change sees the new limit.
//!
//! The word guards no other data, so `Relaxed` orderings suffice: every
//! invariant here is about this one location, whose modifications all
//! threads see in one order.
//!
//! This module is what the loom models check (`src/tests/loom_counter.rs`).

use crate::loom::{AtomicU64, AtomicUsize, Ordering};

const COUNT: u64 = (1 << 31) - 1;
const OVER_SOFT: u64 = 1 << 31;
const LIMIT_SHIFT: u32 = 32;

/// The highest hard limit a counter accepts.
pub(crate) const MAX_LIMIT: usize = COUNT as usize;

/// "No soft limit": no count is above it.
pub(crate) const NO_SOFT_LIMIT: usize = usize::MAX;

#[derive(Debug)]
pub(crate) struct Counter {
    word: AtomicU64,
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

/// A refusal: the hard limit was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    /// In flight when the request was refused.
    pub(crate) in_flight: usize,
    /// The hard limit it was refused against.
    pub(crate) hard_limit: usize,
}

fn count(word: u64) -> usize {
    (word & COUNT) as usize
}

fn limit(word: u64) -> usize {
    (word >> LIMIT_SHIFT) as usize
}

// === impl Counter ===

impl Counter {
    /// `hard` must be in `1..=MAX_LIMIT`; `soft` below it or `NO_SOFT_LIMIT`.
    pub(crate) fn new(hard: usize, soft: usize) -> Self {
        debug_assert!((1..=MAX_LIMIT).contains(&hard));
        Self {
            word: AtomicU64::new((hard as u64) << LIMIT_SHIFT),
            soft: AtomicUsize::new(soft),
        }
    }

    /// Admits one more request unless the hard limit is reached. Below
    /// both limits, the common case, the next word is the current one plus
    /// one: the tests against the limits are branches off the path to the
    /// compare-and-swap.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Result<Admitted, Refused> {
        let mut current = self.word.load(Ordering::Relaxed);
        loop {
            let in_flight = count(current);
            if in_flight >= limit(current) || in_flight >= self.soft.load(Ordering::Relaxed) {
                return self.try_acquire_at_a_limit(current);
            }
            match self.swap(current, current + 1) {
                Ok(()) => {
                    return Ok(Admitted {
                        in_flight: in_flight + 1,
                        crossed_soft: false,
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// [`try_acquire`](Self::try_acquire) from a count at a limit: refused
    /// at the hard one; admitted above the soft one, which begins an
    /// excursion unless one is in progress.
    #[cold]
    fn try_acquire_at_a_limit(&self, mut current: u64) -> Result<Admitted, Refused> {
        loop {
            let (in_flight, hard_limit) = (count(current), limit(current));
            if in_flight >= hard_limit {
                return Err(Refused {
                    in_flight,
                    hard_limit,
                });
            }
            let soft = self.soft.load(Ordering::Relaxed);
            let crossed_soft = in_flight + 1 > soft && current & OVER_SOFT == 0;
            let flag = if crossed_soft { OVER_SOFT } else { 0 };
            match self.swap(current, (current + 1) | flag) {
                Ok(()) => {
                    return Ok(Admitted {
                        in_flight: in_flight + 1,
                        crossed_soft,
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// One attempt to replace `current` by `next`; the word found instead.
    #[inline]
    fn swap(&self, current: u64, next: u64) -> Result<(), u64> {
        self.word
            .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            .map(drop)
    }

    /// Releases one admitted request. Returns the count in flight when this
    /// release ended an excursion above the soft limit.
    #[inline]
    pub(crate) fn release(&self) -> Option<usize> {
        // The count is at least 1 (this request's), so the subtraction never
        // borrows from the flag or the limit.
        let previous = self.word.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(count(previous) > 0, "released more permits than acquired");
        if previous & OVER_SOFT == 0 {
            return None;
        }
        self.end_excursion(previous - 1)
    }

    #[cold]
    fn end_excursion(&self, mut current: u64) -> Option<usize> {
        let low_water = low_water(self.soft.load(Ordering::Relaxed));
        loop {
            if current & OVER_SOFT == 0 || count(current) > low_water {
                return None;
            }
            match self.swap(current, current & !OVER_SOFT) {
                Ok(()) => return Some(count(current)),
                Err(actual) => current = actual,
            }
        }
    }

    /// Requests in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        count(self.word.load(Ordering::Relaxed))
    }

    pub(crate) fn hard_limit(&self) -> usize {
        limit(self.word.load(Ordering::Relaxed))
    }

    pub(crate) fn soft_limit(&self) -> usize {
        self.soft.load(Ordering::Relaxed)
    }

    /// Sets both limits (`hard` in `0..=MAX_LIMIT`: 0 refuses every
    /// request, as a replica holding none of its fleet's permits). Every
    /// admission ordered after this call sees the new hard limit. Requests
    /// in flight above a lowered limit finish; none is cancelled.
    /// Withdrawing the soft limit (`NO_SOFT_LIMIT`) ends an excursion in
    /// progress at once.
    pub(crate) fn set_limits(&self, hard: usize, soft: usize) -> LimitsChanged {
        debug_assert!(hard <= MAX_LIMIT);
        let previous_soft = self.soft.swap(soft, Ordering::Relaxed);
        let keep = if soft == NO_SOFT_LIMIT {
            COUNT
        } else {
            COUNT | OVER_SOFT
        };
        let previous = self
            .word
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
                Some((word & keep) | ((hard as u64) << LIMIT_SHIFT))
            })
            .unwrap_or_else(|word| word);
        let ended_excursion =
            (soft == NO_SOFT_LIMIT && previous & OVER_SOFT != 0).then_some(EndedExcursion {
                in_flight: count(previous),
                soft_limit: previous_soft,
            });
        LimitsChanged {
            previous_hard: limit(previous),
            ended_excursion,
        }
    }
}

/// What [`Counter::set_limits`] replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LimitsChanged {
    pub(crate) previous_hard: usize,
    /// Set when withdrawing the soft limit ended an excursion.
    pub(crate) ended_excursion: Option<EndedExcursion>,
}

/// An excursion above the soft limit that a limit change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndedExcursion {
    pub(crate) in_flight: usize,
    pub(crate) soft_limit: usize,
}

/// The count at or below which an excursion above `soft` ends: half the
/// soft limit. A load that saturates in bursts dips below the soft limit
/// between them; ending the excursion only at half of it keeps such a load
/// to one warning, not one per burst.
pub(crate) fn low_water(soft: usize) -> usize {
    if soft == NO_SOFT_LIMIT {
        return NO_SOFT_LIMIT;
    }
    soft / 2
}

/// The soft limit keeps its proportion of the hard limit: configured 80 of
/// 100, it becomes 40 of 50. It stays below the hard limit, and where that
/// leaves no room (a hard limit of 1, or 0) there is no soft limit.
pub(crate) fn rescale_soft(soft: usize, configured_hard: usize, hard: usize) -> usize {
    if hard == 0 {
        return NO_SOFT_LIMIT;
    }
    let scaled = (soft as u128 * hard as u128 / configured_hard as u128) as usize;
    match scaled.min(hard - 1) {
        0 => NO_SOFT_LIMIT,
        soft => soft,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn admitted(counter: &Counter) -> usize {
        counter.try_acquire().expect("admitted").in_flight
    }

    #[test]
    fn admits_up_to_the_hard_limit_and_refuses_the_next() {
        let counter = Counter::new(2, NO_SOFT_LIMIT);
        assert_eq!(admitted(&counter), 1);
        assert_eq!(admitted(&counter), 2);
        assert_eq!(
            counter.try_acquire(),
            Err(Refused {
                in_flight: 2,
                hard_limit: 2
            })
        );
        assert_eq!(counter.in_flight(), 2, "a refusal leaves no trace");
        counter.release();
        assert_eq!(admitted(&counter), 2);
    }

    #[test]
    fn warns_once_per_excursion_above_the_soft_limit() {
        // soft 10: over at 11, low water 5.
        let counter = Counter::new(20, 10);
        let crossings: Vec<bool> = (0..15)
            .map(|_| counter.try_acquire().unwrap().crossed_soft)
            .collect();
        assert_eq!(crossings.iter().filter(|c| **c).count(), 1);
        assert!(crossings[10], "the 11th request crosses");

        // Dipping under the soft limit and back does not end the excursion...
        for _ in 0..9 {
            assert_eq!(counter.release(), None);
        }
        assert_eq!(counter.in_flight(), 6);
        for _ in 0..6 {
            assert!(!counter.try_acquire().unwrap().crossed_soft);
        }
        for _ in 0..6 {
            assert_eq!(counter.release(), None);
        }
        // ...falling to the low-water mark does, once.
        assert_eq!(counter.release(), Some(5));
        assert_eq!(counter.release(), None);
        // And a new excursion warns again.
        for _ in 0..6 {
            assert!(!counter.try_acquire().unwrap().crossed_soft);
        }
        assert!(counter.try_acquire().unwrap().crossed_soft);
    }

    #[test]
    fn low_water_is_half_the_soft_limit() {
        assert_eq!(low_water(1), 0);
        assert_eq!(low_water(9), 4);
        assert_eq!(low_water(100), 50);
        assert_eq!(low_water(NO_SOFT_LIMIT), NO_SOFT_LIMIT);
    }

    #[test]
    fn a_lowered_limit_applies_to_the_next_admission() {
        let counter = Counter::new(4, NO_SOFT_LIMIT);
        for _ in 0..3 {
            counter.try_acquire().unwrap();
        }
        assert_eq!(counter.set_limits(2, NO_SOFT_LIMIT).previous_hard, 4);
        assert_eq!(counter.in_flight(), 3, "a limit change keeps the count");
        assert!(counter.try_acquire().is_err());
        counter.release();
        assert!(counter.try_acquire().is_err());
        counter.release();
        assert_eq!(admitted(&counter), 2);
    }

    #[test]
    fn withdrawing_the_soft_limit_ends_an_excursion_at_once() {
        let counter = Counter::new(4, 1);
        counter.try_acquire().unwrap();
        assert!(counter.try_acquire().unwrap().crossed_soft);
        let changed = counter.set_limits(1, NO_SOFT_LIMIT);
        assert_eq!(
            changed.ended_excursion,
            Some(EndedExcursion {
                in_flight: 2,
                soft_limit: 1
            })
        );
        assert_eq!(counter.release(), None, "nothing left to end");
        assert_eq!(counter.release(), None);
    }

    #[test]
    fn the_largest_limit_fits_beside_a_full_count() {
        let counter = Counter::new(MAX_LIMIT, NO_SOFT_LIMIT);
        assert_eq!(counter.hard_limit(), MAX_LIMIT);
        counter.try_acquire().unwrap();
        assert_eq!(counter.in_flight(), 1);
        assert_eq!(counter.hard_limit(), MAX_LIMIT);
        counter.release();
        assert_eq!(counter.in_flight(), 0);
    }

    #[test]
    fn soft_limit_keeps_its_proportion_when_the_hard_limit_changes() {
        assert_eq!(rescale_soft(80, 100, 50), 40);
        assert_eq!(rescale_soft(80, 100, 200), 160);
        assert_eq!(rescale_soft(9, 10, 2), 1);
        assert_eq!(rescale_soft(9, 10, 1), NO_SOFT_LIMIT, "no room below 1");
        assert_eq!(rescale_soft(1, 4, 3), NO_SOFT_LIMIT, "rounds down to 0");
        assert_eq!(rescale_soft(1, 2, MAX_LIMIT), MAX_LIMIT / 2);
        assert_eq!(rescale_soft(9, 10, 0), NO_SOFT_LIMIT, "nor below 0");
    }

    #[test]
    fn a_limit_of_zero_refuses_every_request_and_lets_the_running_ones_finish() {
        let counter = Counter::new(3, 2);
        counter.try_acquire().unwrap();
        counter.try_acquire().unwrap();
        assert_eq!(counter.set_limits(0, NO_SOFT_LIMIT).previous_hard, 3);
        assert_eq!(
            counter.try_acquire(),
            Err(Refused {
                in_flight: 2,
                hard_limit: 0
            })
        );
        counter.release();
        counter.release();
        assert_eq!(
            counter.try_acquire(),
            Err(Refused {
                in_flight: 0,
                hard_limit: 0
            }),
            "refused with nothing in flight too"
        );
        counter.set_limits(1, NO_SOFT_LIMIT);
        assert_eq!(admitted(&counter), 1);
    }
}
