//! [`Steering`]: what sets the limit in force, and how it reaches the
//! counter.
//!
//! Four inputs decide it: the base (a fixed layer's hard limit, or what
//! the adaptive estimator asks for), an operator's pin, a reflex's cap,
//! and a fleet's cap (the permits a fleet-wide budget leased this
//! replica). The limit in force is the pin if set, else the base, and
//! never above either cap; the fleet's cap alone may be 0. Whoever
//! changes an input publishes: one state word says idle, busy (someone
//! writes the limit) or busy and dirty (an input changed meanwhile). A
//! caller that finds it idle takes it and writes the limit the inputs say;
//! one that finds it busy marks it dirty and leaves; the writer, on
//! leaving, finds the mark and writes again. Every step is a
//! read-modify-write of that one word, so no lock and no wait, and the
//! last writer wrote what the last inputs say (`src/tests/loom_steer.rs`).
//!
//! A caller that left its change to the writer returns before the change
//! is in force. The fleet's cap cannot have that (its budget reads the
//! calls in flight right after lowering it, and tells Redis): its setter
//! publishes with [`Steering::publish_own`], which yields until it can
//! write the limit itself.

#[cfg(loom)]
use loom::thread::yield_now;
#[cfg(not(loom))]
use std::thread::yield_now;

use crate::counter::{Counter, EndedExcursion};
use crate::loom::{AtomicUsize, Ordering};

/// "Not set", for the pin and the cap: no limit is 0.
const UNSET: usize = 0;
/// "Not set", for the fleet's cap, which may be 0.
const NO_FLEET_CAP: usize = usize::MAX;

/// The states of the publication word.
const IDLE: usize = 0;
const BUSY: usize = 1;
const DIRTY: usize = 2;

#[derive(Debug)]
pub(crate) struct Steering {
    base: AtomicUsize,
    pin: AtomicUsize,
    cap: AtomicUsize,
    fleet: AtomicUsize,
    /// `IDLE`, `BUSY`, or `DIRTY` (busy, and an input changed since).
    state: AtomicUsize,
}

/// The inputs at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inputs {
    pub(crate) base: usize,
    pub(crate) pin: Option<usize>,
    pub(crate) cap: Option<usize>,
    pub(crate) fleet: Option<usize>,
}

/// What a publication did, for its publisher to signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Published {
    /// The hard limit before, and after, if this caller wrote it.
    pub(crate) changed: Option<(usize, usize)>,
    /// An excursion above the soft limit that withdrawing it ended.
    pub(crate) ended_excursion: Option<EndedExcursion>,
}

// === impl Inputs ===

impl Inputs {
    /// The limit they set: the pin or the base, at most the caps.
    pub(crate) fn limit(&self) -> usize {
        let local = self.local_limit();
        self.fleet.map_or(local, |fleet| local.min(fleet))
    }

    /// The limit without the fleet's cap: the pin or the base, at most the
    /// reflex's cap.
    pub(crate) fn local_limit(&self) -> usize {
        let limit = self.pin.unwrap_or(self.base);
        self.cap.map_or(limit, |cap| limit.min(cap))
    }
}

// === impl Steering ===

impl Steering {
    pub(crate) fn new(base: usize) -> Self {
        Self {
            base: AtomicUsize::new(base),
            pin: AtomicUsize::new(UNSET),
            cap: AtomicUsize::new(UNSET),
            fleet: AtomicUsize::new(NO_FLEET_CAP),
            state: AtomicUsize::new(IDLE),
        }
    }

    pub(crate) fn inputs(&self) -> Inputs {
        let set = |v: usize| (v != UNSET).then_some(v);
        Inputs {
            base: self.base.load(Ordering::Relaxed),
            pin: set(self.pin.load(Ordering::Relaxed)),
            cap: set(self.cap.load(Ordering::Relaxed)),
            fleet: match self.fleet.load(Ordering::Relaxed) {
                NO_FLEET_CAP => None,
                fleet => Some(fleet),
            },
        }
    }

    pub(crate) fn set_base(&self, base: usize) {
        self.base.store(base, Ordering::Relaxed);
    }

    pub(crate) fn set_pin(&self, pin: Option<usize>) {
        self.pin.store(pin.unwrap_or(UNSET), Ordering::Relaxed);
    }

    pub(crate) fn set_cap(&self, cap: Option<usize>) {
        self.cap.store(cap.unwrap_or(UNSET), Ordering::Relaxed);
    }

    pub(crate) fn set_fleet(&self, fleet: Option<usize>) {
        self.fleet
            .store(fleet.unwrap_or(NO_FLEET_CAP), Ordering::Relaxed);
    }

