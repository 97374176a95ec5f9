//! The slot table: which slots are running, and who waits for each.
//!
//! Every change of a slot happens under its shard's lock and is tied to a
//! guard: a running request holds a [`SlotGuard`] whose drop hands the slot
//! to the next waiter or removes the slot; a waiting request holds a
//! [`WaiterGuard`] whose drop takes it out of the queue. No state change
//! travels as a message that could be missed, so no slot can be stuck.
//!
//! Every request that joins a queue (`SlotQueued`) leaves it exactly once,
//! and says so: whoever takes it out of the queue, under the shard's lock,
//! signals why after the lock is gone. [`Table::release`] grants it
//! (`SlotStarted { waited: true }`) or finds its caller gone
//! (`SlotAbandoned`); a Replace newcomer replaces it (`SlotReplaced {
//! was_running: false }`) or finds its caller gone (`SlotAbandoned`); its
//! own [`WaiterGuard`], dropped while it is still queued, takes it out
//! (`SlotAbandoned`). A waiter's sender dropped without a word (only a
//! panic of the key's `Clone` while the slot was handed on can do that) is
//! signalled by the waiter itself. The table outlives its waiters (each
//! guard holds it), so no waiter is dropped with it.

use std::collections::VecDeque;
use std::hash::Hash;
use std::sync::Arc;

use reflex_core::shard::{ShardMap, Shards};
use reflex_core::{Component, RejectKind, Signal, Sink};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::logs::Logs;
use crate::loom::{AtomicU64, AtomicUsize, Ordering};
use crate::metrics::{SlotMetrics, Totals};
use crate::policy::Policy;

mod guard;

pub(crate) use guard::{SlotGuard, WaiterGuard};

const SHARDS: usize = 16;

/// What a waiting request receives.
pub(crate) enum Grant<K: Hash + Eq + Clone> {
    /// The slot is yours: run, and drop the guard when done. The token is
    /// there when the layer may replace running requests.
    Start(SlotGuard<K>, Option<CancellationToken>),
    /// A newer request replaced you.
    Replaced,
}

/// What [`Table::admit`] decided.
pub(crate) enum Admission<K: Hash + Eq + Clone> {
    /// Run now.
    Start(SlotGuard<K>, Option<CancellationToken>),
    /// Wait for a grant.
    Wait(oneshot::Receiver<Grant<K>>, WaiterGuard<K>),
    /// Refused at once.
    Refused(RejectKind),
}

struct Running {
    id: u64,
    /// Only when the layer may replace running requests: making a token
    /// allocates, and nothing else needs one.
    cancel: Option<CancellationToken>,
}

struct Waiter<K: Hash + Eq + Clone> {
    id: u64,
    grant: oneshot::Sender<Grant<K>>,
}

struct Slot<K: Hash + Eq + Clone> {
    running: Option<Running>,
    queue: VecDeque<Waiter<K>>,
}

pub(crate) struct Table<K: Hash + Eq + Clone> {
    /// The busy slots by key (the shards' hasher is seeded per process:
    /// keys come from requests).
    slots: ShardMap<K, Slot<K>>,
    next_id: AtomicU64,
    waiting: AtomicUsize,
    queue_limit: usize,
    global_queue_limit: usize,
    may_replace: bool,
    pub(crate) component: Component,
    sink: Sink,
    pub(crate) totals: Totals,
    logs: Logs,
}

// === impl Table ===

impl<K: Hash + Eq + Clone> Table<K> {
    pub(crate) fn new(
        queue_limit: usize,
        global_queue_limit: usize,
        may_replace: bool,
        component: Component,
        sink: Sink,
    ) -> Self {
        Self {
            slots: Shards::maps(SHARDS),
            next_id: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            queue_limit,
            global_queue_limit,
            may_replace,
            component,
            sink,
            totals: Totals::default(),
            logs: Logs::new(),
        }
    }

    fn emit(&self, signal: Signal) {
        self.sink.emit(&self.component, signal);
    }

    fn running(&self) -> (u64, Option<CancellationToken>) {
        (
            self.next_id.fetch_add(1, Ordering::Relaxed),
            self.may_replace.then(CancellationToken::new),
        )
    }

    /// Decides what a request for `key` under `policy` does.
    pub(crate) fn admit(self: &Arc<Self>, key: K, policy: Policy) -> Admission<K> {
        let mut shard = self.slots.lock_key(&key);
        let slot = shard.entry(key.clone()).or_insert_with(|| Slot {
            running: None,
            queue: VecDeque::new(),
        });
        if slot.running.is_none() {
            // Idle (a slot with waiters always has a runner).
            let (id, cancel) = self.running();
            slot.running = Some(Running {
                id,
                cancel: cancel.clone(),
            });
            drop(shard);
            self.totals.started.fetch_add(1, Ordering::Relaxed);
            self.emit(Signal::SlotStarted { waited: false });
            return Admission::Start(SlotGuard::new(Arc::clone(self), key, id), cancel);
        }
        match policy {
            Policy::DropIfRunning => {
                drop(shard);
                self.totals.busy.fetch_add(1, Ordering::Relaxed);
                self.emit(Signal::SlotBusy);
                self.logs.refused(&self.component, RejectKind::SlotBusy);
                Admission::Refused(RejectKind::SlotBusy)
            }
            Policy::Queue => {
                if slot.queue.len() >= self.queue_limit || !self.reserve_waiter() {
                    drop(shard);
                    return self.queue_full();
                }
                let (grant, receiver) = oneshot::channel();
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                slot.queue.push_back(Waiter { id, grant });
                let depth = slot.queue.len();
                drop(shard);
                self.queued(depth);
                Admission::Wait(receiver, WaiterGuard::new(Arc::clone(self), key, id))
            }
            Policy::Replace => {
                // Room first, before displacing anyone: the newcomer takes
                // the place of the head it replaces, or a new place.
                let head = slot.queue.pop_front();
                if head.is_none() && !self.reserve_waiter() {
                    drop(shard);
                    return self.queue_full();
                }
                // Cancel the runner once: the token is taken, so a second
                // Replace finds it already terminating and replaces only the
                // head. (The runner's future holds its own handle.)
                let cancel = slot
                    .running
                    .as_mut()
                    .and_then(|running| running.cancel.take());
                let (grant, receiver) = oneshot::channel();
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                slot.queue.push_front(Waiter { id, grant });
                let depth = slot.queue.len();
                drop(shard);
                // Wake-ups and signals (user code) after the lock is gone.
                if let Some(cancel) = cancel {
                    cancel.cancel();
                    self.replaced(true);
                }
                if let Some(head) = head {
                    // Its caller may have left already, its guard not yet
                    // dropped: that guard finds nothing to leave, so the
                    // head leaves here either way.
                    if head.grant.send(Grant::Replaced).is_ok() {
                        self.replaced(false);
                    } else {
                        self.abandoned(1);
                    }
                }
                self.queued(depth);
                Admission::Wait(receiver, WaiterGuard::new(Arc::clone(self), key, id))
            }
        }
    }

