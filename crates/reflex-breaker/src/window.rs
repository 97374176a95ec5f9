//! The windows failure and slow-call rates are computed over.
//!
//! Both keep their totals in [`Counts`]: three signed counters (calls,
//! failures, slow calls). Updates of one counter by racing threads may land
//! in either order, so a counter can dip below zero for an instant; reads
//! clamp (never negative, never more failures than calls), and no counter
//! can overflow into another.

use std::time::Duration;

use crate::config::{MAX_WINDOW_CALLS, Window};
use crate::loom::{AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};

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

/// How long each of `buckets` buckets of a window of `length` is, in
/// nanoseconds: at least 1 (`build()` refuses shorter buckets), and at most
/// `u64::MAX`. A bucket that long (about 584 years) outlasts any clock
/// reading the breaker makes, which are nanoseconds since it was built in a
/// `u64` too: such a window holds every call, as a window of its length
/// does.
pub(crate) fn bucket_nanos(length: Duration, buckets: u32) -> u64 {
    let nanos = length.as_nanos() / u128::from(buckets.max(1));
    u64::try_from(nanos).unwrap_or(u64::MAX).max(1)
}

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
    fn new(calls: u32) -> Self {
        debug_assert!((1..=MAX_WINDOW_CALLS).contains(&calls));
        Self {
            slots: (0..calls).map(|_| AtomicU8::new(Sample::EMPTY.0)).collect(),
            cursor: CacheLine(AtomicUsize::new(0)),
            counts: Counts::default(),
        }
    }

    #[inline]
    fn record(&self, sample: Sample) -> Option<Totals> {
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

    fn totals(&self) -> Totals {
        self.counts.totals()
    }

    fn clear(&self) {
        for slot in self.slots.iter() {
            self.counts
                .add(Sample(slot.swap(Sample::EMPTY.0, Ordering::Relaxed)), -1);
        }
    }
}

/// The calls of the last `buckets × bucket_nanos`, bucketed.
///
/// Each bucket knows which epoch (`now / bucket_nanos`, plus one: 0 is
/// "unused"; saturating, as the clock does) its counts belong to. The
/// first call of a new epoch in a bucket takes it over with a
/// compare-and-swap on the epoch and subtracts the counts it read before,
/// so calls of the new epoch recorded meanwhile are kept. A call that read the clock just before the epoch turned may
/// land in the new epoch: a sample off by one bucket, never a lost one.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Box<[Bucket]>,
    bucket_nanos: u64,
}

#[derive(Debug, Default)]
struct Bucket {
    epoch: AtomicU64,
    counts: Counts,
}

impl TimeWindow {
    pub(crate) fn new(bucket_nanos: u64, buckets: u32) -> Self {
        Self {
            buckets: (0..buckets).map(|_| Bucket::default()).collect(),
            // A division by zero on every call otherwise.
            bucket_nanos: bucket_nanos.max(1),
        }
    }

