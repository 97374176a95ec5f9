//! The components a witness knows, each with its cell of counters.
//!
//! Cells live in a fixed array sized at build time: a request records into
//! its component's cell by index, with a few `fetch_add`s and no lock.
//! Registering a component (once per layer, or on the first signal of an
//! unknown one) takes a lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use reflex_core::{BreakerState, Component, RejectKind, Signal};

use crate::edges::Edges;
use crate::events::{REJECT_KINDS, reject_index};
use crate::histogram::AtomicHistogram;

/// One component's counters: written by requests and signals, taken by
/// the runtime's cycle.
pub(crate) struct Cell {
    pub(crate) name: OnceLock<Component>,
    /// Written by every request, on a cache line of its own: the fields
    /// every request reads (the histograms' places) are not on it.
    pub(crate) in_flight: OwnLine<AtomicI64>,
    /// `in_flight` at the last cycle: requests started in a cycle are those
    /// that ended in it plus the growth of `in_flight`. (One counter fewer
    /// on the request path.)
    pub(crate) in_flight_before: AtomicI64,
    pub(crate) ignored: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    /// By [`REJECT_KINDS`] index, then "other".
    pub(crate) rejected: [AtomicU64; REJECT_KINDS.len() + 1],
    /// Latencies of successes: their count is the success count.
    pub(crate) latency: AtomicHistogram,
    /// Latencies of failures: their count is the failure count.
    pub(crate) failed_latency: AtomicHistogram,
    /// Failures of requests a call below failed for (echoes): the rest of
    /// the failures are the component's own.
    pub(crate) propagated: AtomicU64,
    /// Self times (latency minus the time a call below was in flight) of
    /// the requests that succeeded or failed on their own.
    pub(crate) self_time: AtomicHistogram,
    /// Latencies of the successes that waited on calls below: the cycle's
    /// self times are `self_time`, plus the successes' latencies less
    /// these (a success that waited on nothing took its latency for
    /// itself).
    pub(crate) waited_latency: AtomicHistogram,
    /// The first failed or refused calls of the cycle, packed
    /// ([`FirstFailures`]).
    pub(crate) first: FirstFailures,
    /// From signals.
    pub(crate) shed: AtomicU64,
    pub(crate) retries: AtomicU64,
    /// Retries the retry budget refused since the last cycle. 32 bits: in
    /// the padding after `breaker`, so the cell keeps its size and every
    /// other field its place (no request pays for it).
    pub(crate) budget_exhausted: AtomicU32,
    pub(crate) coalesced: AtomicU64,
    pub(crate) breaker: AtomicU8,
    /// The link to the fleet's shared state: 0 none heard, 1 up, 2 down
    /// (from `FleetLink` signals). In the padding beside `breaker`.
    pub(crate) fleet_link: AtomicU8,
    /// Times the link went down since the last cycle.
    pub(crate) fleet_link_downs: AtomicU32,
    /// Requests that joined a slot queue minus those that left one, over
    /// every slot of the component. Signed: two signals of one waiter sent
    /// from two threads may arrive leave first, which reads as zero until
    /// the join arrives; a floor at zero would lose that leave for good.
    pub(crate) slot_depth: AtomicI64,
    /// Keys of a keyed breaker that went to a refusing state from an
    /// admitting one since the last cycle.
    pub(crate) keys_opened: AtomicU64,
}

/// A value on a cache line of its own.
#[repr(align(64))]
pub(crate) struct OwnLine<T>(pub(crate) T);

impl<T> std::ops::Deref for OwnLine<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// How many first failures of a cycle a component keeps.
pub(crate) const FIRST: usize = 8;

/// A component's first failed or refused calls of each cycle, kept apart
/// from every other component's: however busy a caller is, it cannot
/// evict them. One `fetch_add` and one store on the failure path.
pub(crate) struct FirstFailures {
    seen: AtomicU64,
    slots: [AtomicU64; FIRST],
}