    fn queued(&self, depth: usize) {
        self.totals.queued.fetch_add(1, Ordering::Relaxed);
        self.emit(Signal::SlotQueued { depth });
        Logs::queued(&self.component, depth);
    }

    fn replaced(&self, was_running: bool) {
        self.totals.replaced.fetch_add(1, Ordering::Relaxed);
        self.emit(Signal::SlotReplaced { was_running });
        Logs::replaced(&self.component, was_running);
    }

    /// `count` waiters left their queue without running and without being
    /// replaced: their callers were gone.
    pub(crate) fn abandoned(&self, count: u64) {
        if count == 0 {
            return;
        }
        self.totals.abandoned.fetch_add(count, Ordering::Relaxed);
        for _ in 0..count {
            self.emit(Signal::SlotAbandoned);
        }
        Logs::abandoned(&self.component, count);
    }

    fn queue_full(&self) -> Admission<K> {
        self.totals.queue_full.fetch_add(1, Ordering::Relaxed);
        self.emit(Signal::SlotQueueFull);
        self.logs
            .refused(&self.component, RejectKind::SlotQueueFull);
        Admission::Refused(RejectKind::SlotQueueFull)
    }

    /// Takes a place under the bound on all waiting requests.
    fn reserve_waiter(&self) -> bool {
        self.waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |waiting| {
                (waiting < self.global_queue_limit).then_some(waiting + 1)
            })
            .is_ok()
    }

    /// The runner `id` of `key` is gone: hand the slot on, or remove it.
    pub(super) fn release(self: &Arc<Self>, key: &K, id: u64) {
        let mut shard = self.slots.lock_key(key);
        let Some(slot) = shard.get_mut(key) else {
            return;
        };
        if slot.running.as_ref().is_none_or(|running| running.id != id) {
            return;
        }
        slot.running = None;
        // Waiters popped whose callers were gone: signalled once the lock is.
        let mut abandoned = 0;
        while let Some(next) = slot.queue.pop_front() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            let (id, cancel) = self.running();
            let guard = SlotGuard::new(Arc::clone(self), key.clone(), id);
            match next.grant.send(Grant::Start(guard, cancel.clone())) {
                Ok(()) => {
                    slot.running = Some(Running { id, cancel });
                    drop(shard);
                    self.abandoned(abandoned);
                    self.totals.started.fetch_add(1, Ordering::Relaxed);
                    self.emit(Signal::SlotStarted { waited: true });
                    Logs::started_after_waiting(&self.component);
                    return;
                }
                Err(Grant::Start(mut undelivered, _)) => {
                    // The waiter is gone: this guard never held the slot,
                    // and must not release it (we hold the lock). Its own
                    // guard, if not dropped yet, finds nothing to leave.
                    undelivered.disarm();
                    abandoned += 1;
                }
                Err(Grant::Replaced) => unreachable!("sent a start"),
            }
        }
        // Nobody waits: the slot is idle, and idle slots are not kept.
        shard.remove(key);
        drop(shard);
        self.abandoned(abandoned);
    }

    /// The waiter `id` of `key` is dropped: out of the queue, if it is
    /// still there (else whoever took it out signalled it).
    pub(super) fn leave_queue(&self, key: &K, id: u64) {
        let mut shard = self.slots.lock_key(key);
        let left = shard
            .get_mut(key)
            .and_then(|slot| {
                let at = slot.queue.iter().position(|waiter| waiter.id == id)?;
                slot.queue.remove(at)
            })
            .is_some();
        if left {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        drop(shard);
        if left {
            self.abandoned(1);
        }
    }

    /// Slots with a running request.
    pub(crate) fn busy_slots(&self) -> usize {
        (0..self.slots.len())
            .map(|index| self.slots.lock(index).len())
            .sum()
    }

    /// Requests waiting in any queue.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The live numbers, for the handle.
    pub(crate) fn metrics(&self) -> SlotMetrics {
        self.totals.metrics(self.busy_slots(), self.waiting())
    }

    /// Requests waiting in `key`'s queue.
    pub(crate) fn queue_depth(&self, key: &K) -> usize {
        self.slots
            .lock_key(key)
            .get(key)
            .map_or(0, |slot| slot.queue.len())
    }

    /// `true` when `key` has a running request.
    pub(crate) fn is_busy(&self, key: &K) -> bool {
        self.slots.lock_key(key).contains_key(key)
    }
}
