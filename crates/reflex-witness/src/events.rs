//! The event log: failed and refused calls, in order, for causal chains.
//!
//! A fixed ring of packed words written with one `fetch_add` and one
//! store, on the failure path only; read by the cycle.

use std::sync::atomic::{AtomicU64, Ordering};

use reflex_core::RejectKind;

const COMPONENT_BITS: u32 = 16;
const KIND_BITS: u32 = 8;

/// Rejection kinds counted apart; anything newer counts as the last
/// ("other").
pub(crate) const REJECT_KINDS: [RejectKind; 9] = [
    RejectKind::Shed,
    RejectKind::CircuitOpen,
    RejectKind::SlotBusy,
    RejectKind::SlotQueueFull,
    RejectKind::Replaced,
    RejectKind::DedupAborted,
    RejectKind::InProgress,
    RejectKind::DedupFull,
    RejectKind::Throttled,
];

/// The place of `kind` among [`REJECT_KINDS`]; one past them for a kind
/// this witness does not know.
pub(crate) fn reject_index(kind: RejectKind) -> usize {
    REJECT_KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(REJECT_KINDS.len())
}

/// Event code of an own failure; `1 + i` is a refusal of
/// `REJECT_KINDS[i]` (or "other").
pub(crate) const FAILED: u8 = 0;
/// Event code of a failure a call below failed for (an echo).
pub(crate) const FAILED_BELOW: u8 = 254;

/// What happened to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Event {
    /// Milliseconds since the witness was built.
    pub(crate) at_ms: u64,
    pub(crate) component: usize,
    /// 0: failed on its own; 254: failed below (an echo); `1 + i`: refused
    /// with the `i`-th known rejection kind.
    pub(crate) kind: u8,
}

/// A fixed ring of words: `push` is one `fetch_add` and one store; a
/// reader gets the words pushed since a sequence number, oldest first (as
/// far as the ring still holds them).
pub(crate) struct Ring {
    slots: Box<[AtomicU64]>,
    next: AtomicU64,
}

impl Ring {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: (0..capacity.max(1)).map(|_| AtomicU64::new(0)).collect(),
            next: AtomicU64::new(0),
        }
    }

    pub(crate) fn push(&self, word: u64) {
        let at = self.next.fetch_add(1, Ordering::Relaxed);
        self.slots[(at % self.slots.len() as u64) as usize].store(word, Ordering::Release);
    }

    /// The words pushed at or after sequence number `from`, and the
    /// sequence number to read from next time.
    pub(crate) fn since(&self, from: u64) -> (Vec<u64>, u64) {
        let len = self.slots.len() as u64;
        let next = self.next.load(Ordering::Acquire);
        let words = (from.max(next.saturating_sub(len))..next)
            .map(|at| self.slots[(at % len) as usize].load(Ordering::Acquire))
            .collect();
        (words, next)
    }
}

pub(crate) struct Events(Ring);

impl Events {
    pub(crate) fn new(capacity: usize) -> Self {
        Self(Ring::new(capacity))
    }

    pub(crate) fn push(&self, event: Event) {
        let component = (event.component as u64 + 1) & ((1 << COMPONENT_BITS) - 1);
        self.0.push(
            (event.at_ms << (COMPONENT_BITS + KIND_BITS))
                | (u64::from(event.kind) << COMPONENT_BITS)
                | component,
        );
    }

    /// The events at or after `from_ms`, oldest first (as far as the ring
    /// still holds them).
    pub(crate) fn since(&self, from_ms: u64) -> Vec<Event> {
        self.0
            .since(0)
            .0
            .into_iter()
            .filter_map(|word| {
                let component = word & ((1 << COMPONENT_BITS) - 1);
                (component != 0).then(|| Event {
                    at_ms: word >> (COMPONENT_BITS + KIND_BITS),
                    component: component as usize - 1,
                    kind: ((word >> COMPONENT_BITS) & ((1 << KIND_BITS) - 1)) as u8,
                })
            })
            .filter(|event| event.at_ms >= from_ms)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_back_in_order_and_the_ring_forgets_the_oldest() {
        let events = Events::new(4);
        for i in 0..6u64 {
            events.push(Event {
                at_ms: 100 + i,
                component: i as usize % 3,
                kind: (i % 2) as u8,
            });
        }
        let kept = events.since(0);
        assert_eq!(kept.len(), 4);
        assert_eq!(
            kept.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            vec![102, 103, 104, 105]
        );
        assert_eq!(
            kept[0],
            Event {
                at_ms: 102,
                component: 2,
                kind: 0
            }
        );
        assert_eq!(events.since(104).len(), 2);
    }
}
