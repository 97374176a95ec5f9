//! [`TimeWindow`]: the calls of the last stretch of time, bucketed.

use std::time::Duration;

use super::{Counts, Sample, Totals};
use crate::loom::{AtomicU64, Ordering};

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

/// The calls of the last `buckets × bucket_nanos`, bucketed.
///
/// Each bucket knows which epoch (`now / bucket_nanos`, plus one: 0 is
/// "unused"; saturating, as the clock does) its counts belong to. The
/// first call of a new epoch in a bucket takes it over with a
/// compare-and-swap on the epoch and subtracts the counts it read before,
/// so calls of the new epoch recorded meanwhile are kept. A call that read
/// the clock just before the epoch turned may land in the new epoch: a
/// sample off by one bucket, never a lost one.
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
    use crate::window::tests::{fail, ok, totals};

    #[test]
    fn a_time_window_forgets_buckets_older_than_its_length() {
        // 4 buckets of 10 ns: a window of 40 ns.
        let window = TimeWindow::new(10, 4);
        window.record(fail(), 0);
        window.record(ok(), 15);
        window.record(ok(), 39);
        assert_eq!(window.totals(39), totals(3, 1, 0));
        // At 40 the bucket of [0, 10) has left the window.
        assert_eq!(window.totals(40), totals(2, 0, 0));
        // A call at 45 takes that bucket over for its own epoch.
        window.record(fail(), 45);
        assert_eq!(window.totals(45), totals(3, 1, 0));
        // Long after, nothing is left.
        assert_eq!(window.totals(1_000), Totals::default());
        window.record(ok(), 1_000);
        assert_eq!(window.totals(1_000), totals(1, 0, 0));
    }

    #[test]
    fn a_time_bucket_holds_millions_of_calls_without_spilling_into_failures() {
        // More calls than 21 bits hold, in one bucket.
        let window = TimeWindow::new(1_000, 2);
        for _ in 0..3_000_000 {
            window.record(ok(), 10);
        }
        window.record(fail(), 10);
        let sum = window.totals(10);
        assert_eq!(sum, totals(3_000_001, 1, 0));
        assert!(sum.failure_rate().unwrap() < 1e-6);
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
        assert_eq!(window.totals(16), totals(1, 0, 0));
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
        assert_eq!(window.totals(u64::MAX - 1), totals(2, 1, 0));
    }

    #[test]
    fn nanosecond_buckets_at_the_end_of_the_clock_do_not_overflow() {
        // The breaker's clock saturates at u64::MAX ns (584 years up).
        let window = TimeWindow::new(1, 4);
        window.record(fail(), u64::MAX);
        window.record(ok(), u64::MAX);
        assert_eq!(window.totals(u64::MAX), totals(2, 1, 0));
    }
}
