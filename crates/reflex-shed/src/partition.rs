//! [`ClassTable`]: the live state of partitions and of the critical
//! reserve, and the rule that admits a request of a class.
//!
//! The counter alone decides whether the limit holds; this table decides,
//! before it, whether a request may take a free slot at all:
//!
//! - a **critical** request may take any free slot;
//! - any other leaves the whole critical reserve free (`reserve` of the
//!   limit, at least 1 and never all of it), beyond every call in flight,
//!   critical ones included: critical calls take their slots from the
//!   others, never from the reserve;
//! - in a partitioned layer, the rest of the limit (the pool) is shared:
//!   each partition is guaranteed `share` of it. A partition under its
//!   guarantee takes any slot the reserve leaves. One at or over it is
//!   borrowing: it must also leave free, of what every other **active**
//!   partition is guaranteed and does not use, one slot (room for its next
//!   request), or all of it once one of that partition's requests was
//!   refused within the idle time (it asks for more than it has). A
//!   partition is active while it has requests in flight or had one
//!   arrive within the idle time, so an idle partition's share is lent,
//!   and so is what an active one does not ask for; both are given back
//!   as soon as the partition asks (the borrowers' new requests are
//!   refused from then on; their running ones finish).
//!
//! The numbers are read one by one, not in one atomic step: two requests
//! deciding at once may both take the last slot of a guarantee, so shares
//! hold within the admissions racing at that moment. The limit itself
//! holds exactly.

use crate::loom::{AtomicU64, AtomicUsize, Ordering};

/// A request's class, from the layer's key functions: one word, as it
/// rides in every permit (no niche for an `Option` to write into).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Class {
    /// The partition's index in the low 32 bits (`NO_PARTITION` in a layer
    /// without), and `CRITICAL`.
    bits: u64,
}

const NO_PARTITION: u64 = u32::MAX as u64;
const CRITICAL: u64 = 1 << 32;

#[derive(Debug)]
pub(crate) struct ClassTable {
    partitions: Box<[Partition]>,
    critical_reserve: f64,
    critical_in_flight: AtomicUsize,
    idle_ns: u64,
}

#[derive(Debug)]
struct Partition {
    share: f64,
    in_flight: AtomicUsize,
    /// When its last request arrived, plus one (0: none yet).
    last_seen: AtomicU64,
    /// When one of its requests was last refused, plus one (0: never).
    last_refused: AtomicU64,
    shed: AtomicU64,
}

/// A partition's live numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PartitionView {
    pub(crate) share: f64,
    pub(crate) in_flight: usize,
    pub(crate) shed_total: u64,
}

// === impl Class ===

impl Class {
    /// No class: a layer without key functions.
    pub(crate) const PLAIN: Self = Self { bits: NO_PARTITION };

    /// A class; a partition index beyond `u32` counts as no partition.
    pub(crate) fn new(partition: Option<usize>, critical: bool) -> Self {
        let partition = partition
            .and_then(|p| u32::try_from(p).ok())
            .map_or(NO_PARTITION, u64::from);
        Self {
            bits: partition | if critical { CRITICAL } else { 0 },
        }
    }

    pub(crate) fn partition(self) -> Option<usize> {
        let partition = self.bits & NO_PARTITION;
        (partition != NO_PARTITION).then_some(partition as usize)
    }

    pub(crate) fn critical(self) -> bool {
        self.bits & CRITICAL != 0
    }
}

// === impl ClassTable ===

impl ClassTable {
    /// `shares` of the listed partitions (the rest of 1 goes to requests
    /// with no listed key); none: unpartitioned.
    pub(crate) fn new(shares: &[f64], critical_reserve: f64, idle_ns: u64) -> Self {
        let partitions = if shares.is_empty() {
            Vec::new()
        } else {
            let listed: f64 = shares.iter().sum();
            shares
                .iter()
                .copied()
                .chain([(1.0 - listed).max(0.0)])
                .map(Partition::new)
                .collect()
        };
        Self {
            partitions: partitions.into_boxed_slice(),
            critical_reserve,
            critical_in_flight: AtomicUsize::new(0),
            idle_ns,
        }
    }

    /// Slots of `limit` kept for critical requests.
    pub(crate) fn reserve(&self, limit: usize) -> usize {
        if self.critical_reserve <= 0.0 || limit < 2 {
            return 0;
        }
        ((self.critical_reserve * limit as f64) as usize).clamp(1, limit - 1)
    }

