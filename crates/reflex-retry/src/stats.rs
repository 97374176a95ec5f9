//! [`Stats`]: the counts, the budget and the jitter's random numbers a
//! layer, its futures and its handle share; and the guard that counts a
//! request while it retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use reflex_core::Component;
use reflex_core::log_limit::LogLimit;
use tokio::time::Instant;

use crate::budget::RetryBudget;

/// What a layer and its handle share: counts, the budget and the clock.
pub(crate) struct Stats {
    pub(crate) component: Component,
    pub(crate) budget: Option<RetryBudget>,
    /// The budget's time is measured from here.
    pub(crate) base: Instant,
    pub(crate) retries: AtomicU64,
    pub(crate) recovered: AtomicU64,
    pub(crate) gave_up: AtomicU64,
    pub(crate) budget_exhausted: AtomicU64,
    pub(crate) retrying: AtomicUsize,
    /// Jitter's random numbers: a splitmix64 sequence.
    pub(crate) rng: AtomicU64,
    /// How often the budget's refusals are summed up in the log.
    pub(crate) budget_refusals: LogLimit,
}

// === impl Stats ===

impl Stats {
    pub(crate) fn new(component: Component, budget: Option<RetryBudget>, seed: u64) -> Self {
        Self {
            component,
            budget,
            base: Instant::now(),
            retries: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            budget_exhausted: AtomicU64::new(0),
            retrying: AtomicUsize::new(0),
            rng: AtomicU64::new(seed),
            budget_refusals: LogLimit::summary(),
        }
    }

    /// Time since `base`, for the budget and the log limiter.
    pub(crate) fn now(&self) -> std::time::Duration {
        self.base.elapsed()
    }

    /// A uniform sample in `[0, 1)`.
    pub(crate) fn unit(&self) -> f64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Marks a request as in a retry cycle for as long as it lives: dropped
/// with the response future, on completion, drop or panic alike.
pub(crate) struct Retrying(Arc<Stats>);

// === impl Retrying ===

impl Retrying {
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        stats.retrying.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for Retrying {
    fn drop(&mut self) {
        self.0.retrying.fetch_sub(1, Ordering::Relaxed);
    }
}