    #[inline]
    pub(crate) fn record(&self, sample: Sample, now: u64) {
        let epoch = (now / self.bucket_nanos).saturating_add(1);
        let bucket = &self.buckets[(epoch % self.buckets.len() as u64) as usize];
        let seen = bucket.epoch.load(Ordering::Acquire);
        if seen < epoch {
            let stale = bucket.counts.raw();
            if bucket
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                bucket.counts.subtract(stale);
            }
        } else if seen > epoch {
            // A call that read the clock before the bucket moved on: too old
            // for this bucket, and its own is gone.
            return;
        }
        bucket.counts.add(sample, 1);
    }

    pub(crate) fn totals(&self, now: u64) -> Totals {
        let epoch = (now / self.bucket_nanos).saturating_add(1);
        let oldest = epoch.saturating_sub(self.buckets.len() as u64 - 1).max(1);
        let mut sum = Totals::default();
        for bucket in self.buckets.iter() {
            let seen = bucket.epoch.load(Ordering::Acquire);
            if (oldest..=epoch).contains(&seen) {
                sum.add(bucket.counts.totals());
            }
        }
        sum
    }

    /// Marks every bucket unused. Their counts stay until the next take-over
    /// subtracts exactly what is there, so a call recording concurrently is
    /// never subtracted twice.
    pub(crate) fn clear(&self) {
        for bucket in self.buckets.iter() {
            bucket.epoch.store(0, Ordering::Release);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn ok() -> Sample {
        Sample::new(false, false)
    }
    fn fail() -> Sample {
        Sample::new(true, false)
    }
    fn slow_ok() -> Sample {
        Sample::new(false, true)
    }

    #[test]
    fn a_count_window_holds_exactly_the_last_n_calls() {
        let window = CountWindow::new(4);
        for sample in [fail(), fail(), ok(), slow_ok()] {
            window.record(sample);
        }
        assert_eq!(
            window.totals(),
            Totals {
                calls: 4,
                failures: 2,
                slow: 1
            }
        );
        // Two successes push the two failures out.
        window.record(ok());
        window.record(ok());
        assert_eq!(
            window.totals(),
            Totals {
                calls: 4,
                failures: 0,
                slow: 1
            }
        );
        // The next failure replaces the third call (a success).
        window.record(fail());
        assert_eq!(
            window.totals(),
            Totals {
                calls: 4,
                failures: 1,
                slow: 1
            }
        );
        // And the next success the slow one.
        window.record(ok());
        assert_eq!(
            window.totals(),
            Totals {
                calls: 4,
                failures: 1,
                slow: 0
            }
        );
        window.clear();
        assert_eq!(window.totals(), Totals::default());
    }

    #[test]
    fn a_time_window_forgets_buckets_older_than_its_length() {
        // 4 buckets of 10 ns: a window of 40 ns.
        let window = TimeWindow::new(10, 4);
        window.record(fail(), 0);
        window.record(ok(), 15);
        window.record(ok(), 39);
        assert_eq!(
            window.totals(39),
            Totals {
                calls: 3,
                failures: 1,
                slow: 0
            }
        );
        // At 40 the bucket of [0, 10) has left the window.
        assert_eq!(
            window.totals(40),
            Totals {
                calls: 2,
                failures: 0,
                slow: 0
            }
        );
        // A call at 45 takes that bucket over for its own epoch.
        window.record(fail(), 45);
        assert_eq!(
            window.totals(45),
            Totals {
                calls: 3,
                failures: 1,
                slow: 0
            }
        );
        // Long after, nothing is left.
        assert_eq!(window.totals(1_000), Totals::default());
        window.record(ok(), 1_000);
        assert_eq!(
            window.totals(1_000),
            Totals {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn a_time_bucket_holds_millions_of_calls_without_spilling_into_failures() {
        // More calls than 21 bits hold, in one bucket.
        let window = TimeWindow::new(1_000, 2);
        for _ in 0..3_000_000 {
            window.record(ok(), 10);
        }
        window.record(fail(), 10);
        let totals = window.totals(10);
        assert_eq!(
            totals,
            Totals {
                calls: 3_000_001,
                failures: 1,
                slow: 0
            }
        );
        assert!(totals.failure_rate().unwrap() < 1e-6);
    }

    #[test]
    fn a_cleared_time_window_counts_only_what_comes_after() {
        let window = TimeWindow::new(10, 4);
        window.record(fail(), 5);
        window.record(fail(), 15);
        window.clear();
        assert_eq!(window.totals(15), Totals::default());
        // The next call in a cleared bucket takes it over: the old counts go.
        window.record(ok(), 16);
        assert_eq!(
            window.totals(16),
            Totals {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
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
        assert_eq!(
            counts.totals(),
            Totals {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn a_bucket_too_long_for_a_u64_of_nanoseconds_is_held_at_u64_max_not_truncated() {
        const DAY: Duration = Duration::from_secs(86_400);
        // 2^55 s is 2^64 × 5^9 ns: truncated to 64 bits, zero.
        let billion_years = Duration::from_secs(1 << 55);
        assert_eq!(bucket_nanos(billion_years, 1), u64::MAX);
        // Truncated, a day.
        assert_eq!(bucket_nanos(billion_years + DAY, 1), u64::MAX);
        assert_eq!(bucket_nanos(Duration::MAX, 1), u64::MAX);
        assert_eq!(bucket_nanos(Duration::MAX, 1000), u64::MAX);
        assert_eq!(bucket_nanos(30 * DAY, 30), 86_400_000_000_000);
        assert_eq!(bucket_nanos(Duration::from_nanos(1), 1), 1);
        assert_eq!(bucket_nanos(Duration::from_nanos(1), 1000), 1, "never zero");
    }

    #[test]
    fn a_window_of_u64_max_buckets_holds_calls_from_the_first_nanosecond_to_the_last() {
        let window = TimeWindow::new(u64::MAX, 1);
        window.record(fail(), 0);
        window.record(ok(), u64::MAX - 1);
        assert_eq!(
            window.totals(u64::MAX - 1),
            Totals {
                calls: 2,
                failures: 1,
                slow: 0
            }
        );
    }

    #[test]
    fn nanosecond_buckets_at_the_end_of_the_clock_do_not_overflow() {
        // The breaker's clock saturates at u64::MAX ns (584 years up).
        let window = TimeWindow::new(1, 4);
        window.record(fail(), u64::MAX);
        window.record(ok(), u64::MAX);
        assert_eq!(
            window.totals(u64::MAX),
            Totals {
                calls: 2,
                failures: 1,
                slow: 0
            }
        );
    }

    #[test]
    fn totals_of_many_buckets_saturate_instead_of_overflowing() {
        let mut sum = Totals::from_raw([i64::MAX, i64::MAX, 0]);
        for _ in 0..3 {
            sum.add(Totals::from_raw([i64::MAX, i64::MAX, 1]));
        }
        assert_eq!(
            sum,
            Totals {
                calls: u64::MAX,
                failures: u64::MAX,
                slow: 3
            }
        );
        assert_eq!(sum.failure_rate(), Some(1.0));
    }

    #[test]
    fn rates_are_none_on_an_empty_window() {
        assert_eq!(Totals::default().failure_rate(), None);
        let t = Totals {
            calls: 4,
            failures: 1,
            slow: 2,
        };
        assert_eq!(t.failure_rate(), Some(0.25));
        assert_eq!(t.slow_rate(), Some(0.5));
    }
}
