//! The windows failure and slow-call rates are computed over.
//!
//! Both keep their totals packed in one `u64` (calls, failures and slow
//! calls, 21 bits each), so reading them is one load and changing them one
//! atomic addition.

use crate::config::{MAX_WINDOW_CALLS, Window};
use crate::loom::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

const FIELD: u32 = 21;
const MASK: u64 = (1 << FIELD) - 1;

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

    pub(crate) fn failed(self) -> bool {
        self.0 & FAILED != 0
    }

    pub(crate) fn slow(self) -> bool {
        self.0 & SLOW != 0
    }

    /// This sample's part of the packed totals.
    fn totals(self) -> u64 {
        let calls = u64::from(self.0 & RECORDED != 0);
        let failures = u64::from(self.failed());
        let slow = u64::from(self.slow());
        calls | failures << FIELD | slow << (2 * FIELD)
    }
}

/// Calls, failures and slow calls in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

impl Totals {
    fn unpack(word: u64) -> Self {
        Self {
            calls: (word & MASK) as u32,
            failures: (word >> FIELD & MASK) as u32,
            slow: (word >> (2 * FIELD) & MASK) as u32,
        }
    }

    fn add(&mut self, other: Self) {
        self.calls += other.calls;
        self.failures += other.failures;
        self.slow += other.slow;
    }

    pub(crate) fn failure_rate(self) -> Option<f64> {
        (self.calls > 0).then(|| f64::from(self.failures) / f64::from(self.calls))
    }

    pub(crate) fn slow_rate(self) -> Option<f64> {
        (self.calls > 0).then(|| f64::from(self.slow) / f64::from(self.calls))
    }
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
            Window::Time { length, buckets } => Self::Time(TimeWindow::new(
                (length.as_nanos() / u128::from(buckets)) as u64,
                buckets,
            )),
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
/// failure among successes) does it swap the slot and adjust the totals.
/// A healthy service's window is all successes: one atomic addition a call.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    /// Written by every call: on a cache line of its own, so that cores
    /// reading the breaker's state do not lose it each time.
    cursor: CacheLine<AtomicUsize>,
    totals: AtomicU64,
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
            totals: AtomicU64::new(0),
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
        // Every change of a slot goes through this swap, so the totals
        // always come to the sum of the slots. Adding the new sample's part
        // and taking the old one's is one wrapping addition: no field goes
        // negative, so no borrow crosses fields.
        let delta = sample.totals().wrapping_sub(old.totals());
        let before = self.totals.fetch_add(delta, Ordering::Relaxed);
        Some(Totals::unpack(before.wrapping_add(delta)))
    }

    fn totals(&self) -> Totals {
        Totals::unpack(self.totals.load(Ordering::Relaxed))
    }

    fn clear(&self) {
        for slot in self.slots.iter() {
            let old = Sample(slot.swap(Sample::EMPTY.0, Ordering::Relaxed));
            if old != Sample::EMPTY {
                self.totals.fetch_add(
                    Sample::EMPTY.totals().wrapping_sub(old.totals()),
                    Ordering::Relaxed,
                );
            }
        }
    }
}

/// The calls of the last `buckets × bucket_nanos`, bucketed.
///
/// Each bucket knows which epoch (`now / bucket_nanos`) its totals belong
/// to. The first call of a new epoch in a bucket takes it over with a
/// compare-and-swap on the epoch and subtracts the totals it found, so calls
/// of the new epoch recorded meanwhile are kept. A call that read the clock
/// just before the epoch turned may land in the new epoch: a sample off by
/// one bucket, never a lost one.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Box<[Bucket]>,
    bucket_nanos: u64,
}

#[derive(Debug)]
struct Bucket {
    /// Epoch + 1; 0 is "never used".
    epoch: AtomicU64,
    totals: AtomicU64,
}

impl TimeWindow {
    fn new(bucket_nanos: u64, buckets: u32) -> Self {
        Self {
            buckets: (0..buckets)
                .map(|_| Bucket {
                    epoch: AtomicU64::new(0),
                    totals: AtomicU64::new(0),
                })
                .collect(),
            bucket_nanos,
        }
    }

    #[inline]
    fn record(&self, sample: Sample, now: u64) {
        let epoch = now / self.bucket_nanos + 1;
        let bucket = &self.buckets[(epoch % self.buckets.len() as u64) as usize];
        let seen = bucket.epoch.load(Ordering::Acquire);
        if seen < epoch {
            let stale = bucket.totals.load(Ordering::Acquire);
            if bucket
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                bucket.totals.fetch_sub(stale, Ordering::AcqRel);
            }
        } else if seen > epoch {
            // A call that read the clock before the bucket moved on: too old
            // for this bucket, and its own is gone.
            return;
        }
        bucket.totals.fetch_add(sample.totals(), Ordering::AcqRel);
    }

    fn totals(&self, now: u64) -> Totals {
        let epoch = now / self.bucket_nanos + 1;
        let oldest = epoch.saturating_sub(self.buckets.len() as u64 - 1);
        let mut sum = Totals::default();
        for bucket in self.buckets.iter() {
            let seen = bucket.epoch.load(Ordering::Acquire);
            if seen >= oldest && seen <= epoch {
                sum.add(Totals::unpack(bucket.totals.load(Ordering::Acquire)));
            }
        }
        sum
    }

    fn clear(&self) {
        for bucket in self.buckets.iter() {
            bucket.epoch.store(0, Ordering::Release);
            bucket.totals.store(0, Ordering::Release);
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
