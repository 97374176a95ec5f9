//! One window of samples: what completed calls add to it (a few atomics
//! each), the gate whose compare-and-swap picks the one caller that closes
//! it, and the [`Summary`] that caller takes away.
//!
//! A sample is added before its caller looks at the gate, so none is lost:
//! a sample racing a close counts in this window or the next. The gate's
//! end is `CLOSING` while a caller recomputes, so no other caller tries;
//! the closer's `Acquire` on winning and `Release` on reopening order one
//! closer's writes (the estimator's state) before the next one's reads.
//! `src/tests/loom_window.rs` checks both.

use crate::loom::{AtomicU64, Ordering};

/// The end of a window while its closer recomputes: never due.
const CLOSING: u64 = u64::MAX;

/// Latencies are counted in units of 1 024 ns, in [`BUCKETS`] buckets of
/// 32 per power of two (about 3% wide, interpolated within).
const UNIT_SHIFT: u32 = 10;
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets up to 2³⁶ units (about 19.5 hours); slower calls count there.
pub(crate) const BUCKETS: usize = 1024;
const MAX_UNITS: u64 = (1 << 36) - 1;

/// Decides which caller closes a window.
#[derive(Debug)]
pub(crate) struct Gate {
    end: AtomicU64,
}

/// The right to close the window: given back with
/// [`reopen`](Self::reopen), or at `now` (due at once) if dropped.
#[derive(Debug)]
pub(crate) struct Closing<'a> {
    gate: &'a Gate,
    now: u64,
    reopened: bool,
}

/// What calls left in a window: the completed ones' samples, and counts
/// of refusals and of calls given up on.
#[derive(Debug)]
pub(crate) struct Accumulators {
    buckets: Box<[AtomicU64]>,
    drops: AtomicU64,
    in_flight_sum: AtomicU64,
    refused: AtomicU64,
    given_up: AtomicU64,
    /// Calls that completed but are no sample (admitted under another
    /// limit, or an outcome to be ignored): they came back all the same.
    others: AtomicU64,
}

/// A closed window, as the estimators read it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    /// Calls that succeeded (the latency samples).
    pub(crate) successes: u64,
    /// Drops: failures, and for AIMD calls slower than its timeout.
    pub(crate) drops: u64,
    /// The latency of the successes, in nanoseconds (0 with none): the
    /// mean of their middle half (see [`central_mean`]), or their median
    /// under 4.
    pub(crate) latency_ns: f64,
    /// The relative standard error of that latency (0 with under 2).
    pub(crate) latency_error: f64,
    /// Calls in flight when each sample completed, on average.
    pub(crate) in_flight: f64,
    /// Requests refused at the estimator's own limit: calls pressed
    /// against it, whatever share of it they could take.
    pub(crate) refused: u64,
    /// Calls given up on (their futures dropped) after waiting longer than
    /// calls should: no latency, only a sign that calls do not come back.
    pub(crate) given_up: u64,
    /// Calls that came back: the samples, and calls that completed but are
    /// none (admitted under another limit, or an outcome to be ignored).
    pub(crate) returned: u64,
}

// === impl Gate ===

impl Gate {
    /// A gate whose first window ends at `end` (0: due at once).
    pub(crate) fn new(end: u64) -> Self {
        Self {
            end: AtomicU64::new(end),
        }
    }

    /// Whether the window is due at `now`: one load.
    #[inline]
    pub(crate) fn due(&self, now: u64) -> bool {
        now.min(CLOSING - 1) >= self.end.load(Ordering::Relaxed)
    }

    /// Takes the right to close the window if it is due and nobody else
    /// took it.
    pub(crate) fn try_close(&self, now: u64) -> Option<Closing<'_>> {
        let now = now.min(CLOSING - 1);
        let end = self.end.load(Ordering::Relaxed);
        if now < end {
            return None;
        }
        self.end
            .compare_exchange(end, CLOSING, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Closing {
                gate: self,
                now,
                reopened: false,
            })
    }
}

// === impl Closing ===

impl Closing<'_> {
    /// Opens the next window, ending at `end`.
    pub(crate) fn reopen(mut self, end: u64) {
        self.reopened = true;
        self.gate.end.store(end.min(CLOSING - 1), Ordering::Release);
    }
}

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        if !self.reopened {
            self.gate.end.store(self.now, Ordering::Release);
        }
    }
}

// === impl Accumulators ===