    /// Whether a request of `class` may take a free slot, with `in_flight`
    /// requests running against `limit`, at `now`.
    pub(crate) fn room(&self, class: Class, limit: usize, in_flight: usize, now: u64) -> bool {
        if class.critical() {
            return true;
        }
        // The reserve stays free whatever critical calls are in flight: they
        // take slots from the other requests, not from the reserve, so
        // the next critical request finds one (shed last).
        let reserve = self.reserve(limit);
        let mut kept = reserve;
        if let Some(own) = class.partition().and_then(|i| self.partitions.get(i)) {
            own.seen(now);
            let pool = limit - reserve;
            if own.in_flight.load(Ordering::Relaxed) >= own.guaranteed(pool) {
                for (i, other) in self.partitions.iter().enumerate() {
                    if Some(i) != class.partition() && other.active(now, self.idle_ns) {
                        kept = kept.saturating_add(other.kept(pool, now, self.idle_ns));
                    }
                }
            }
        }
        in_flight.saturating_add(kept) < limit
    }

    pub(crate) fn admitted(&self, class: Class) {
        if class.critical() {
            self.critical_in_flight.fetch_add(1, Ordering::Relaxed);
        } else if let Some(p) = class.partition().and_then(|i| self.partitions.get(i)) {
            p.in_flight.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn released(&self, class: Class) {
        if class.critical() {
            self.critical_in_flight.fetch_sub(1, Ordering::Relaxed);
        } else if let Some(p) = class.partition().and_then(|i| self.partitions.get(i)) {
            p.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A request of `class` refused at `now`.
    pub(crate) fn shed(&self, class: Class, now: u64) {
        if let (false, Some(p)) = (
            class.critical(),
            class.partition().and_then(|i| self.partitions.get(i)),
        ) {
            p.shed.fetch_add(1, Ordering::Relaxed);
            stamp(&p.last_refused, now);
        }
    }

    pub(crate) fn critical_in_flight(&self) -> usize {
        self.critical_in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn partitions(&self) -> impl Iterator<Item = PartitionView> + '_ {
        self.partitions.iter().map(|p| PartitionView {
            share: p.share,
            in_flight: p.in_flight.load(Ordering::Relaxed),
            shed_total: p.shed.load(Ordering::Relaxed),
        })
    }
}

// === impl Partition ===

impl Partition {
    fn new(share: f64) -> Self {
        Self {
            share,
            in_flight: AtomicUsize::new(0),
            last_seen: AtomicU64::new(0),
            last_refused: AtomicU64::new(0),
            shed: AtomicU64::new(0),
        }
    }

    fn guaranteed(&self, pool: usize) -> usize {
        (self.share * pool as f64) as usize
    }

    /// Records an arrival at `now`.
    fn seen(&self, now: u64) {
        stamp(&self.last_seen, now);
    }

    fn active(&self, now: u64, idle_ns: u64) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0 || recent(&self.last_seen, now, idle_ns)
    }

    /// What a borrower leaves free of this active partition's guarantee
    /// (of `pool`): all it does not use once one of its requests was
    /// refused within the idle time (it asks for more than it has), one
    /// slot otherwise (room for its next request, while the rest of its
    /// unused share is lent).
    fn kept(&self, pool: usize, now: u64, idle_ns: u64) -> usize {
        let unused = self
            .guaranteed(pool)
            .saturating_sub(self.in_flight.load(Ordering::Relaxed));
        if recent(&self.last_refused, now, idle_ns) {
            unused
        } else {
            unused.min(1)
        }
    }
}

/// Stamps `now` into `at`; a store only when the time moved on by a
/// millisecond, so that a busy partition's line is mostly read.
fn stamp(at: &AtomicU64, now: u64) {
    let stamp = now.saturating_add(1);
    let last = at.load(Ordering::Relaxed);
    if last == 0 || stamp.saturating_sub(last) > 1_000_000 {
        at.store(stamp, Ordering::Relaxed);
    }
}

/// Whether `at` was stamped within `idle_ns` of `now`.
fn recent(at: &AtomicU64, now: u64, idle_ns: u64) -> bool {
    match at.load(Ordering::Relaxed) {
        0 => false,
        stamp => now.saturating_add(1).saturating_sub(stamp) < idle_ns,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000_000;
    const IDLE: u64 = 100_000_000;

    fn class(partition: usize) -> Class {
        Class::new(Some(partition), false)
    }

    /// Admits as many of `class` as the table lets in, up to `limit` in
    /// flight overall, starting from `in_flight`; returns the new count.
    fn fill(table: &ClassTable, class: Class, limit: usize, mut in_flight: usize) -> usize {
        while in_flight < limit && table.room(class, limit, in_flight, NOW) {
            table.admitted(class);
            in_flight += 1;
        }
        in_flight
    }

    #[test]
    fn a_busy_partition_borrows_an_idle_ones_share() {
        let table = ClassTable::new(&[0.7, 0.3], 0.0, IDLE);
        assert_eq!(
            fill(&table, class(0), 10, 0),
            10,
            "1 is idle: 0 takes it all"
        );
        let views: Vec<_> = table.partitions().collect();
        assert_eq!((views[0].in_flight, views[1].in_flight), (10, 0));
    }

    #[test]
    fn a_returning_partition_gets_its_share_back_as_borrowers_finish() {
        let table = ClassTable::new(&[0.7, 0.3], 0.0, IDLE);
        let mut in_flight = fill(&table, class(0), 10, 0);
        // Partition 1 arrives: the limit is full, so it is refused...
        assert!(!table.room(class(1), 10, in_flight, NOW));
        table.shed(class(1), NOW);
        // ...but it is active and asks for more now: 0 may not take back
        // what 1 is owed.
        for _ in 0..3 {
            table.released(class(0));
            in_flight -= 1;
            assert!(!table.room(class(0), 10, in_flight, NOW));
        }
        assert_eq!(fill(&table, class(1), 10, in_flight), 10);
        let views: Vec<_> = table.partitions().collect();
        assert_eq!((views[0].in_flight, views[1].in_flight), (7, 3));
        // Under its guarantee again, 0 takes a slot as soon as one is free.
        table.released(class(0));
        assert!(table.room(class(0), 10, 9, NOW));
        assert!(!table.room(class(1), 10, 9, NOW), "1 has its 3: it borrows");
    }

    #[test]
    fn a_partition_that_asks_for_less_than_its_share_lends_the_rest() {
        // 1 is active (a request in flight) and never refused: 0 leaves it
        // one free slot, not its whole unused share.
        let table = ClassTable::new(&[0.7, 0.3], 0.0, IDLE);
        assert!(table.room(class(1), 10, 0, NOW));
        table.admitted(class(1));
        assert_eq!(fill(&table, class(0), 10, 1), 9, "one slot kept for 1");
        assert!(table.room(class(1), 10, 9, NOW), "1 finds it");
        // Once 1 is refused, all it does not use is kept: 0 waits for it.
        table.shed(class(1), NOW);
        table.released(class(0));
        assert!(!table.room(class(0), 10, 8, NOW), "1 is owed 2");
        // The idle time after its last refusal, one slot again.
        assert!(table.room(class(0), 10, 8, NOW + IDLE));
    }

    #[test]
    fn the_critical_reserve_is_kept_from_other_requests_only() {
        let table = ClassTable::new(&[], 0.2, IDLE);
        assert_eq!(table.reserve(10), 2);
        assert_eq!(table.reserve(1), 0, "never the whole limit");
        assert_eq!(table.reserve(3), 1, "at least one slot");
        assert_eq!(fill(&table, Class::PLAIN, 10, 0), 8);
        let critical = Class::new(None, true);
        assert_eq!(fill(&table, critical, 10, 8), 10);
        // Critical requests in flight take slots from the others, never
        // from the reserve: with two of them running, a slot another
        // request gives back stays free, and the reserve with it.
        table.released(Class::PLAIN);
        assert!(
            !table.room(Class::PLAIN, 10, 9, NOW),
            "7 others and 2 critical: the reserve is one slot short"
        );
        table.released(Class::PLAIN);
        assert!(!table.room(Class::PLAIN, 10, 8, NOW));
        table.released(critical);
        table.released(critical);
        assert!(table.room(Class::PLAIN, 10, 6, NOW));
        assert!(!table.room(Class::PLAIN, 10, 8, NOW), "two slots are kept");
    }

    #[test]
    fn a_partition_is_idle_after_the_idle_time_without_arrivals() {
        let table = ClassTable::new(&[0.5], 0.0, IDLE);
        let p = &table.partitions[0];
        assert!(!p.active(NOW, IDLE), "never seen");
        p.seen(NOW);
        assert!(p.active(NOW + IDLE - 1, IDLE));
        assert!(!p.active(NOW + IDLE, IDLE));
        assert_eq!(table.partitions().count(), 2, "the listed one and the rest");
    }
}
