//! [`SlotMetrics`]: a slot layer's live numbers, and the counts of
//! admission decisions behind them.

use crate::loom::{AtomicU64, Ordering};

/// A slot layer's live numbers, from
/// [`SlotHandle::metrics`](crate::SlotHandle::metrics).
///
/// The counts only grow, from the layer's build on; each number is read
/// on its own (relaxed), so two may be a request apart.
///
/// # Examples
///
/// ```
/// use reflex_slot::SlotAdmissionLayer;
///
/// let layer = SlotAdmissionLayer::builder().key(|n: &u32| Some(*n)).build()?;
/// let metrics = layer.handle().metrics();
/// assert_eq!((metrics.busy_slots, metrics.waiting, metrics.started), (0, 0, 0));
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SlotMetrics {
    /// Slots with a running request now: the slots kept in memory (idle
    /// slots are removed).
    pub busy_slots: usize,
    /// Requests waiting in all queues now.
    pub waiting: usize,
    /// Requests that took their slot (at once or from a queue).
    pub started: u64,
    /// Requests that joined a queue.
    pub queued: u64,
    /// Requests replaced (running or waiting).
    pub replaced: u64,
    /// Requests refused with `SlotBusy`.
    pub busy: u64,
    /// Requests refused with `SlotQueueFull`.
    pub queue_full: u64,
    /// Requests that left a queue without running and without being
    /// replaced: their callers dropped them while they waited. Every
    /// queued request ends once as a start, a replacement or this.
    pub abandoned: u64,
}

/// Counts per decision, since the layer was built.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) started: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) replaced: AtomicU64,
    pub(crate) busy: AtomicU64,
    pub(crate) queue_full: AtomicU64,
    pub(crate) abandoned: AtomicU64,
}

// === impl Totals ===

impl Totals {
    /// The counts now, beside the gauges the table read.
    pub(crate) fn metrics(&self, busy_slots: usize, waiting: usize) -> SlotMetrics {
        SlotMetrics {
            busy_slots,
            waiting,
            started: self.started.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            replaced: self.replaced.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed),
            queue_full: self.queue_full.load(Ordering::Relaxed),
            abandoned: self.abandoned.load(Ordering::Relaxed),
        }
    }
}