impl Accumulators {
    pub(crate) fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            drops: AtomicU64::new(0),
            in_flight_sum: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            given_up: AtomicU64::new(0),
            others: AtomicU64::new(0),
        }
    }

    /// A successful call that took `latency_ns`, `in_flight` counted when
    /// it completed (itself included): two `fetch_add`s.
    #[inline]
    pub(crate) fn success(&self, latency_ns: u64, in_flight: usize) {
        self.buckets[index(latency_ns >> UNIT_SHIFT)].fetch_add(1, Ordering::Relaxed);
        self.in_flight_sum
            .fetch_add(in_flight as u64, Ordering::Relaxed);
    }

    /// A dropped call: two `fetch_add`s.
    #[inline]
    pub(crate) fn drop_signal(&self, in_flight: usize) {
        self.drops.fetch_add(1, Ordering::Relaxed);
        self.in_flight_sum
            .fetch_add(in_flight as u64, Ordering::Relaxed);
    }

    /// A request refused at the limit: one `fetch_add`, off the happy path.
    pub(crate) fn refusal(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A call that completed but is no sample (admitted under another
    /// limit, or an outcome to be ignored): one `fetch_add`.
    #[inline]
    pub(crate) fn other(&self) {
        self.others.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls that completed and are no sample, so far.
    pub(crate) fn others(&self) -> u64 {
        self.others.load(Ordering::Relaxed)
    }

    /// A call given up on after waiting longer than calls should: one
    /// `fetch_add`, off the happy path.
    pub(crate) fn given_up(&self) {
        self.given_up.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a call was given up on in the window so far, after waiting
    /// longer than calls should.
    pub(crate) fn any_given_up(&self) -> bool {
        self.given_up.load(Ordering::Relaxed) > 0
    }

    /// Samples in the window so far: successes and drops.
    pub(crate) fn count(&self) -> (u64, u64) {
        let successes = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .fold(0u64, u64::saturating_add);
        (successes, self.drops.load(Ordering::Relaxed))
    }

    /// Empties the window into a summary. Only the closer calls it.
    pub(crate) fn take(&self) -> Summary {
        let mut counts = [0u64; BUCKETS];
        for (count, bucket) in counts.iter_mut().zip(self.buckets.iter()) {
            *count = bucket.swap(0, Ordering::Relaxed);
        }
        let drops = self.drops.swap(0, Ordering::Relaxed);
        let in_flight_sum = self.in_flight_sum.swap(0, Ordering::Relaxed);
        let summary = summarise(&counts, drops, in_flight_sum);
        Summary {
            refused: self.refused.swap(0, Ordering::Relaxed),
            given_up: self.given_up.swap(0, Ordering::Relaxed),
            returned: summary
                .returned
                .saturating_add(self.others.swap(0, Ordering::Relaxed)),
            ..summary
        }
    }
}

/// The summary of a window's counts.
pub(crate) fn summarise(counts: &[u64; BUCKETS], drops: u64, in_flight_sum: u64) -> Summary {
    let successes = counts.iter().copied().fold(0u64, u64::saturating_add);
    let samples = successes.saturating_add(drops);
    let in_flight = if samples == 0 {
        0.0
    } else {
        in_flight_sum as f64 / samples as f64
    };
    // Under 4 calls the middle half takes in the extremes (of 1 ms and
    // 10 s it would read 5 s): the median then.
    let latency = if successes < 4 {
        quantile(counts, successes, 0.5)
    } else {
        central_mean(counts, successes)
    };
    let latency_error = if successes < 2 || latency <= 0.0 {
        0.0
    } else {
        // The standard error of the middle half's mean for a lognormal-ish
        // spread (1.09 σ/√n, where the median's is 1.25 σ/√n): the
        // interquartile range in log terms, over 1.349, is the spread.
        let (q1, q3) = (
            quantile(counts, successes, 0.25),
            quantile(counts, successes, 0.75),
        );
        let sigma = if q1 > 0.0 {
            (q3 / q1).ln() / 1.349
        } else {
            1.0
        };
        1.09 * sigma / (successes as f64).sqrt()
    };
    Summary {
        successes,
        drops,
        latency_ns: latency,
        latency_error,
        in_flight,
        refused: 0,
        given_up: 0,
        returned: samples,
    }
}

/// The bucket of a latency of `units`.
#[inline]
pub(crate) fn index(units: u64) -> usize {
    let units = units.min(MAX_UNITS);
    if units < SUB {
        return units as usize;
    }
    let exponent = 63 - units.leading_zeros();
    let mantissa = (units >> (exponent - SUB_BITS)) & (SUB - 1);
    (u64::from(exponent - SUB_BITS + 1) * SUB + mantissa) as usize
}

/// The lowest latency of bucket `index`, and its width, in units.
fn bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB {
        return (index, 1);
    }
    let shift = index / SUB - 1;
    let mantissa = index % SUB;
    ((SUB + mantissa) << shift, 1 << shift)
}

/// The mean of the middle half of `total` counts (the interquartile mean),
/// in nanoseconds, each bucket's counts spread evenly over its width; 0
/// with no counts. Robust to up to a quarter of the calls far off at
/// either end (the median: up to half), and
/// unlike it, smooth where latencies fall on a coarse clock's ticks: at
/// 10 ms on a 1 ms clock, a median jumps by a tenth as it crosses from
/// one tick to the next, and the window with it.
fn central_mean(counts: &[u64; BUCKETS], total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let (from, to) = (0.25 * total as f64, 0.75 * total as f64);
    let (mut below, mut sum) = (0.0f64, 0.0f64);
    for (i, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let (start, end) = (below, below + count as f64);
        below = end;
        if start >= to {
            break;
        }
        let (first, last) = (start.max(from), end.min(to));
        if last <= first {
            continue;
        }
        // Ranks `first..last` of this bucket, spread evenly over its width:
        // their mean sits at their middle rank's place.
        let (low, width) = bounds(i);
        let place = ((first + last) / 2.0 - start) / count as f64;
        sum += (last - first) * (width as f64).mul_add(place, low as f64);
    }
    sum / (to - from) * f64::from(1u32 << UNIT_SHIFT)
}

/// The `q` quantile of `total` counts, in nanoseconds, interpolated within
/// its bucket; 0 with no counts.
fn quantile(counts: &[u64; BUCKETS], total: u64, q: f64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        if (below + count) as f64 >= rank {
            let (low, width) = bounds(i);
            let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
            let units = (width as f64).mul_add(within, low as f64);
            return units * f64::from(1u32 << UNIT_SHIFT);
        }
        below += count;
    }
    let (low, width) = bounds(BUCKETS - 1);
    (low + width) as f64 * f64::from(1u32 << UNIT_SHIFT)
}

#[cfg(all(test, not(loom)))]
mod tests;
