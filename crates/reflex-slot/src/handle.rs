//! [`SlotHandle`]: live state of a slot layer.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::table::Table;

/// Reads a [`SlotAdmissionLayer`](crate::SlotAdmissionLayer)'s busy slots,
/// queues and totals.
///
/// # Clone
///
/// Clones read the same table.
pub struct SlotHandle<K: Hash + Eq + Clone> {
    table: Arc<Table<K>>,
}

/// Admission decisions since the layer was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SlotTotals {
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

// === impl SlotHandle ===

impl<K: Hash + Eq + Clone> SlotHandle<K> {
    pub(crate) fn new(table: Arc<Table<K>>) -> Self {
        Self { table }
    }

    /// Slots with a running request: the slots kept in memory (idle slots
    /// are removed).
    pub fn busy_slots(&self) -> usize {
        self.table.busy_slots()
    }

    /// `true` when `slot` has a running request.
    pub fn is_busy(&self, slot: &K) -> bool {
        self.table.is_busy(slot)
    }

    /// Requests waiting in `slot`'s queue.
    pub fn queue_depth(&self, slot: &K) -> usize {
        self.table.queue_depth(slot)
    }

    /// Requests waiting in all queues.
    pub fn waiting(&self) -> usize {
        self.table.waiting()
    }

    /// Decisions since the layer was built.
    pub fn totals(&self) -> SlotTotals {
        let t = &self.table.totals;
        SlotTotals {
            started: t.started.load(Ordering::Relaxed),
            queued: t.queued.load(Ordering::Relaxed),
            replaced: t.replaced.load(Ordering::Relaxed),
            busy: t.busy.load(Ordering::Relaxed),
            queue_full: t.queue_full.load(Ordering::Relaxed),
            abandoned: t.abandoned.load(Ordering::Relaxed),
        }
    }
}

impl<K: Hash + Eq + Clone> Clone for SlotHandle<K> {
    fn clone(&self) -> Self {
        Self {
            table: Arc::clone(&self.table),
        }
    }
}

impl<K: Hash + Eq + Clone> fmt::Debug for SlotHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotHandle")
            .field("component", &self.table.component)
            .field("busy_slots", &self.busy_slots())
            .field("waiting", &self.waiting())
            .finish()
    }
}
