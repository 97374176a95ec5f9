//! [`RetryHandle`]: what a retry layer did, read live as
//! [`RetryMetrics`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use reflex_core::Component;

use crate::stats::Stats;

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
/// let metrics = layer.handle().metrics();
/// assert_eq!(metrics.retries, 0);
/// assert!(metrics.budget_remaining.is_some(), "a budget is on by default");
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryHandle {
    stats: Arc<Stats>,
}

/// A retry layer's live numbers: its counts since it was built, and the
/// budget it has left now.
///
/// # Examples
///
/// ```
/// use reflex_retry::RetryLayer;
///
/// let layer = RetryLayer::builder().no_budget().build()?;
/// let metrics = layer.handle().metrics();
/// assert_eq!((metrics.retries, metrics.retrying), (0, 0));
/// assert_eq!(metrics.budget_remaining, None, "no budget");
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryMetrics {
    /// Attempts made beyond the first of their request.
    pub retries: u64,
    /// Requests that succeeded after at least one retry.
    pub recovered: u64,
    /// Requests retried at least once that still ended in a failure, and
    /// requests whose retry was dropped because the request could no
    /// longer be sent ([`Policy::can_send`](crate::Policy::can_send)).
    pub gave_up: u64,
    /// Retries refused because the budget had none left.
    pub budget_exhausted: u64,
    /// Requests in a retry cycle now (waiting for, or running, an attempt
    /// beyond their first).
    pub retrying: usize,
    /// Whole retries the budget holds now, or `None` when the layer has no
    /// budget.
    pub budget_remaining: Option<u64>,
}

// === impl RetryHandle ===

impl RetryHandle {
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        Self { stats }
    }

    /// The live numbers now: the counts, and the budget left (read at the
    /// time of the call, expiring what is old).
    pub fn metrics(&self) -> RetryMetrics {
        let stats = &self.stats;
        RetryMetrics {
            retries: stats.retries.load(Ordering::Relaxed),
            recovered: stats.recovered.load(Ordering::Relaxed),
            gave_up: stats.gave_up.load(Ordering::Relaxed),
            budget_exhausted: stats.budget_exhausted.load(Ordering::Relaxed),
            retrying: stats.retrying.load(Ordering::Relaxed),
            budget_remaining: stats
                .budget
                .as_ref()
                .map(|budget| budget.remaining(stats.now())),
        }
    }

    /// The component the layer retries for.
    pub fn component(&self) -> &Component {
        &self.stats.component
    }
}

reflex_core::layer_handle!(RetryHandle => RetryMetrics, Debug);
