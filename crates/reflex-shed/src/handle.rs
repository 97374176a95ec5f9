//! [`ShedHandle`]: live state of a shed layer, and its limit to steer.

use std::sync::Arc;
use std::time::Duration;

use reflex_core::{Component, ConfigError, ShedControl};

use crate::estimator::View;
use crate::shared::Shared;

/// Reads a [`ConcurrencyShedLayer`](crate::ConcurrencyShedLayer)'s live state
/// and steers its limit at run time: sets a fixed one, caps or pins an
/// adaptive one.
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
    /// The limit in force: requests beyond it are shed.
    pub hard_limit: usize,
    /// The soft limit in force, if one was configured: going above it warns.
    pub soft_limit: Option<usize>,
    /// Requests shed since the layer was built.
    pub shed_total: u64,
    /// What set the limit in force.
    pub limit_source: LimitSource,
    /// The limit pinned through [`ShedHandle::pin_limit`], if any.
    pub pinned: Option<usize>,
    /// An adaptive layer's cap from [`ShedHandle::set_hard_limit`], if any.
    pub cap: Option<usize>,
    /// A fleet's cap from [`ShedHandle::set_fleet_cap`], if any (it may be
    /// 0).
    pub fleet_cap: Option<usize>,
    /// The limit the layer would have without its fleet cap: what the
    /// base, the pin and the cap make it. Equal to `hard_limit` when no
    /// fleet cap binds.
    pub local_limit: usize,
    /// An adaptive layer's estimator, `None` for a fixed limit.
    pub adaptive: Option<AdaptiveMetrics>,
    /// Critical requests running now.
    pub critical_in_flight: usize,
}

/// What set a shed layer's limit in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitSource {
    /// The builder's or the handle's hard limit.
    Fixed,
    /// The adaptive estimator.
    Adaptive,
    /// [`ShedHandle::pin_limit`].
    Pinned,
    /// A cap from [`ShedHandle::set_hard_limit`] (a witness's reflex),
    /// below what the limit would be without it.
    Capped,
    /// A fleet's cap from [`ShedHandle::set_fleet_cap`] (a fleet-wide
    /// budget's lease), below what the limit would be without it.
    Fleet,
}

/// An adaptive limit's live numbers, in [`ShedMetrics::adaptive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdaptiveMetrics {
    /// The limit the estimator asks for, whether or not it is in force
    /// (a pin or a cap may override it).
    pub limit: usize,
    /// Windows closed since the layer was built.
    pub windows: u64,
    /// The latency of the last window's successes: the mean of their
    /// middle half.
    pub latency: Option<Duration>,
    /// The gradient's estimate of the latency without load (`None` for
    /// AIMD, and before the first window).
    pub no_load_latency: Option<Duration>,
    /// Whether a probe of the no-load latency is lowering the limit now.
    pub probing: bool,
}