    /// Brings the counter's limits to what the inputs say, unless another
    /// caller is doing so (it will see this call's change). `soft` gives
    /// the soft limit that goes with a hard one.
    pub(crate) fn publish(&self, counter: &Counter, soft: impl Fn(usize) -> usize) -> Published {
        if self.take() {
            self.write(counter, soft)
        } else {
            Published::default()
        }
    }

    /// Publishes as [`publish`](Self::publish) does, but returns only once
    /// this caller wrote the limit itself, from inputs read after its own
    /// change: every admission ordered after the return is decided against
    /// a limit that has the change. Where another caller is writing, it
    /// yields until that caller is done (a few atomic operations; no lock).
    /// For the fleet cap, whose budget reads the calls in flight next.
    pub(crate) fn publish_own(
        &self,
        counter: &Counter,
        soft: impl Fn(usize) -> usize,
    ) -> Published {
        while !self.take() {
            yield_now();
        }
        self.write(counter, soft)
    }

    /// Takes the writing (true), or leaves it to the writer, marked dirty.
    fn take(&self) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let (next, take) = if state == IDLE {
                (BUSY, true)
            } else {
                (DIRTY, false)
            };
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return take,
                Err(actual) => state = actual,
            }
        }
    }

    /// Writes the limit the inputs say, again while they change, and
    /// leaves the word idle. Only the caller that took it.
    fn write(&self, counter: &Counter, soft: impl Fn(usize) -> usize) -> Published {
        let mut published = Published::default();
        loop {
            let hard = self.inputs().limit();
            let changed = counter.set_limits(hard, soft(hard));
            if changed.previous_hard != hard {
                let from = published
                    .changed
                    .map_or(changed.previous_hard, |(from, _)| from);
                published.changed = Some((from, hard));
            }
            published.ended_excursion = published.ended_excursion.or(changed.ended_excursion);
            // Leave, unless an input changed while writing: then again.
            match self
                .state
                .compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return published,
                // An RMW, not a store: it acquires the latest mark, so the
                // next reading of the inputs sees what its maker wrote.
                Err(_) => {
                    self.state.swap(BUSY, Ordering::AcqRel);
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::counter::NO_SOFT_LIMIT;

    #[test]
    fn the_pin_wins_over_the_base_and_the_cap_over_both() {
        let inputs = |base, pin, cap| {
            Inputs {
                base,
                pin,
                cap,
                fleet: None,
            }
            .limit()
        };
        assert_eq!(inputs(10, None, None), 10);
        assert_eq!(inputs(10, Some(30), None), 30);
        assert_eq!(inputs(10, Some(30), Some(20)), 20);
        assert_eq!(inputs(10, None, Some(20)), 10);
        assert_eq!(inputs(10, None, Some(5)), 5);
    }

    #[test]
    fn the_fleet_cap_bounds_whatever_the_other_inputs_say_and_may_be_zero() {
        let inputs = |pin, cap, fleet| Inputs {
            base: 10,
            pin,
            cap,
            fleet,
        };
        assert_eq!(inputs(None, None, Some(4)).limit(), 4);
        assert_eq!(inputs(None, None, Some(40)).limit(), 10);
        assert_eq!(inputs(Some(30), None, Some(20)).limit(), 20);
        assert_eq!(inputs(Some(30), Some(3), Some(20)).limit(), 3);
        assert_eq!(inputs(Some(30), Some(25), Some(0)).limit(), 0);
        assert_eq!(inputs(Some(30), Some(25), Some(0)).local_limit(), 25);
        let steering = Steering::new(10);
        steering.set_fleet(Some(0));
        assert_eq!(steering.inputs().fleet, Some(0), "0 is a cap, not unset");
        steering.set_fleet(None);
        assert_eq!(steering.inputs().fleet, None);
    }

    #[test]
    fn publishing_writes_the_limit_the_inputs_say() {
        let counter = Counter::new(10, NO_SOFT_LIMIT);
        let steering = Steering::new(10);
        steering.set_pin(Some(4));
        let published = steering.publish(&counter, |_| NO_SOFT_LIMIT);
        assert_eq!(published.changed, Some((10, 4)));
        assert_eq!(counter.hard_limit(), 4);
        steering.set_pin(None);
        steering.set_base(12);
        assert_eq!(
            steering.publish(&counter, |_| NO_SOFT_LIMIT).changed,
            Some((4, 12))
        );
        assert_eq!(steering.publish(&counter, |_| NO_SOFT_LIMIT).changed, None);
    }
}
