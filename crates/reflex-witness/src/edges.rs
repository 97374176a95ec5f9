//! The calls between components: which component's requests called which,
//! and how many of those calls failed, per cycle. The learned dependency
//! graph the judgement walks from a root to the components it affects.
//!
//! A fixed open-addressing table of packed `(caller, callee)` keys: a call
//! finds its edge with a probe or two and counts with a `fetch_add`; a new
//! edge is claimed with one compare-and-swap. Bounded: an edge beyond the
//! table is not counted.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The most edges a witness counts.
pub(crate) const MAX_EDGES: usize = 4096;
/// Probes before a call gives up on finding a place for its edge.
const PROBES: usize = 16;

/// One edge's counters.
struct Slot {
    /// `(caller + 1) << 13 | (callee + 1)`; 0: empty.
    key: AtomicU32,
    calls: AtomicU64,
    failed: AtomicU64,
}

/// Calls from one component into another over a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EdgeCount {
    pub(crate) caller: usize,
    pub(crate) callee: usize,
    pub(crate) calls: u64,
    pub(crate) failed: u64,
}

pub(crate) struct Edges {
    slots: Box<[Slot]>,
}

/// Components are at most 4 095 (12 bits each, plus one).
fn key(caller: usize, callee: usize) -> u32 {
    let part = |index: usize| (u32::try_from(index).unwrap_or(u32::MAX) & 0xfff) + 1;
    (part(caller) << 13) | part(callee)
}

impl Edges {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..MAX_EDGES)
                .map(|_| Slot {
                    key: AtomicU32::new(0),
                    calls: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// The place of the edge from `caller` to `callee`, claimed if new;
    /// `None` when the table has no room for it.
    #[inline]
    pub(crate) fn find(&self, caller: usize, callee: usize) -> Option<u32> {
        let key = key(caller, callee);
        let start = (key.wrapping_mul(0x9e37_79b9) >> 20) as usize;
        for probe in 0..PROBES {
            let at = (start + probe) % MAX_EDGES;
            let slot = &self.slots[at];
            let seen = slot.key.load(Ordering::Acquire);
            if seen == key {
                return u32::try_from(at).ok();
            }
            if seen == 0 {
                match slot
                    .key
                    .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return u32::try_from(at).ok(),
                    Err(other) if other == key => return u32::try_from(at).ok(),
                    Err(_) => {}
                }
            }
        }
        None
    }

    /// Counts a call on the edge at `at`.
    #[inline]
    pub(crate) fn count(&self, at: u32, failed: bool) {
        let Some(slot) = self.slots.get(at as usize) else {
            return;
        };
        slot.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            slot.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The calls counted since the last take, edge by edge; empties the
    /// counts (the edges stay known).
    pub(crate) fn take(&self) -> Vec<EdgeCount> {
        self.slots
            .iter()
            .filter_map(|slot| {
                let key = slot.key.load(Ordering::Acquire);
                if key == 0 {
                    return None;
                }
                let calls = slot.calls.swap(0, Ordering::Relaxed);
                let failed = slot.failed.swap(0, Ordering::Relaxed);
                (calls > 0).then(|| EdgeCount {
                    caller: ((key >> 13) - 1) as usize,
                    callee: ((key & 0x1fff) - 1) as usize,
                    calls,
                    failed,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_per_edge_and_taken_once() {
        let edges = Edges::new();
        let api_auth = edges.find(0, 1).unwrap();
        let auth_db = edges.find(1, 2).unwrap();
        assert_eq!(edges.find(0, 1), Some(api_auth), "the same edge");
        assert_ne!(api_auth, auth_db);
        edges.count(api_auth, false);
        edges.count(api_auth, true);
        edges.count(auth_db, true);
        let mut taken = edges.take();
        taken.sort_by_key(|e| (e.caller, e.callee));
        assert_eq!(
            taken,
            vec![
                EdgeCount {
                    caller: 0,
                    callee: 1,
                    calls: 2,
                    failed: 1
                },
                EdgeCount {
                    caller: 1,
                    callee: 2,
                    calls: 1,
                    failed: 1
                },
            ]
        );
        assert!(edges.take().is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_the_largest_indices_fit() {
        let edges = Edges::new();
        let mut placed = 0;
        for caller in 0..100 {
            for callee in 0..100 {
                if let Some(at) = edges.find(caller, callee) {
                    edges.count(at, false);
                    placed += 1;
                }
            }
        }
        assert!(placed <= MAX_EDGES);
        assert!(placed > MAX_EDGES / 2, "{placed}");
        let big = Edges::new();
        let at = big.find(4094, 4094).unwrap();
        big.count(at, false);
        assert_eq!(big.take()[0].caller, 4094);
    }
}
