//! [`ShedHandle`]: live state of a shed layer, and its hard limit to steer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reflex_core::{Component, ConfigError};

use crate::shared::Shared;

/// Reads a [`ConcurrencyShedLayer`](crate::ConcurrencyShedLayer)'s live state
/// and changes its hard limit at run time.
///
/// Got from [`ConcurrencyShedLayer::handle`](crate::ConcurrencyShedLayer::handle).
/// Every read is one atomic load: cheap enough to poll for a dashboard.
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
/// assert_eq!(handle.in_flight(), 0);
/// assert_eq!(handle.soft_depth_ratio(), 0.0);
///
/// // An operator, or a reflex, halves the limit; the soft limit follows.
/// handle.set_hard_limit(50)?;
/// assert_eq!(handle.hard_limit(), 50);
/// assert_eq!(handle.soft_limit(), Some(40));
/// assert!(handle.set_hard_limit(0).is_err());
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct ShedHandle {
    shared: Arc<Shared>,
}

// === impl ShedHandle ===

impl ShedHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Requests running in the inner service now.
    pub fn in_flight(&self) -> usize {
        self.shared.counter.in_flight()
    }

    /// The hard limit in force: requests beyond it are shed.
    pub fn hard_limit(&self) -> usize {
        self.shared.counter.hard_limit()
    }

    /// The soft limit in force, if one was configured: going above it warns.
    pub fn soft_limit(&self) -> Option<usize> {
        self.shared.soft_limit()
    }

    /// How deep into its soft limit the layer is: in-flight requests divided
    /// by the soft limit, so `1.0` is at the soft limit and above `1.0` is
    /// over it. With no soft limit configured the hard limit stands in.
    pub fn soft_depth_ratio(&self) -> f64 {
        // Both limits are at least 1: no division by zero.
        let reference = self.soft_limit().unwrap_or_else(|| self.hard_limit());
        self.in_flight() as f64 / reference as f64
    }

    /// Requests shed since the layer was built.
    pub fn shed_total(&self) -> u64 {
        self.shared.shed_total()
    }

    /// What a shed request's rejection tells its caller to wait before
    /// trying again.
    pub fn retry_after(&self) -> Option<Duration> {
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
            .field("in_flight", &self.in_flight())
            .field("hard_limit", &self.hard_limit())
            .field("soft_limit", &self.soft_limit())
            .field("shed_total", &self.shed_total())
            .finish()
    }
}

impl reflex_core::ShedControl for ShedHandle {
    fn hard_limit(&self) -> usize {
        Self::hard_limit(self)
    }

    fn set_hard_limit(&self, limit: usize) -> Result<(), ConfigError> {
        Self::set_hard_limit(self, limit)
    }
}
