//! The guards a request holds on the table: a [`SlotGuard`] while it runs,
//! a [`WaiterGuard`] while it waits. Dropping one is how its request leaves.

use std::hash::Hash;
use std::sync::Arc;

use reflex_core::Component;

use super::Table;

/// A running request's hold on its slot. Dropped, it hands the slot to the
/// next waiter, or removes the slot when nobody waits.
pub(crate) struct SlotGuard<K: Hash + Eq + Clone> {
    table: Arc<Table<K>>,
    key: K,
    id: u64,
    /// Unset for a guard that never became a slot's holder (its grant
    /// could not be delivered): dropping it changes nothing.
    armed: bool,
}

/// A waiting request's place in its slot's queue. Dropped, it leaves the
/// queue (a no-op once it was granted or replaced).
pub(crate) struct WaiterGuard<K: Hash + Eq + Clone> {
    table: Arc<Table<K>>,
    key: K,
    id: u64,
    /// Unset once the waiter heard from its slot: whoever granted or
    /// replaced it took it out of the queue already.
    queued: bool,
}

// === impl SlotGuard ===

impl<K: Hash + Eq + Clone> SlotGuard<K> {
    /// The holder of `key`'s slot as runner `id`.
    pub(super) fn new(table: Arc<Table<K>>, key: K, id: u64) -> Self {
        Self {
            table,
            key,
            id,
            armed: true,
        }
    }

    /// This guard never became its slot's holder (its grant could not be
    /// delivered): dropping it must leave the slot alone.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }

    pub(crate) fn component(&self) -> &Component {
        &self.table.component
    }
}

impl<K: Hash + Eq + Clone> Drop for SlotGuard<K> {
    fn drop(&mut self) {
        if self.armed {
            self.table.release(&self.key, self.id);
        }
    }
}

// === impl WaiterGuard ===

impl<K: Hash + Eq + Clone> WaiterGuard<K> {
    /// Waiter `id` in `key`'s queue.
    pub(super) fn new(table: Arc<Table<K>>, key: K, id: u64) -> Self {
        Self {
            table,
            key,
            id,
            queued: true,
        }
    }

    pub(crate) fn component(&self) -> &Component {
        &self.table.component
    }

    /// The waiter heard from its slot (a grant or a replacement), which
    /// took it out of the queue: leaving needs no lock.
    pub(crate) fn answered(mut self) {
        self.queued = false;
    }

    /// The waiter's sender was dropped without a word, which took it out of
    /// the queue unsignalled (only a panic of the key's `Clone` while its
    /// slot was handed on does that): it leaves as abandoned.
    pub(crate) fn dropped_unanswered(mut self) {
        self.queued = false;
        self.table.abandoned(1);
    }
}

impl<K: Hash + Eq + Clone> Drop for WaiterGuard<K> {
    fn drop(&mut self) {
        if self.queued {
            self.table.leave_queue(&self.key, self.id);
        }
    }
}
