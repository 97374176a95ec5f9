//! [`Inner`]: a shared breaker's local view (a [`MemoryBackend`] that
//! makes every decision) and the few atomics that tie it to the fleet,
//! read and written on the request path; the background task
//! (`task.rs`) does the talking.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use reflex_breaker::{Backend as _, MemoryBackend, Refusal, Ticket};
use reflex_core::BreakerState;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::stats::Counters;
use super::wire::{FleetCounts, FleetWindow, RateRule};
use crate::fleet::Fleet;

/// What a refused probe tells its caller: a lease may come soon.
pub(crate) const LEASE_RETRY: Duration = Duration::from_millis(100);

/// What this replica last told (or heard from) the fleet about its
/// breaker: decides whether a state it sees is news.
pub(crate) const KNOWN_CLOSED: u8 = 0;
pub(crate) const KNOWN_OPEN: u8 = 1;
pub(crate) const KNOWN_HALF_OPEN: u8 = 2;

/// Work for the task, as bits of [`Inner::pending`].
pub(crate) const ANNOUNCE_OPEN: u8 = 1;
pub(crate) const ANNOUNCE_CLOSE: u8 = 2;
pub(crate) const WANT_LEASE: u8 = 4;

/// The fixed settings of a shared breaker, worked out at build.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The scope of its messages.
    pub(crate) scope: String,
    /// The key that says the fleet is open (with the open duration's TTL).
    pub(crate) open_key: String,
    /// The sorted set of probe leases (scored by expiry).
    pub(crate) probes_key: String,
    /// The hash of the fleet window's buckets.
    pub(crate) window_key: String,
    pub(crate) flush_every: Duration,
    /// Counts are kept and flushed: the fleet rate is on and the breaker
    /// has a rate rule.
    pub(crate) count_rate: bool,
    /// A call at least this long is slow.
    pub(crate) slow_call: Option<Duration>,
    pub(crate) window: FleetWindow,
    pub(crate) rule: RateRule,
    /// Probe leases in the fleet at once.
    pub(crate) probes: u32,
    pub(crate) lease_ttl_ms: u64,
    pub(crate) open_ms: u64,
}

/// A shared breaker's state: see the module docs of `breaker`.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) local: MemoryBackend,
    pub(crate) fleet: Fleet,
    pub(crate) settings: Settings,
    /// Counts since the last flush (only while `count_rate`).
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
    /// `KNOWN_*`.
    known: AtomicU8,
    /// Bits of work for the task.
    pending: AtomicU8,
    /// Probe leases held and not used yet, valid until `lease_until`
    /// (nanoseconds since `base`).
    leases: AtomicU32,
    lease_until: AtomicU64,
    base: Instant,
    /// Wakes the task. Its own `Arc`: the task holds it, not `Inner`.
    pub(crate) wake: Arc<Notify>,
    pub(crate) counters: Counters,
}

// === impl Inner ===

