//! [`Room`]: whether a full keyed layer should search its breakers for an
//! idle one to evict.
//!
//! A search locks every shard and looks at every kept breaker. When the
//! layer is full and none is idle (every breaker busy, open or set by
//! hand), searching again for the next new key would find nothing again:
//! so after a search that found nothing, new keys go straight to the
//! default breaker, without a search, until one of the layer's breakers
//! closes (a probe succeeded, or a reset: it may now be evicted) or
//! [`QUIET`] has passed (calls in flight end, open durations run out: no
//! one is told of those). At most one fruitless search per closing
//! breaker or per [`QUIET`], however many new keys arrive.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How long new keys skip the search after one found nothing idle, unless
/// a breaker closes meanwhile.
pub(crate) const QUIET: Duration = Duration::from_millis(10);

/// Whether searching for an idle breaker is worth it, and what searches
/// cost.
#[derive(Debug)]
pub(crate) struct Room {
    /// Bumped by the layer's breakers each time one closes.
    closes: Arc<AtomicU64>,
    /// `closes` when a search last found nothing idle.
    barren_at: AtomicU64,
    /// Nanoseconds since `base` until which new keys skip the search,
    /// unless a breaker closed since it found nothing.
    quiet_until: AtomicU64,
    base: Instant,
    /// Searches made since the layer was built.
    searches: AtomicU64,
}

/// A search under way: what [`Room::found_nothing`] remembers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Search {
    closes: u64,
    now: u64,
}

// === impl Room ===

impl Room {
    pub(crate) fn new() -> Self {
        Self {
            closes: Arc::new(AtomicU64::new(0)),
            barren_at: AtomicU64::new(0),
            quiet_until: AtomicU64::new(0),
            base: Instant::now(),
            searches: AtomicU64::new(0),
        }
    }

    /// The count of closes the layer's breakers bump.
    pub(crate) fn closes(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.closes)
    }

    /// A search for an idle breaker, unless the last one found none and
    /// neither a close nor [`QUIET`] has passed since.
    pub(crate) fn search(&self) -> Option<Search> {
        let closes = self.closes.load(Ordering::Acquire);
        let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if now < self.quiet_until.load(Ordering::Acquire)
            && self.barren_at.load(Ordering::Acquire) == closes
        {
            return None;
        }
        self.searches.fetch_add(1, Ordering::Relaxed);
        Some(Search { closes, now })
    }

    /// `search` found no idle breaker: skip the next ones for a while.
    pub(crate) fn found_nothing(&self, search: Search) {
        let quiet = u64::try_from(QUIET.as_nanos()).unwrap_or(u64::MAX);
        self.barren_at.store(search.closes, Ordering::Release);
        self.quiet_until
            .store(search.now.saturating_add(quiet), Ordering::Release);
    }

    /// Searches made since the layer was built.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn searches(&self) -> u64 {
        self.searches.load(Ordering::Relaxed)
    }
}
