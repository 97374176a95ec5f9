//! [`DurationHistogram`]: request durations in fixed buckets, in seconds,
//! as metrics exports want them, taken from the witness's fine histogram
//! once per cycle.

use crate::histogram::{Counts, representative};

/// The upper bounds of a [`DurationHistogram`]'s buckets, in seconds: the
/// ones OpenTelemetry's semantic conventions advise for
/// `http.server.request.duration`. A last bucket, above 10 s, holds the
/// rest (`+Inf`).
pub const DURATION_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Buckets: one per bound, and the last one (`+Inf`).
const BUCKETS: usize = DURATION_BOUNDS.len() + 1;

/// Request durations since the witness started, in the buckets of
/// [`DURATION_BOUNDS`] (and a last one above them), with their count and
/// sum, in seconds.
///
/// Taken once per cycle from the witness's fine histogram (log-linear
/// buckets, each value known within 1/16): each of its buckets counts
/// where its middle falls, as its percentiles do. So a duration within
/// 1/16 of a bound may count on the other side of it, and the sum adds up
/// the middles of the fine buckets, not the durations themselves: it is
/// within 1/32 of the true sum (for durations under the fine histogram's
/// last bucket, about 18 minutes), no per-request cost added for it.
///
/// # Examples
///
/// ```
/// use reflex_witness::{DURATION_BOUNDS, DurationHistogram};
///
/// let empty = DurationHistogram::default();
/// assert_eq!(empty.count(), 0);
/// assert_eq!(empty.cumulative().len(), DURATION_BOUNDS.len() + 1);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DurationHistogram {
    counts: [u64; BUCKETS],
    sums: [f64; BUCKETS],
}

// === impl DurationHistogram ===

impl DurationHistogram {
    /// The finite upper bounds of the buckets, in seconds
    /// ([`DURATION_BOUNDS`]).
    pub fn bounds(&self) -> &'static [f64] {
        &DURATION_BOUNDS
    }

    /// The durations in each bucket (not cumulative): bucket `i` holds
    /// those at most `bounds()[i]` and above the bound before it; the last
    /// one, those above 10 s.
    pub fn counts(&self) -> [u64; BUCKETS] {
        self.counts
    }

    /// The durations at most each bound, the last one being all of them
    /// (`le="+Inf"`), as Prometheus counts its buckets.
    pub fn cumulative(&self) -> [u64; BUCKETS] {
        let mut total = 0u64;
        self.counts.map(|n| {
            total = total.saturating_add(n);
            total
        })
    }

    /// The sum of the durations in each bucket, in seconds (approximate:
    /// see the type's docs).
    pub fn sums(&self) -> [f64; BUCKETS] {
        self.sums
    }

    /// How many durations.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0, |a, n| a.saturating_add(*n))
    }

    /// Their sum, in seconds (approximate: see the type's docs).
    pub fn sum(&self) -> f64 {
        self.sums.iter().sum()
    }

    /// The bucket of a duration of `seconds`.
    fn bucket(seconds: f64) -> usize {
        DURATION_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS - 1)
    }

    /// Adds the durations of a cycle's fine histogram, in nanoseconds.
    pub(crate) fn add_counts(&mut self, counts: &Counts) {
        for (index, n) in counts.occupied() {
            let seconds = representative(index) as f64 / 1e9;
            let bucket = Self::bucket(seconds);
            self.counts[bucket] = self.counts[bucket].saturating_add(n);
            self.sums[bucket] += n as f64 * seconds;
        }
    }

    /// Adds another histogram's durations.
    pub(crate) fn add(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a = a.saturating_add(b);
        }
        for (a, b) in self.sums.iter_mut().zip(other.sums) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::{AtomicHistogram, Counts};

    #[test]
    fn durations_land_in_the_bucket_of_their_bound_and_add_up() {
        let fine = AtomicHistogram::new();
        // 1 ms, 7 ms, 60 ms twice, 3 s, 20 s.
        for ms in [1u64, 7, 60, 60, 3_000, 20_000] {
            fine.record(ms * 1_000_000);
        }
        let mut counts = Counts::new();
        fine.take(&mut counts);
        let mut durations = DurationHistogram::default();
        durations.add_counts(&counts);
        let expected = [1, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1];
        assert_eq!(durations.counts(), expected);
        assert_eq!(
            durations.cumulative(),
            [1, 2, 2, 2, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 6]
        );
        assert_eq!(durations.count(), 6);
        let truth = 0.001 + 0.007 + 0.12 + 3.0 + 20.0;
        assert!(
            (durations.sum() - truth).abs() <= truth / 32.0,
            "{}",
            durations.sum()
        );

        let mut twice = durations.clone();
        twice.add(&durations);
        assert_eq!(twice.count(), 12);
        assert_eq!(twice.counts()[4], 4);
        assert!((twice.sum() / durations.sum() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn a_duration_on_a_bound_counts_at_most_that_bound() {
        assert_eq!(DurationHistogram::bucket(0.005), 0);
        assert_eq!(DurationHistogram::bucket(0.0050001), 1);
        assert_eq!(DurationHistogram::bucket(10.0), 13);
        assert_eq!(DurationHistogram::bucket(10.5), 14);
        assert_eq!(DurationHistogram::bucket(0.0), 0);
    }
}