impl Inner {
    pub(crate) fn new(local: MemoryBackend, fleet: Fleet, settings: Settings) -> Self {
        Self {
            local,
            fleet,
            settings,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            known: AtomicU8::new(KNOWN_CLOSED),
            pending: AtomicU8::new(0),
            leases: AtomicU32::new(0),
            lease_until: AtomicU64::new(0),
            base: Instant::now(),
            wake: Arc::new(Notify::new()),
            counters: Counters::default(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Counts a finished call for the next flush.
    #[inline]
    pub(crate) fn count(&self, failed: bool, elapsed: Option<Duration>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(threshold), Some(elapsed)) = (self.settings.slow_call, elapsed)
            && elapsed >= threshold
        {
            self.slow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts since the last flush, zeroed.
    pub(crate) fn take_counts(&self) -> FleetCounts {
        FleetCounts {
            calls: self.calls.swap(0, Ordering::Relaxed),
            failures: self.failures.swap(0, Ordering::Relaxed),
            slow: self.slow.swap(0, Ordering::Relaxed),
        }
    }

    /// Puts back counts a flush could not deliver: they go with the next.
    pub(crate) fn restore(&self, counts: FleetCounts) {
        self.calls.fetch_add(counts.calls, Ordering::Relaxed);
        self.failures.fetch_add(counts.failures, Ordering::Relaxed);
        self.slow.fetch_add(counts.slow, Ordering::Relaxed);
    }

    /// After a failure was recorded: counted if still Closed, news if it
    /// opened the breaker.
    #[inline]
    pub(crate) fn failure_recorded(&self, elapsed: Option<Duration>) {
        match self.local.state() {
            BreakerState::Closed if self.settings.count_rate => self.count(true, elapsed),
            BreakerState::Open => self.opened_here(),
            _ => {}
        }
    }

    /// The local breaker is open: if that is news, the fleet hears it.
    #[cold]
    pub(crate) fn opened_here(&self) {
        if self.local.state() != BreakerState::Open {
            return;
        }
        if self.known.load(Ordering::Acquire) != KNOWN_OPEN
            && self.known.swap(KNOWN_OPEN, Ordering::AcqRel) != KNOWN_OPEN
        {
            self.leases.store(0, Ordering::Release);
            self.request(ANNOUNCE_OPEN);
        }
    }

    /// After a probe was recorded: did it close or re-open the breaker?
    #[cold]
    pub(crate) fn probe_recorded(&self) {
        match self.local.state() {
            BreakerState::Closed
                if self
                    .known
                    .compare_exchange(
                        KNOWN_HALF_OPEN,
                        KNOWN_CLOSED,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok() =>
            {
                self.leases.store(0, Ordering::Release);
                self.request(ANNOUNCE_CLOSE);
            }
            BreakerState::Open => self.opened_here(),
            _ => {}
        }
    }

    /// The local breaker admitted `ticket` as a probe: it goes through on
    /// a fleet lease (or with the link down), else it is given back and
    /// refused while the task asks for a lease.
    #[cold]
    pub(crate) fn admit_probe(&self, ticket: Ticket) -> Result<Ticket, Refusal> {
        if self.known.load(Ordering::Acquire) != KNOWN_HALF_OPEN {
            self.known.store(KNOWN_HALF_OPEN, Ordering::Release);
        }
        if !self.fleet.is_up() || self.use_lease() {
            return Ok(ticket);
        }
        self.local.abandon(ticket);
        Counters::bump(&self.counters.lease_refusals);
        self.request(WANT_LEASE);
        Err(Refusal::new(Some(LEASE_RETRY)))
    }

    /// Spends one lease, if one is held and still valid.
    fn use_lease(&self) -> bool {
        self.leases_held() > 0
            && self
                .leases
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
    }

    /// Leases held and still valid.
    pub(crate) fn leases_held(&self) -> u32 {
        let held = self.leases.load(Ordering::Acquire);
        if held == 0 || self.now() >= self.lease_until.load(Ordering::Acquire) {
            return 0;
        }
        held
    }

    /// A lease was granted for `ttl_ms`: one more held.
    pub(crate) fn add_lease(&self, ttl_ms: u64) {
        if self.leases_held() == 0 {
            self.leases.store(0, Ordering::Release);
        }
        let until = self.now().saturating_add(ttl_ms.saturating_mul(1_000_000));
        self.lease_until.store(until, Ordering::Release);
        self.leases.fetch_add(1, Ordering::AcqRel);
        Counters::bump(&self.counters.leases_taken);
    }

    pub(crate) fn drop_leases(&self) {
        self.leases.store(0, Ordering::Release);
    }

    /// `KNOWN_*`: what the fleet was last told, or told this replica.
    pub(crate) fn known(&self) -> u8 {
        self.known.load(Ordering::Acquire)
    }

    /// Asks the task for `work`, waking it unless it was asked already.
    #[inline]
    pub(crate) fn request(&self, work: u8) {
        if self.pending.fetch_or(work, Ordering::AcqRel) & work == 0 {
            self.wake.notify_one();
        }
    }

    /// Takes the work asked for, leaving `keep` of it asked.
    pub(crate) fn take_pending(&self, keep: u8) -> u8 {
        self.pending.fetch_and(keep, Ordering::AcqRel) & !keep
    }

    /// The fleet says open: a Closed breaker opens, without telling the
    /// fleet again. Returns whether it opened.
    pub(crate) fn open_from_fleet(&self) -> bool {
        self.drop_leases();
        if self.local.state() != BreakerState::Closed {
            return false;
        }
        self.known.store(KNOWN_OPEN, Ordering::Release);
        self.local.trip();
        self.take_counts();
        true
    }

    /// The fleet says closed: an Open or HalfOpen breaker closes, without
    /// telling the fleet again; a state set by hand is the operator's.
    /// Returns whether it closed.
    pub(crate) fn close_from_fleet(&self) -> bool {
        self.drop_leases();
        if !matches!(
            self.local.state(),
            BreakerState::Open | BreakerState::HalfOpen
        ) {
            return false;
        }
        self.known.store(KNOWN_CLOSED, Ordering::Release);
        self.local.set_state(BreakerState::Closed).is_ok()
    }

    /// The state was set by hand: whatever it was, nothing is owed to the
    /// fleet about it.
    pub(crate) fn set_by_hand(&self) {
        self.known.store(KNOWN_CLOSED, Ordering::Release);
        self.drop_leases();
    }
}
