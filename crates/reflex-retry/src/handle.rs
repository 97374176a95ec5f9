//! [`RetryHandle`]: what a retry layer did, read live.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use reflex_core::Component;
use tokio::time::Instant;

use crate::RetryBudget;

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
        }
    }

    /// Time since `base`, for the budget.
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

/// Marks a request as between attempts (in a retry cycle) for as long as
/// it lives: dropped with the response future, on completion, drop or
/// panic alike.
pub(crate) struct Retrying(Arc<Stats>);

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

/// Reads what a retry layer did: retries made, requests they saved, and
/// the budget left.
///
/// Got from [`RetryLayer::handle`](crate::RetryLayer::handle). Counting
/// happens on the retry path only: a request that succeeds at once is not
/// counted here (the witness counts requests).
///
/// # Clone
///
/// Clones read the same layer.
///
/// # Examples
///
/// ```
/// use reflex_retry::RetryLayer;
///
/// let layer = RetryLayer::builder().build()?;
/// let handle = layer.handle();
/// assert_eq!(handle.metrics().retries, 0);
/// assert!(handle.budget_remaining().is_some(), "a budget is on by default");
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryHandle {
    stats: Arc<Stats>,
}

/// A retry layer's counts, since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryMetrics {
    /// Attempts made beyond the first of their request.
    pub retries: u64,
    /// Requests that succeeded after at least one retry.
    pub recovered: u64,
    /// Requests retried at least once that still ended in a failure.
    pub gave_up: u64,
    /// Retries refused because the budget had none left.
    pub budget_exhausted: u64,
    /// Requests in a retry cycle now (waiting for, or running, an attempt
    /// beyond their first).
    pub retrying: usize,
}

// === impl RetryHandle ===

impl RetryHandle {
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        Self { stats }
    }

    /// The counts now.
    pub fn metrics(&self) -> RetryMetrics {
        let stats = &self.stats;
        RetryMetrics {
            retries: stats.retries.load(Ordering::Relaxed),
            recovered: stats.recovered.load(Ordering::Relaxed),
            gave_up: stats.gave_up.load(Ordering::Relaxed),
            budget_exhausted: stats.budget_exhausted.load(Ordering::Relaxed),
            retrying: stats.retrying.load(Ordering::Relaxed),
        }
    }

    /// Whole retries the budget holds now, or `None` when the layer has no
    /// budget.
    pub fn budget_remaining(&self) -> Option<u64> {
        let stats = &self.stats;
        stats
            .budget
            .as_ref()
            .map(|budget| budget.remaining(stats.now()))
    }

    /// The component the layer retries for.
    pub fn component(&self) -> &Component {
        &self.stats.component
    }
}

impl fmt::Debug for RetryHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryHandle")
            .field("component", &self.stats.component)
            .field("metrics", &self.metrics())
            .finish()
    }
}
