//! [`AtomicHistogram`]: latencies recorded with one `fetch_add`, read as
//! percentiles off the request path.
//!
//! Log-linear buckets, as HdrHistogram lays them out: values below 16 are
//! exact; above, each power of two is split into 16 buckets, so a value is
//! known to within 1/16 (6.25%) of itself. Values are nanoseconds, up to
//! 2^40 (about 18 minutes; longer ones count in the last bucket).

use std::sync::atomic::{AtomicU64, Ordering};

const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
const MAX_EXP: u32 = 40;
/// Buckets: 16 exact ones, then 16 per power of two from 2^4 to 2^40.
pub(crate) const BUCKETS: usize = (SUB as usize) * (MAX_EXP as usize - SUB_BITS as usize + 2);

/// The bucket of `value`.
#[inline]
pub(crate) fn index(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let exp = (63 - value.leading_zeros()).min(MAX_EXP);
    if exp == MAX_EXP && value >= (1 << (MAX_EXP + 1)) {
        return BUCKETS - 1;
    }
    let mantissa = (value >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as usize) * SUB as usize + mantissa as usize
}

/// The lowest value of bucket `index`.
pub(crate) fn lowest(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let exp = index / SUB + u64::from(SUB_BITS) - 1;
    let mantissa = index % SUB;
    (1 << exp) + (mantissa << (exp - u64::from(SUB_BITS)))
}

/// The value that stands for bucket `index`: its middle.
pub(crate) fn representative(index: usize) -> u64 {
    if index + 1 >= BUCKETS {
        return lowest(index);
    }
    let low = lowest(index);
    low + (lowest(index + 1) - low) / 2
}

/// Bucket counts that writers add to with one `fetch_add` and a reader
/// takes whole (`take`), leaving them empty for the next window.
pub(crate) struct AtomicHistogram {
    counts: Box<[AtomicU64]>,
}

impl AtomicHistogram {
    pub(crate) fn new() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline]
    pub(crate) fn record(&self, value: u64) {
        self.counts[index(value)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts since the last `take`, leaving zeros. A value recorded
    /// while this runs lands in this window or the next, never in none.
    pub(crate) fn take(&self, into: &mut Counts) {
        for (slot, count) in into.0.iter_mut().zip(self.counts.iter()) {
            *slot += count.swap(0, Ordering::Relaxed);
        }
    }
}

/// Bucket counts, read off the request path.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Counts(Box<[u64]>);

impl Counts {
    pub(crate) fn new() -> Self {
        Self(vec![0; BUCKETS].into_boxed_slice())
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The buckets that hold anything, as `(index, count)`.
    pub(crate) fn occupied(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(index, n)| (index, *n))
    }

    pub(crate) fn add(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// Adds `all` less `some`, bucket by bucket (saturating: a record
    /// that raced a take may sit in one and not yet in the other).
    pub(crate) fn add_less(&mut self, all: &Self, some: &Self) {
        for ((a, b), c) in self.0.iter_mut().zip(all.0.iter()).zip(some.0.iter()) {
            *a += b.saturating_sub(*c);
        }
    }

    /// The value at quantile `q` (0 to 1): the representative of the
    /// bucket holding the `ceil(q × total)`-th value; `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.0.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(representative(index));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_values_are_exact_and_buckets_are_ordered() {
        for v in 0..16 {
            assert_eq!(index(v), v as usize);
            assert_eq!(lowest(v as usize), v);
        }
        for i in 1..BUCKETS {
            assert!(lowest(i) > lowest(i - 1), "bucket {i}");
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    proptest! {
        #[test]
        fn a_value_lands_in_the_bucket_that_holds_it_within_a_sixteenth(v in 0u64..(1 << 40)) {
            let i = index(v);
            prop_assert!(lowest(i) <= v);
            if i + 1 < BUCKETS {
                prop_assert!(v < lowest(i + 1));
            }
            let r = representative(i) as f64;
            prop_assert!((r - v as f64).abs() <= v as f64 / 16.0 + 1.0, "{v} stands as {r}");
        }
    }

    #[test]
    fn add_less_adds_the_difference_bucket_by_bucket_and_saturates() {
        let (all, some) = (AtomicHistogram::new(), AtomicHistogram::new());
        for v in [10, 10, 500, 70_000] {
            all.record(v);
        }
        some.record(10);
        some.record(500);
        some.record(9_999_999); // raced a take: in `some` only
        let (mut a, mut s) = (Counts::new(), Counts::new());
        all.take(&mut a);
        some.take(&mut s);
        let mut into = Counts::new();
        into.add_less(&a, &s);
        assert_eq!(into.total(), 2, "10 once, 70 000 once; nothing below zero");
        assert_eq!(into.quantile(1.0), Some(representative(index(70_000))));
    }

    #[test]
    fn quantiles_of_known_inputs() {
        let h = AtomicHistogram::new();
        // 1..=1000 µs, one each.
        for us in 1..=1000u64 {
            h.record(us * 1000);
        }
        let mut c = Counts::new();
        h.take(&mut c);
        assert_eq!(c.total(), 1000);
        for (q, expected) in [(0.5, 500_000.0), (0.9, 900_000.0), (0.99, 990_000.0)] {
            let got = c.quantile(q).unwrap() as f64;
            assert!(
                (got - expected).abs() <= expected / 16.0,
                "p{q}: {got} vs {expected}"
            );
        }
        // Taking empties it.
        let mut again = Counts::new();
        h.take(&mut again);
        assert_eq!(again.total(), 0);
        assert_eq!(again.quantile(0.5), None);
    }
}
