//! Adaptive throttling: a Closed breaker admitting each call with a
//! probability, from the recent ratio of accepted calls to attempts.
//!
//! The rule is client-side adaptive throttling (Google's SRE book, "Handling
//! Overload"): over the last [`WINDOW`], a call is refused with probability
//!
//! ```text
//! p = max(0, (requests − k × accepts) / (requests + 1))
//! ```
//!
//! where `requests` are the calls admitted that finished as a success or
//! a failure and `accepts` the ones the classifier called a success: with
//! `a = accepts / requests`, `p` is about `1 − k × a`. Nothing is refused
//! while more than `1 / k` of the calls succeed; below that, the more fail,
//! the more are refused, and some always get through to find out when the
//! dependency is back.
//!
//! Unlike the book's rule, refused calls are not counted as requests. The
//! book's client throttles a backend that rejects because it is
//! overloaded: refusing more lowers the load, raises the backend's accept
//! ratio, and the rule settles. Against failures that do not depend on
//! the load (a quarter of the calls failing whatever happens), counting
//! the refusals feeds the rule with its own refusals: it has no steady
//! state between refusing nothing and refusing almost everything, and a
//! 25% brownout went from no refusal at all to 98% (a simulation of the
//! witness's reflexes showed both). Counting only admitted calls, `p`
//! settles at `1 − k × a` in both cases.
//!
//! Only calls made while throttling is on are counted: a breaker never
//! throttled pays one relaxed load a call for it, and allocates no window
//! (the window is made the first time throttling is turned on).

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Duration;

use crate::loom::{AtomicU64, Ordering};
use crate::window::{Sample, TimeWindow, Totals, bucket_nanos};

/// How far back requests and accepts are counted: long enough to hold a
/// few hundred calls of a busy dependency, short enough that the rule
/// follows it within a couple of seconds.
pub(crate) const WINDOW: Duration = Duration::from_secs(2);
/// Buckets of [`WINDOW`]: the window moves on a quarter second at a time.
const BUCKETS: u32 = 8;
/// The `retry_after` of a throttled call: the rule changes as its window
/// moves, a bucket at a time.
pub(crate) const RETRY_AFTER: Duration = Duration::from_millis(250);

/// `k` as stored: the bits of an `f64` at least 1, or 0 for "off" (no `k`
/// at least 1 has all-zero bits).
const OFF: u64 = 0;

/// A breaker's throttle: `k` (or off), the window, and how many calls it
/// refused.
#[derive(Debug)]
pub(crate) struct Throttle {
    k: AtomicU64,
    /// `requests` are the window's admitted calls, `requests − accepts`
    /// its "failures". Made when throttling is first turned on, before `k`
    /// is stored: a breaker never throttled has none.
    window: OnceLock<TimeWindow>,
    throttled_total: AtomicU64,
}

/// A throttle that is on: its `k` and window, read once for the call that
/// asks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct On<'a> {
    k: f64,
    window: &'a TimeWindow,
    throttled_total: &'a AtomicU64,
}

// === impl Throttle ===

impl Throttle {
    pub(crate) fn new() -> Self {
        Self {
            k: AtomicU64::new(OFF),
            window: OnceLock::new(),
            throttled_total: AtomicU64::new(0),
        }
    }

    /// The throttle, if it is on. One relaxed load of `k` when it is off.
    #[inline]
    pub(crate) fn on(&self) -> Option<On<'_>> {
        let bits = self.k.load(Ordering::Relaxed);
        if bits == OFF {
            return None;
        }
        Some(On {
            k: f64::from_bits(bits),
            // Made before `k` was stored; a reader that sees `k` before
            // the window is published takes the throttle for off.
            window: self.window.get()?,
            throttled_total: &self.throttled_total,
        })
    }

    /// Sets `k` (finite, at least 1: the handle checked) or turns the
    /// throttle off. Turning it on starts from an empty window. Returns the
    /// `k` it replaced.
    pub(crate) fn set(&self, k: Option<f64>) -> Option<f64> {
        debug_assert!(k.is_none_or(|k| k.is_finite() && k >= 1.0));
        let bits = k.map_or(OFF, f64::to_bits);
        let window = (bits != OFF).then(|| {
            self.window
                .get_or_init(|| TimeWindow::new(bucket_nanos(WINDOW, BUCKETS), BUCKETS))
        });
        let before = self.k.swap(bits, Ordering::AcqRel);
        if let (OFF, Some(window)) = (before, window) {
            window.clear();
        }
        (before != OFF).then(|| f64::from_bits(before))
    }

    /// Calls refused since the breaker was built.
    pub(crate) fn throttled_total(&self) -> u64 {
        self.throttled_total.load(Ordering::Relaxed)
    }
}

// === impl On ===

