//! [`ShedHandle`]: live state of a shed layer, and its hard limit to steer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reflex_core::{Component, ConfigError, LayerHandle, ShedControl};

use crate::shared::Shared;

/// Reads a [`ConcurrencyShedLayer`](crate::ConcurrencyShedLayer)'s live state
/// and changes its hard limit at run time.
///
/// Got from [`ConcurrencyShedLayer::handle`](crate::ConcurrencyShedLayer::handle).
/// Reading its [`metrics`](Self::metrics) is a few atomic loads: cheap
/// enough to poll for a dashboard.
///
/// # Clone
///
/// Clones read and steer the same layer.
///
/// # Examples
///
/// ```
/// use reflex_shed::ConcurrencyShedLayer;
///
/// let layer = ConcurrencyShedLayer::builder().hard_limit(100).soft_limit(80).build()?;
/// let handle = layer.handle();
/// let metrics = handle.metrics();
/// assert_eq!(metrics.in_flight, 0);
/// assert_eq!(metrics.soft_depth_ratio(), 0.0);
///
/// // An operator, or a reflex, halves the limit; the soft limit follows.
/// handle.set_hard_limit(50)?;
/// let metrics = handle.metrics();
/// assert_eq!((metrics.hard_limit, metrics.soft_limit), (50, Some(40)));
/// assert!(handle.set_hard_limit(0).is_err());
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct ShedHandle {
    shared: Arc<Shared>,
}

/// A shed layer's live numbers, from [`ShedHandle::metrics`].
///
/// Each number is read on its own (relaxed): two may be a request apart.
///
/// # Examples
///
/// ```
/// use reflex_shed::ConcurrencyShedLayer;
///
/// let metrics = ConcurrencyShedLayer::builder().hard_limit(4).build()?.handle().metrics();
/// assert_eq!((metrics.in_flight, metrics.hard_limit, metrics.soft_limit), (0, 4, None));
/// assert_eq!(metrics.shed_total, 0);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShedMetrics {
    /// Requests running in the inner service now.
    pub in_flight: usize,
    /// The hard limit in force: requests beyond it are shed.
    pub hard_limit: usize,
    /// The soft limit in force, if one was configured: going above it warns.
    pub soft_limit: Option<usize>,
    /// Requests shed since the layer was built.
    pub shed_total: u64,
}

// === impl ShedHandle ===

impl ShedHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The layer's live numbers now: requests in flight, the limits in
    /// force, requests shed.
    pub fn metrics(&self) -> ShedMetrics {
        ShedMetrics {
            in_flight: self.shared.counter.in_flight(),
            hard_limit: self.shared.counter.hard_limit(),
            soft_limit: self.shared.soft_limit(),
            shed_total: self.shared.shed_total(),
        }
    }

    /// What a shed request's rejection tells its caller to wait before
    /// trying again.
    pub fn retry_after(&self) -> Duration {
        self.shared.retry_after()
    }

    /// The component this layer guards.
    pub fn component(&self) -> &Component {
        self.shared.component()
    }

    /// Sets the hard limit for every request admitted from now on.
    ///
    /// Requests already in flight are not cancelled: after lowering the
    /// limit below the in-flight count, new requests are shed until enough
    /// of them finish. A configured soft limit keeps its proportion of the
    /// hard limit (80 of 100 becomes 40 of 50), always below it; where no
    /// room is left below it (a hard limit of 1) there is no soft limit.
    ///
    /// Every admission ordered after this call is decided against the new
    /// limit: the limit and the in-flight count are one atomic word.
    ///
    /// Emits [`Signal::HardLimitChanged`](reflex_core::Signal::HardLimitChanged)
    /// when the limit changes.
    ///
    /// # Errors
    ///
    /// When `hard_limit` is zero or above 2³¹ − 1; the limit in force is
    /// left as it was.
    pub fn set_hard_limit(&self, hard_limit: usize) -> Result<(), ConfigError> {
        self.shared.set_hard_limit(hard_limit)
    }
}

impl fmt::Debug for ShedHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShedHandle")
            .field("component", self.component())
            .field("metrics", &self.metrics())
            .finish()
    }
}

impl LayerHandle for ShedHandle {
    type Metrics = ShedMetrics;

    fn component(&self) -> &Component {
        Self::component(self)
    }

    fn metrics(&self) -> ShedMetrics {
        Self::metrics(self)
    }
}

impl ShedControl for ShedHandle {
    fn hard_limit(&self) -> usize {
        self.shared.counter.hard_limit()
    }

    fn set_hard_limit(&self, limit: usize) -> Result<(), ConfigError> {
        Self::set_hard_limit(self, limit)
    }
}

// === impl ShedMetrics ===

impl ShedMetrics {
    /// How deep into its soft limit the layer was: requests in flight
    /// divided by the soft limit, so `1.0` is at the soft limit and above
    /// `1.0` is over it. With no soft limit configured the hard limit
    /// stands in.
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_shed::ConcurrencyShedLayer;
    ///
    /// let handle = ConcurrencyShedLayer::builder().hard_limit(8).build()?.handle();
    /// assert_eq!(handle.metrics().soft_depth_ratio(), 0.0);
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn soft_depth_ratio(&self) -> f64 {
        // Both limits are at least 1: no division by zero.
        let reference = self.soft_limit.unwrap_or(self.hard_limit);
        self.in_flight as f64 / reference as f64
    }
}
