//! [`DedupHandle`]: what a dedup layer is doing, read live.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use reflex_core::{Component, Signal, Sink};

use crate::logs::Logs;

/// Counts a layer and its handle share.
pub(crate) struct Stats {
    pub(crate) component: Component,
    pub(crate) sink: Sink,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) coalesced: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_entries: AtomicUsize,
    pub(crate) cache_bytes: AtomicUsize,
    pub(crate) aborted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) logs: Logs,
}

// === impl Stats ===

impl Stats {
    pub(crate) fn new(component: Component, sink: Sink) -> Self {
        Self {
            component,
            sink,
            in_flight: AtomicUsize::new(0),
            coalesced: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_entries: AtomicUsize::new(0),
            cache_bytes: AtomicUsize::new(0),
            aborted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            logs: Logs::new(),
        }
    }

    /// Adds the change of one cache (every service the layer made has its
    /// own) to the layer's totals.
    pub(crate) fn cache_changed(&self, entries: (usize, usize), bytes: (usize, usize)) {
        let apply = |counter: &AtomicUsize, (before, after): (usize, usize)| {
            if after >= before {
                counter.fetch_add(after - before, Ordering::Relaxed);
            } else {
                counter.fetch_sub(before - after, Ordering::Relaxed);
            }
        };
        apply(&self.cache_entries, entries);
        apply(&self.cache_bytes, bytes);
    }

    pub(crate) fn emit(&self, signal: Signal) {
        self.sink.emit(&self.component, signal);
    }
}

/// Reads what a dedup layer is doing: keys in flight, requests coalesced,
/// cache hits and size.
///
/// Got from [`DedupLayer::handle`](crate::DedupLayer::handle) (or the
/// `http` layer's, or [`Handled::handle`](reflex_core::Handled::handle)).
/// Counts cover every service the layer made. Its live numbers are
/// [`metrics`](Self::metrics), the same as
/// [`LayerHandle::metrics`](reflex_core::LayerHandle::metrics).
///
/// # Clone
///
/// Clones read the same layer.
///
/// # Examples
///
/// ```
/// use reflex_dedup::DedupLayer;
///
/// let layer = DedupLayer::builder().key(|n: &u64| Some(*n)).build()?;
/// let metrics = layer.handle().metrics();
/// assert_eq!((metrics.in_flight_keys, metrics.coalesced), (0, 0));
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct DedupHandle {
    stats: Arc<Stats>,
}

/// A dedup layer's live numbers: its state and counts at one moment, from
/// [`DedupHandle::metrics`]. Each is read on its own (relaxed), so two may
/// be a request apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DedupMetrics {
    /// Distinct keys with a call in flight now.
    pub in_flight_keys: usize,
    /// Requests that waited on another's call instead of making their own,
    /// since the layer was built.
    pub coalesced: u64,
    /// Requests answered from the cache (stale answers included).
    pub cache_hits: u64,
    /// Answers in the cache now.
    pub cache_entries: usize,
    /// Their weight (bytes, for http bodies) now.
    pub cache_bytes: usize,
    /// Shared calls that ended without an answer (the inner call panicked).
    pub aborted: u64,
    /// Requests refused: a duplicate in `InProgress` mode, or a new key
    /// beyond the bound.
    pub refused: u64,
}

// === impl DedupHandle ===

impl DedupHandle {
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        Self { stats }
    }

    /// The state and counts now.
    pub fn metrics(&self) -> DedupMetrics {
        let s = &self.stats;
        DedupMetrics {
            in_flight_keys: s.in_flight.load(Ordering::Relaxed),
            coalesced: s.coalesced.load(Ordering::Relaxed),
            cache_hits: s.cache_hits.load(Ordering::Relaxed),
            cache_entries: s.cache_entries.load(Ordering::Relaxed),
            cache_bytes: s.cache_bytes.load(Ordering::Relaxed),
            aborted: s.aborted.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
        }
    }

    /// The component the layer guards.
    pub fn component(&self) -> &Component {
        &self.stats.component
    }
}

reflex_core::layer_handle!(DedupHandle => DedupMetrics, Debug);
