//! The windows failure and slow-call rates are computed over: a count
//! window ([`count`]) or a time window ([`time`]), and what they count.
//!
//! Both keep their totals in [`Counts`]: three signed counters (calls,
//! failures, slow calls). Updates of one counter by racing threads may land
//! in either order, so a counter can dip below zero for an instant; reads
//! clamp (never negative, never more failures than calls), and no counter
//! can overflow into another.

mod count;
mod time;

pub(crate) use count::CountWindow;
pub(crate) use time::{TimeWindow, bucket_nanos};

use crate::config::Window;
use crate::loom::{AtomicI64, Ordering};

/// One call's mark in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample(u8);

const RECORDED: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

impl Sample {
    const EMPTY: Self = Self(0);

    pub(crate) fn new(failed: bool, slow: bool) -> Self {
        Self(RECORDED | if failed { FAILED } else { 0 } | if slow { SLOW } else { 0 })
    }

    fn recorded(self) -> bool {
        self.0 & RECORDED != 0
    }

    pub(crate) fn failed(self) -> bool {
        self.0 & FAILED != 0
    }

    pub(crate) fn slow(self) -> bool {
        self.0 & SLOW != 0
    }
}

/// Calls, failures and slow calls, as counters.
#[derive(Debug, Default)]
struct Counts {
    calls: AtomicI64,
    failures: AtomicI64,
    slow: AtomicI64,
}

impl Counts {
    /// Adds `sign` (1 or -1) times `sample`'s parts.
    fn add(&self, sample: Sample, sign: i64) {
        if sample.recorded() {
            self.calls.fetch_add(sign, Ordering::Relaxed);
        }
        if sample.failed() {
            self.failures.fetch_add(sign, Ordering::Relaxed);
        }
        if sample.slow() {
            self.slow.fetch_add(sign, Ordering::Relaxed);
        }
    }

    fn raw(&self) -> [i64; 3] {
        [
            self.calls.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            self.slow.load(Ordering::Relaxed),
        ]
    }

    fn subtract(&self, raw: [i64; 3]) {
        self.calls.fetch_sub(raw[0], Ordering::Relaxed);
        self.failures.fetch_sub(raw[1], Ordering::Relaxed);
        self.slow.fetch_sub(raw[2], Ordering::Relaxed);
    }

    fn totals(&self) -> Totals {
        Totals::from_raw(self.raw())
    }
}

/// Calls, failures and slow calls in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Totals {
    /// Clamped: never negative, never more failures or slow calls than calls.
    fn from_raw([calls, failures, slow]: [i64; 3]) -> Self {
        let calls = calls.max(0).unsigned_abs();
        Self {
            calls,
            failures: failures.max(0).unsigned_abs().min(calls),
            slow: slow.max(0).unsigned_abs().min(calls),
        }
    }

    /// Saturating: a bucket's counts are each at most `i64::MAX`, and a
    /// thousand of them may add up past `u64::MAX`.
    fn add(&mut self, other: Self) {
        self.calls = self.calls.saturating_add(other.calls);
        self.failures = self.failures.saturating_add(other.failures);
        self.slow = self.slow.saturating_add(other.slow);
    }

    pub(crate) fn failure_rate(self) -> Option<f64> {
        (self.calls > 0).then(|| self.failures as f64 / self.calls as f64)
    }

    pub(crate) fn slow_rate(self) -> Option<f64> {
        (self.calls > 0).then(|| self.slow as f64 / self.calls as f64)
    }
}

/// A breaker's window, of either kind.
#[derive(Debug)]
pub(crate) enum Windows {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Windows {
    pub(crate) fn new(window: Window) -> Self {
        match window {
            Window::Count { calls } => Self::Count(CountWindow::new(calls)),
            Window::Time { length, buckets } => {
                Self::Time(TimeWindow::new(bucket_nanos(length, buckets), buckets))
            }
        }
    }

    /// Records a call. `now` is only read by a time window. A count window
    /// returns its new totals when they changed (while it fills, or when
    /// the sample differs from the one it replaces).
    #[inline]
    pub(crate) fn record(&self, sample: Sample, now: impl FnOnce() -> u64) -> Option<Totals> {
        match self {
            Self::Count(window) => window.record(sample),
            Self::Time(window) => {
                window.record(sample, now());
                None
            }
        }
    }

    pub(crate) fn totals(&self, now: impl FnOnce() -> u64) -> Totals {
        match self {
            Self::Count(window) => window.totals(),
            Self::Time(window) => window.totals(now()),
        }
    }

    /// Forgets every call. Only under the breaker's transition lock; a call
    /// recorded concurrently may survive it.
    pub(crate) fn clear(&self) {
        match self {
            Self::Count(window) => window.clear(),
            Self::Time(window) => window.clear(),
        }
    }
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn ok() -> Sample {
        Sample::new(false, false)
    }
    pub(crate) fn fail() -> Sample {
        Sample::new(true, false)
    }
    pub(crate) fn slow_ok() -> Sample {
        Sample::new(false, true)
    }
    pub(crate) fn totals(calls: u64, failures: u64, slow: u64) -> Totals {
        Totals {
            calls,
            failures,
            slow,
        }
    }

    #[test]
    fn counts_read_clamped_while_racing_updates_land_out_of_order() {
        let counts = Counts::default();
        // A removal landing before the addition it undoes.
        counts.add(fail(), -1);
        assert_eq!(counts.totals(), Totals::default());
        counts.add(ok(), 1);
        assert_eq!(
            counts.totals(),
            Totals::default(),
            "still settling: clamped to zero"
        );
        // The addition lands: the counts are right again.
        counts.add(fail(), 1);
        assert_eq!(counts.totals(), totals(1, 0, 0));
    }

    #[test]
    fn totals_of_many_buckets_saturate_instead_of_overflowing() {
        let mut sum = Totals::from_raw([i64::MAX, i64::MAX, 0]);
        for _ in 0..3 {
            sum.add(Totals::from_raw([i64::MAX, i64::MAX, 1]));
        }
        assert_eq!(sum, totals(u64::MAX, u64::MAX, 3));
        assert_eq!(sum.failure_rate(), Some(1.0));
    }

    #[test]
    fn rates_are_none_on_an_empty_window() {
        assert_eq!(Totals::default().failure_rate(), None);
        let t = totals(4, 1, 2);
        assert_eq!(t.failure_rate(), Some(0.25));
        assert_eq!(t.slow_rate(), Some(0.5));
    }
}