impl FirstFailures {
    fn new() -> Self {
        Self {
            seen: AtomicU64::new(0),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Notes a call that ended with event `code` at `at_ms`.
    #[inline]
    pub(crate) fn note(&self, at_ms: u64, code: u8) {
        // Once the slots are full, only read: a blackout's failures leave
        // the line alone.
        if self.seen.load(Ordering::Relaxed) >= FIRST as u64 {
            return;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = usize::try_from(n).ok().and_then(|n| self.slots.get(n)) {
            // +1: a zero word is an empty slot.
            slot.store(
                (at_ms.saturating_add(1) << 8) | u64::from(code),
                Ordering::Relaxed,
            );
        }
    }

    /// The cycle's first failures (at most [`FIRST`]), as `(at_ms, code)`,
    /// in order; empties them for the next cycle. A write racing the take
    /// lands in this cycle or is lost, never misplaced in time order.
    pub(crate) fn take(&self) -> Vec<(u64, u8)> {
        let seen = self.seen.swap(0, Ordering::Relaxed);
        let kept = usize::try_from(seen).unwrap_or(FIRST).min(FIRST);
        let mut taken: Vec<(u64, u8)> = self.slots[..kept]
            .iter()
            .map(|slot| slot.swap(0, Ordering::Relaxed))
            .filter(|word| *word != 0)
            .map(|word| ((word >> 8) - 1, (word & 0xff) as u8))
            .collect();
        taken.sort_by_key(|(at, _)| *at);
        taken
    }
}

/// `breaker` when no breaker has reported.
pub(crate) const NO_BREAKER: u8 = u8::MAX;

pub(crate) fn breaker_state(code: u8) -> Option<BreakerState> {
    BreakerState::ALL.get(usize::from(code)).copied()
}

impl Cell {
    fn new() -> Self {
        Self {
            name: OnceLock::new(),
            in_flight: OwnLine(AtomicI64::new(0)),
            in_flight_before: AtomicI64::new(0),
            ignored: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: AtomicHistogram::new(),
            failed_latency: AtomicHistogram::new(),
            propagated: AtomicU64::new(0),
            self_time: AtomicHistogram::new(),
            waited_latency: AtomicHistogram::new(),
            first: FirstFailures::new(),
            shed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            budget_exhausted: AtomicU32::new(0),
            coalesced: AtomicU64::new(0),
            breaker: AtomicU8::new(NO_BREAKER),
            fleet_link: AtomicU8::new(0),
            fleet_link_downs: AtomicU32::new(0),
            slot_depth: AtomicI64::new(0),
            keys_opened: AtomicU64::new(0),
        }
    }

    /// Counts a refusal of `kind`; returns its event code (`1 +` its
    /// index).
    pub(crate) fn reject(&self, kind: RejectKind) -> u8 {
        let index = reject_index(kind);
        self.rejected[index].fetch_add(1, Ordering::Relaxed);
        (index + 1) as u8
    }

    /// Requests waiting in the component's slot queues, as the signals
    /// tell it (never below zero).
    pub(crate) fn slot_queue_depth(&self) -> usize {
        usize::try_from(self.slot_depth.load(Ordering::Relaxed).max(0)).unwrap_or(usize::MAX)
    }

    /// Folds a signal of another layer into the counters.
    pub(crate) fn hear(&self, signal: Signal) {
        match signal {
            Signal::Shed { .. } => {
                self.shed.fetch_add(1, Ordering::Relaxed);
            }
            Signal::BreakerTransition { to, .. } => {
                // A state this witness does not know reads as "no breaker",
                // never as closed.
                let code = BreakerState::ALL
                    .iter()
                    .position(|s| *s == to)
                    .map_or(NO_BREAKER, |code| code as u8);
                self.breaker.store(code, Ordering::Relaxed);
            }
            // Each request that joins a queue leaves it once, by one of
            // the three signals below.
            Signal::SlotQueued { .. } => {
                self.slot_depth.fetch_add(1, Ordering::Relaxed);
            }
            Signal::SlotStarted { waited: true }
            | Signal::SlotReplaced { was_running: false }
            | Signal::SlotAbandoned => {
                self.slot_depth.fetch_sub(1, Ordering::Relaxed);
            }
            // One key's breaker, not the component's: its state is left
            // alone.
            Signal::KeyedBreakerTransition { from, to, .. } if to.refuses() && !from.refuses() => {
                self.keys_opened.fetch_add(1, Ordering::Relaxed);
            }
            Signal::RetryAttempt { .. } => {
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            Signal::RetryBudgetExhausted { .. } => {
                self.budget_exhausted.fetch_add(1, Ordering::Relaxed);
            }
            Signal::FleetLink { up } => {
                self.fleet_link
                    .store(if up { 1 } else { 2 }, Ordering::Relaxed);
                if !up {
                    self.fleet_link_downs.fetch_add(1, Ordering::Relaxed);
                }
            }
            Signal::Coalesced { .. } | Signal::DedupCacheHit { .. } => {
                self.coalesced.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// The components, by index.
pub(crate) struct Registry {
    cells: Box<[Cell]>,
    /// Calls between components, by edge.
    pub(crate) edges: Edges,
    len: AtomicUsize,
    names: Mutex<HashMap<Component, usize>>,
}

impl Registry {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            cells: (0..capacity).map(|_| Cell::new()).collect(),
            edges: Edges::new(),
            len: AtomicUsize::new(0),
            names: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.cells.len()
    }

    /// The index of `component`, registering it if new; `None` when the
    /// registry is full.
    pub(crate) fn register(&self, component: &Component) -> Option<usize> {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(index) = names.get(component) {
            return Some(*index);
        }
        let index = names.len();
        let cell = self.cells.get(index)?;
        let _ = cell.name.set(component.clone());
        names.insert(component.clone(), index);
        self.len.store(index + 1, Ordering::Release);
        Some(index)
    }

    /// `true` when every cell is taken.
    pub(crate) fn is_full(&self) -> bool {
        self.len.load(Ordering::Acquire) == self.cells.len()
    }

    /// The index of `component` without a lock, if it is registered.
    pub(crate) fn find(&self, component: &Component) -> Option<usize> {
        let len = self.len.load(Ordering::Acquire);
        self.cells[..len]
            .iter()
            .position(|cell| cell.name.get() == Some(component))
    }

    pub(crate) fn cell(&self, index: usize) -> &Cell {
        &self.cells[index]
    }

    /// The registered cells, in registration order.
    pub(crate) fn cells(&self) -> &[Cell] {
        &self.cells[..self.len.load(Ordering::Acquire)]
    }

    /// Folds `signal` into `component`'s counters: a lookup among the
    /// components without a lock, and an atomic or two. A component never
    /// seen before is registered (once, under a lock), except by a
    /// `KeyedBreakerTransition`, which is counted only for a component
    /// already followed.
    pub(crate) fn hear(&self, component: &Component, signal: Signal) {
        // One key's breaker speaks for a key (a host, a tenant), not for a
        // component: it never takes a place among the components.
        let may_register = !matches!(signal, Signal::KeyedBreakerTransition { .. });
        // A full registry refuses new components without its lock: a sink
        // never locks on the signal path once the witness is full.
        if let Some(index) = self
            .find(component)
            .or_else(|| (may_register && !self.is_full()).then(|| self.register(component))?)
        {
            self.cell(index).hear(signal);
        }
    }
}