impl On<'_> {
    /// The `k` in force.
    pub(crate) fn k(self) -> f64 {
        self.k
    }

    /// Decides whether the call asking at `now` (nanoseconds on the
    /// breaker's clock) is refused (not counted in the window: see the
    /// module docs).
    #[cold]
    pub(crate) fn refuses(self, now: u64) -> bool {
        let p = probability(self.window.totals(now), self.k);
        if p > 0.0 && unit() < p {
            self.throttled_total.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// An admitted call ended at `now`: `accepted` (a success) or not (a
    /// failure). Ignored and dropped calls are not recorded.
    #[cold]
    pub(crate) fn record(self, accepted: bool, now: u64) {
        self.window.record(Sample::new(!accepted, false), now);
    }

    /// The probability a call asking at `now` is refused.
    pub(crate) fn probability_at(self, now: u64) -> f64 {
        probability(self.window.totals(now), self.k)
    }
}

/// `max(0, (requests − k × accepts) / (requests + 1))`, in [0, 1).
fn probability(totals: Totals, k: f64) -> f64 {
    // The window's "failures" are requests not accepted.
    let requests = totals.calls as f64;
    let accepts = totals.calls.saturating_sub(totals.failures) as f64;
    // k × accepts may be +∞ for a huge k: then p is 0, never NaN (requests
    // and k are finite).
    (k.mul_add(-accepts, requests) / (requests + 1.0)).max(0.0)
}

thread_local! {
    /// This thread's xorshift state: seeded at its first draw, never 0.
    static STATE: Cell<u64> = const { Cell::new(0) };
}

/// Seeds handed to threads: each thread's is different.
static SEEDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A uniform draw in [0, 1): xorshift64* on a per-thread state, no lock, no
/// allocation. Not for anything an adversary may predict.
fn unit() -> f64 {
    STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            // The golden-ratio increment of splitmix64 spreads the seeds,
            // and its mix makes neighbours unalike; the state's address
            // varies the sequence between processes.
            let seed = SEEDS.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed)
                ^ (state as *const Cell<u64> as u64);
            x = mix(seed) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        // The top 53 bits of the scrambled output, as a fraction.
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn totals(requests: u64, accepts: u64) -> Totals {
        Totals {
            calls: requests,
            failures: requests - accepts,
            slow: 0,
        }
    }

    #[test]
    fn the_probability_is_the_sre_books_formula() {
        assert_eq!(probability(totals(0, 0), 2.0), 0.0);
        assert_eq!(probability(totals(100, 100), 2.0), 0.0);
        assert_eq!(probability(totals(100, 50), 2.0), 0.0);
        assert!((probability(totals(100, 20), 2.0) - 60.0 / 101.0).abs() < 1e-12);
        assert!((probability(totals(100, 0), 1.0) - 100.0 / 101.0).abs() < 1e-12);
        assert_eq!(probability(totals(100, 1), f64::MAX), 0.0, "never NaN");
        assert!((probability(totals(u64::MAX, 0), 2.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn draws_are_uniform_enough_to_refuse_at_the_formulas_rate() {
        // p = 60/101. 200 000 draws: σ of the share ≈ 0.0011; the bound is
        // over 9σ.
        let p = 60.0 / 101.0;
        let n = 200_000;
        let below = (0..n).filter(|_| unit() < p).count();
        let share = below as f64 / f64::from(n);
        assert!((share - p).abs() < 0.01, "{share} against {p}");
        // And every draw is in [0, 1).
        assert!((0..10_000).map(|_| unit()).all(|u| (0.0..1.0).contains(&u)));
    }

    fn probability_at(throttle: &Throttle, now: u64) -> Option<f64> {
        throttle.on().map(|on| on.probability_at(now))
    }

    #[test]
    fn turning_the_throttle_on_starts_from_an_empty_window() {
        let throttle = Throttle::new();
        assert_eq!(throttle.set(Some(2.0)), None);
        for _ in 0..10 {
            throttle.on().unwrap().record(false, 0);
        }
        assert!(probability_at(&throttle, 0).unwrap() > 0.9);
        assert_eq!(throttle.set(None), Some(2.0));
        assert_eq!(probability_at(&throttle, 0), None);
        assert!(throttle.on().is_none(), "off");
        throttle.set(Some(3.0));
        assert_eq!(probability_at(&throttle, 0), Some(0.0));
        assert_eq!(throttle.on().map(On::k), Some(3.0));
    }

    #[test]
    fn a_throttle_never_turned_on_has_no_window() {
        let throttle = Throttle::new();
        assert!(throttle.window.get().is_none());
        assert_eq!(throttle.set(None), None);
        assert!(throttle.window.get().is_none(), "turning it off makes none");
        throttle.set(Some(2.0));
        assert!(throttle.window.get().is_some());
    }

    #[test]
    fn the_window_forgets_requests_older_than_two_seconds() {
        let throttle = Throttle::new();
        throttle.set(Some(2.0));
        for _ in 0..10 {
            throttle.on().unwrap().record(false, 0);
        }
        let later = u64::try_from(WINDOW.as_nanos()).unwrap();
        assert_eq!(probability_at(&throttle, later), Some(0.0));
    }
}