/// One partition's live numbers, from [`ShedHandle::partitions`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PartitionMetrics {
    /// Its guaranteed share of the limit (left by the critical reserve).
    pub share: f64,
    /// Its requests running now.
    pub in_flight: usize,
    /// Its requests shed since the layer was built.
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
        let inputs = self.shared.inputs();
        let adaptive = self.shared.estimator_view().map(adaptive_metrics);
        let uncapped = inputs.pin.unwrap_or(inputs.base);
        let local_limit = inputs.local_limit();
        let limit_source = match (inputs.cap, inputs.pin) {
            _ if inputs.fleet.is_some_and(|fleet| fleet < local_limit) => LimitSource::Fleet,
            (Some(cap), _) if cap < uncapped => LimitSource::Capped,
            (_, Some(_)) => LimitSource::Pinned,
            _ if adaptive.is_some() => LimitSource::Adaptive,
            _ => LimitSource::Fixed,
        };
        ShedMetrics {
            in_flight: self.shared.counter.in_flight(),
            hard_limit: self.shared.counter.hard_limit(),
            soft_limit: self.shared.soft_limit(),
            shed_total: self.shared.shed_total(),
            limit_source,
            pinned: inputs.pin,
            cap: inputs.cap,
            fleet_cap: inputs.fleet,
            local_limit,
            adaptive,
            critical_in_flight: self.shared.critical_in_flight(),
        }
    }

    /// Each partition's live numbers, in the order their shares were
    /// given, then the partition of requests with no listed key; empty
    /// without partitions.
    pub fn partitions(&self) -> Vec<PartitionMetrics> {
        self.shared
            .partitions()
            .map(|p| PartitionMetrics {
                share: p.share,
                in_flight: p.in_flight,
                shed_total: p.shed_total,
            })
            .collect()
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
    /// On a fixed limit: the new limit. Requests already in flight are not
    /// cancelled: after lowering the limit below the in-flight count, new
    /// requests are shed until enough of them finish. A configured soft
    /// limit keeps its proportion of the hard limit (80 of 100 becomes 40
    /// of 50), always below it; where no room is left below it (a hard
    /// limit of 1) there is no soft limit.
    ///
    /// On an adaptive limit: a cap, as a witness's reflex lowers it. Below
    /// the limit the layer would have (its estimate, or its pin), the limit
    /// is `hard_limit` and no more whatever the estimator finds, until a
    /// call at or above that lifts the cap (a reflex restoring the limit it
    /// read before lowering it does just that). The estimator goes on
    /// learning meanwhile.
    ///
    /// Every admission ordered after this call is decided against the new
    /// limit: the limit and the in-flight count are one atomic word.
    ///
    /// Emits [`Signal::HardLimitChanged`](reflex_core::Signal::HardLimitChanged)
    /// when the limit in force changes.
    ///
    /// # Errors
    ///
    /// When `hard_limit` is zero or above 2³¹ − 1; the limit in force is
    /// left as it was.
    pub fn set_hard_limit(&self, hard_limit: usize) -> Result<(), ConfigError> {
        self.shared.set_hard_limit(hard_limit)
    }

    /// Pins the limit at `limit` whatever an adaptive estimator finds (a
    /// fixed limit too, over its hard limit), or, with `None`, lets the
    /// limit go back to what the layer finds or was set to. A cap (from
    /// [`set_hard_limit`](Self::set_hard_limit) on an adaptive limit)
    /// still applies. The estimator goes on learning while pinned.
    ///
    /// Emits [`Signal::HardLimitChanged`](reflex_core::Signal::HardLimitChanged)
    /// when the limit in force changes.
    ///
    /// # Errors
    ///
    /// When `limit` is zero or above 2³¹ − 1; nothing changes.
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_shed::{Adaptive, ConcurrencyShedLayer, LimitSource};
    ///
    /// let handle = ConcurrencyShedLayer::builder()
    ///     .adaptive(Adaptive::gradient().initial(40))
    ///     .build()?
    ///     .handle();
    /// handle.pin_limit(Some(8))?;
    /// assert_eq!(handle.metrics().hard_limit, 8);
    /// assert_eq!(handle.metrics().limit_source, LimitSource::Pinned);
    /// handle.pin_limit(None)?;
    /// assert_eq!(handle.metrics().hard_limit, 40);
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn pin_limit(&self, limit: Option<usize>) -> Result<(), ConfigError> {
        self.shared.pin_limit(limit)
    }

    /// Bounds the limit in force by a fleet's cap, or, with `None`, lifts
    /// that bound. The limit in force becomes the lower of what the layer
    /// would have without it (its fixed or adaptive limit, its pin, its
    /// cap from [`set_hard_limit`](Self::set_hard_limit)) and `cap`.
    ///
    /// This is the seam of a fleet-wide concurrency budget
    /// (`reflex-redis`'s `FleetBudget`): the permits a replica leased from
    /// its fleet. `Some(0)` is allowed and sheds every request: a replica
    /// holding no permits. It is an input of its own: a reflex's
    /// [`set_hard_limit`](Self::set_hard_limit) and an operator's
    /// [`pin_limit`](Self::pin_limit) go on steering the layer's own limit
    /// beneath it, and can still lower the limit in force below it.
    ///
    /// [`hard_limit`](reflex_core::ShedControl::hard_limit) reads the
    /// limit in force, fleet cap included; a reflex that lowers the limit
    /// and later restores what it read restores a value the fleet cap may
    /// have set. Read [`ShedMetrics::local_limit`] to restore the layer's
    /// own.
    ///
    /// Every admission ordered after this call returns is decided against
    /// the new limit, even while another change of the limit is being
    /// written (this call then yields until that writing is done, a few
    /// atomic operations, and writes the limit itself): a budget may read
    /// the calls in flight next and know none is admitted above the larger
    /// of that count and `cap`. Requests in flight above a lowered limit
    /// finish. The fixed limit's admission is still one compare-and-swap.
    /// Changes are logged at DEBUG and emit no signal (they are as frequent
    /// as a budget's renewals).
    ///
    /// # Errors
    ///
    /// When `cap` is above 2³¹ − 1; nothing changes.
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_shed::{ConcurrencyShedLayer, LimitSource};
    ///
    /// let handle = ConcurrencyShedLayer::builder().hard_limit(50).build()?.handle();
    /// handle.set_fleet_cap(Some(12))?;
    /// let metrics = handle.metrics();
    /// assert_eq!((metrics.hard_limit, metrics.local_limit), (12, 50));
    /// assert_eq!(metrics.limit_source, LimitSource::Fleet);
    ///
    /// // A reflex still lowers the limit beneath the fleet's cap.
    /// handle.set_hard_limit(5)?;
    /// assert_eq!(handle.metrics().hard_limit, 5);
    ///
    /// // No permits: every request is shed.
    /// handle.set_fleet_cap(Some(0))?;
    /// assert_eq!(handle.metrics().hard_limit, 0);
    /// handle.set_fleet_cap(None)?;
    /// assert_eq!(handle.metrics().hard_limit, 5);
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn set_fleet_cap(&self, cap: Option<usize>) -> Result<(), ConfigError> {
        self.shared.set_fleet_cap(cap)
    }
}

fn adaptive_metrics(view: View) -> AdaptiveMetrics {
    let duration = |ns: f64| (ns > 0.0).then(|| Duration::from_nanos(ns as u64));
    AdaptiveMetrics {
        limit: view.limit,
        windows: view.windows,
        latency: duration(view.latency_ns),
        no_load_latency: duration(view.baseline_ns),
        probing: view.probing,
    }
}

reflex_core::layer_handle!(ShedHandle => ShedMetrics, Debug);

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
        // A soft limit is at least 1; the hard limit may be 0 (a fleet cap
        // of 0), where a count of 1 stands in: no division by zero.
        let reference = self.soft_limit.unwrap_or(self.hard_limit).max(1);
        self.in_flight as f64 / reference as f64
    }
}
