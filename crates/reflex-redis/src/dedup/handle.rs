//! [`FleetDedupHandle`]: what a fleet dedup layer is doing, read live.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use reflex_core::{Component, Signal, Sink};

/// Counts a layer and its handle share.
pub(crate) struct Stats {
    pub(crate) component: Component,
    pub(crate) sink: Sink,
    pub(crate) leader_calls: AtomicU64,
    pub(crate) follower_hits: AtomicU64,
    pub(crate) takeovers: AtomicU64,
    pub(crate) local_fallbacks: AtomicU64,
    pub(crate) waits_timed_out: AtomicU64,
    pub(crate) unshared: AtomicU64,
    pub(crate) waiting: AtomicUsize,
}

/// How a request was answered, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    LeaderCall,
    FollowerHit,
    Takeover,
    LocalFallback,
    WaitTimedOut,
    Unshared,
}

// === impl Stats ===

impl Stats {
    pub(crate) fn new(component: Component, sink: Sink) -> Self {
        Self {
            component,
            sink,
            leader_calls: AtomicU64::new(0),
            follower_hits: AtomicU64::new(0),
            takeovers: AtomicU64::new(0),
            local_fallbacks: AtomicU64::new(0),
            waits_timed_out: AtomicU64::new(0),
            unshared: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    pub(crate) fn count(&self, what: Counted) {
        let counter = match what {
            Counted::LeaderCall => &self.leader_calls,
            Counted::FollowerHit => &self.follower_hits,
            Counted::Takeover => &self.takeovers,
            Counted::LocalFallback => &self.local_fallbacks,
            Counted::WaitTimedOut => &self.waits_timed_out,
            Counted::Unshared => &self.unshared,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if what == Counted::FollowerHit {
            // The other waiters wait on other replicas (or in other
            // requests here): this request is the one this replica knows.
            self.sink
                .emit(&self.component, Signal::Coalesced { waiters: 1 });
        }
    }
}

/// A request waiting on another's call: counted in
/// [`FleetDedupMetrics::waiting`] until dropped.
pub(crate) struct Waiting<'a>(&'a Stats);

impl<'a> Waiting<'a> {
    pub(crate) fn new(stats: &'a Stats) -> Self {
        stats.waiting.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads what a fleet dedup layer is doing on this replica.
///
/// Got from [`FleetDedupLayer::handle`](super::FleetDedupLayer::handle).
/// Counts cover every service the layer made, on this replica only: add
/// the replicas' up for the fleet.
///
/// # Clone
///
/// Clones read the same layer.
///
/// # Examples
///
/// ```no_run
/// use reflex_redis::Fleet;
/// use reflex_redis::dedup::{FleetDedupLayer, RawCodec};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let fleet = Fleet::builder("redis://127.0.0.1:6379").build()?;
/// let layer = FleetDedupLayer::builder(&fleet)
///     .key(|id: &u64| Some(id.to_string()))
///     .codec(RawCodec)
///     .build()?;
/// let metrics = layer.handle().metrics();
/// assert_eq!((metrics.leader_calls, metrics.follower_hits), (0, 0));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FleetDedupHandle {
    stats: Arc<Stats>,
}

/// A fleet dedup layer's counts on this replica, from
/// [`FleetDedupHandle::metrics`]. Each is read on its own (relaxed), so
/// two may be a request apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FleetDedupMetrics {
    /// Keyed requests that took a key's lease at once and called the inner
    /// service for the fleet.
    pub leader_calls: u64,
    /// Requests answered with a result another request (on any replica)
    /// stored, without calling.
    pub follower_hits: u64,
    /// Waiting requests that took a lease over (its leader failed, was
    /// cancelled or died) and called for the fleet.
    pub takeovers: u64,
    /// Keyed requests that called on their own because Redis was down,
    /// slow or in error, their leader's answer was not shared, or a stored
    /// result did not decode.
    pub local_fallbacks: u64,
    /// Waiting requests that called on their own after waiting
    /// [`max_wait`](super::FleetDedupBuilder::max_wait).
    pub waits_timed_out: u64,
    /// Leader calls whose answer was not shared: an error, a response the
    /// codec declined, or one above
    /// [`max_result_bytes`](super::FleetDedupBuilder::max_result_bytes).
    pub unshared: u64,
    /// Requests waiting on another's call now.
    pub waiting: usize,
}

// === impl FleetDedupHandle ===

impl FleetDedupHandle {
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        Self { stats }
    }

    /// The counts now.
    pub fn metrics(&self) -> FleetDedupMetrics {
        let s = &self.stats;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FleetDedupMetrics {
            leader_calls: read(&s.leader_calls),
            follower_hits: read(&s.follower_hits),
            takeovers: read(&s.takeovers),
            local_fallbacks: read(&s.local_fallbacks),
            waits_timed_out: read(&s.waits_timed_out),
            unshared: read(&s.unshared),
            waiting: s.waiting.load(Ordering::Relaxed),
        }
    }

    /// The component the layer guards.
    pub fn component(&self) -> &Component {
        &self.stats.component
    }
}

reflex_core::layer_handle!(FleetDedupHandle => FleetDedupMetrics, Debug);
