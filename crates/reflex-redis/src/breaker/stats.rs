//! [`SharedBreakerStats`]: what a shared breaker learned from its fleet.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a [`SharedBreaker`](super::SharedBreaker) learned from its fleet,
/// from [`SharedBreaker::stats`](super::SharedBreaker::stats). The breaker's
/// own numbers (state, window, refusals) are its
/// [`metrics`](reflex_breaker::Backend::metrics).
///
/// # Examples
///
/// ```
/// use reflex_redis::breaker::SharedBreakerStats;
///
/// let stats = SharedBreakerStats::default();
/// assert_eq!((stats.fleet_calls, stats.trips_heard), (0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SharedBreakerStats {
    /// Calls in the fleet's window at the last flush (every replica's).
    pub fleet_calls: u64,
    /// Failures in the fleet's window at the last flush.
    pub fleet_failures: u64,
    /// Slow calls in the fleet's window at the last flush.
    pub fleet_slow: u64,
    /// Flushes of this replica's counts that Redis answered.
    pub flushes: u64,
    /// Times the fleet's counts tripped this replica's breaker.
    pub fleet_trips: u64,
    /// Times another replica's trip opened this replica's breaker.
    pub trips_heard: u64,
    /// Times another replica's close closed this replica's breaker.
    pub closes_heard: u64,
    /// Times this replica told the fleet its breaker opened or closed.
    pub announced: u64,
    /// Probe leases this replica holds now, unused.
    pub leases_held: u32,
    /// Probe leases this replica took since it was built.
    pub leases_taken: u64,
    /// Probe calls refused for want of a lease.
    pub lease_refusals: u64,
    /// Times the breaker opened on resync: the fleet was open when the
    /// link came back.
    pub resync_trips: u64,
}

/// The live counters behind [`SharedBreakerStats`] (all but the leases
/// held, kept by the breaker).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) fleet_calls: AtomicU64,
    pub(crate) fleet_failures: AtomicU64,
    pub(crate) fleet_slow: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) fleet_trips: AtomicU64,
    pub(crate) trips_heard: AtomicU64,
    pub(crate) closes_heard: AtomicU64,
    pub(crate) announced: AtomicU64,
    pub(crate) leases_taken: AtomicU64,
    pub(crate) lease_refusals: AtomicU64,
    pub(crate) resync_trips: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(&self, leases_held: u32) -> SharedBreakerStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SharedBreakerStats {
            fleet_calls: load(&self.fleet_calls),
            fleet_failures: load(&self.fleet_failures),
            fleet_slow: load(&self.fleet_slow),
            flushes: load(&self.flushes),
            fleet_trips: load(&self.fleet_trips),
            trips_heard: load(&self.trips_heard),
            closes_heard: load(&self.closes_heard),
            announced: load(&self.announced),
            leases_held,
            leases_taken: load(&self.leases_taken),
            lease_refusals: load(&self.lease_refusals),
            resync_trips: load(&self.resync_trips),
        }
    }
}
