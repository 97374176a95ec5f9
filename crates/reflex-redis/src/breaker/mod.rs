//! [`SharedBreaker`]: a circuit breaker whose replicas act as one.
//!
//! A [`reflex_breaker::Backend`] for `CircuitBreakLayer`: each replica
//! keeps a [`MemoryBackend`](reflex_breaker::MemoryBackend) that makes
//! every decision on the request path (so admitting a call costs what it
//! costs without Redis), and a background task ties it to the fleet:
//!
//! - **Trips travel.** When this replica's breaker opens (its own rule, a
//!   probe that failed, [`trip`](reflex_breaker::Backend::trip)), the task
//!   publishes it at once and sets the component's `open` key for the open
//!   duration; every other replica's Closed breaker opens when the message
//!   arrives (one pub/sub hop: well under a millisecond on loopback, see
//!   `docs/distributed.md`). A close after successful probes travels the
//!   same way: the other replicas' Open and HalfOpen breakers close.
//! - **The fleet's rate.** With [`fleet_rate`](SharedBreakerBuilder::fleet_rate)
//!   on (the default) and a rate rule configured, each call adds to one to
//!   three local counters; every [`flush_every`](SharedBreakerBuilder::flush_every)
//!   the task adds them to the fleet window in Redis and reads the fleet's
//!   sums back, in one script. When the fleet holds the minimum of calls
//!   and its rate reaches the threshold, the breaker opens and the fleet
//!   hears it: the fleet trips on its aggregate even when each replica alone
//!   is under its minimum. The window is the breaker's time window (at most
//!   an hour, in at most 60 buckets); a count window (calls cannot be
//!   ordered across replicas) becomes 10 s in 10 buckets. Buckets follow
//!   Redis's clock, not the replicas'.
//! - **K probes in all.** Half-open, a local probe goes through only on a
//!   fleet lease: at most [`half_open_probes`](reflex_breaker::CircuitBreakBuilder::half_open_probes)
//!   unexpired leases exist across the fleet, none while the `open` key
//!   lives, each replica takes at most one per request to Redis. A probe
//!   that finds no lease is refused (its caller sees a `CircuitOpen`
//!   rejection, retry after 100 ms) while the task asks for one. A lease
//!   is spent by its probe; the leases are cleared when the fleet opens or
//!   closes, or expire after [`half_open_max_wait`](reflex_breaker::CircuitBreakBuilder::half_open_max_wait).
//!
//! # What is guaranteed, and what is not
//!
//! - The request path never waits on Redis: admission and recording are
//!   the local breaker's, plus relaxed atomic adds and, on a transition,
//!   a wake-up of the task.
//! - **While the link is down the breaker is a local one**: it trips on
//!   this replica's calls alone, its probes need no lease, its counts are
//!   dropped rather than kept for later. News it could not tell is told
//!   when the link is back, unless the fleet moved on; on that resync, an
//!   `open` key (the fleet opened meanwhile) opens it.
//! - Consistency is eventual. Two replicas may trip at once (both tell);
//!   a replica that misses a message (a lagging subscriber, a broken
//!   pub/sub connection) catches up only at its next resync (when its link
//!   comes back), and only if the `open` key still lives. A fleet trip
//!   opens the others with
//!   [`TransitionReason::Tripped`](reflex_core::TransitionReason::Tripped),
//!   a fleet close closes them as a reset (`Manual`).
//! - The `open` key lives for the base open duration: with an
//!   [`open_backoff`](reflex_breaker::CircuitBreakBuilder::open_backoff),
//!   each replica's breaker backs off by its own count of opens.
//! - States set by hand ([`ForcedOpen`](reflex_core::BreakerState::ForcedOpen),
//!   `Disabled`, `MetricsOnly`, a reset) are this replica's operator's:
//!   neither told to the fleet nor overridden by it.
//! - At most K probes per half-open spell of the fleet: a probe already
//!   out when the fleet re-opens (its lease cleared) still reports.

mod builder;
mod state;
mod stats;
mod store;
mod task;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reflex_breaker::{Backend, BreakerMetrics, ManualStateError, Refusal, Ticket};
use reflex_core::{BreakerState, Outcome};

pub use self::builder::SharedBreakerBuilder;
use self::state::Inner;
pub use self::stats::SharedBreakerStats;
use crate::fleet::Fleet;

/// A circuit breaker backend shared by the replicas of a fleet: see the
/// [module docs](self) for what it shares and guarantees.
///
/// Made by [`SharedBreaker::builder`]`(&fleet)…`[`backend()`](SharedBreakerBuilder::backend),
/// given to [`build_with_backend`](reflex_breaker::CircuitBreakBuilder::build_with_backend),
/// or with its layer by [`layer`](SharedBreakerBuilder::layer).
/// Clones share the breaker; its task ends once the last clone is dropped
/// (within one flush interval).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use reflex_breaker::CircuitBreakLayer;
/// use reflex_redis::{Fleet, SharedBreaker};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let fleet = Fleet::builder("redis://127.0.0.1:6379").namespace("shop").build()?;
/// let layer = CircuitBreakLayer::builder()
///     .component("db")
///     .failure_rate(0.5)
///     .minimum_calls(20)
///     .build_with_backend(
///         SharedBreaker::builder(&fleet)
///             .flush_every(Duration::from_millis(100))
///             .backend()?,
///     )?;
/// # let _ = layer;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SharedBreaker {
    inner: Arc<Inner>,
}

// === impl SharedBreaker ===

impl SharedBreaker {
    /// A builder of breakers shared through `fleet`.
    pub fn builder(fleet: &Fleet) -> SharedBreakerBuilder {
        SharedBreakerBuilder::new(fleet)
    }

    /// What it learned from the fleet so far.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use reflex_breaker::CircuitBreakLayer;
    /// use reflex_redis::{Fleet, SharedBreaker};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let fleet = Fleet::builder("redis://127.0.0.1:6379").build()?;
    /// let (_layer, breaker) = SharedBreaker::builder(&fleet).layer(CircuitBreakLayer::builder())?;
    /// println!("{} calls across the fleet", breaker.stats().fleet_calls);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> SharedBreakerStats {
        self.inner.counters.read(self.inner.leases_held())
    }

    /// The fleet it shares state through.
    pub fn fleet(&self) -> &Fleet {
        &self.inner.fleet
    }
}

impl Backend for SharedBreaker {
    #[inline]
    fn admit(&self) -> Result<Ticket, Refusal> {
        let ticket = self.inner.local.admit()?;
        if ticket.is_probe() {
            return self.inner.admit_probe(ticket);
        }
        Ok(ticket)
    }

    #[inline]
    fn record(&self, ticket: Ticket, outcome: Outcome, elapsed: Option<Duration>) {
        let inner = &*self.inner;
        inner.local.record(ticket, outcome, elapsed);
        if ticket.is_probe() {
            inner.probe_recorded();
            return;
        }
        match outcome {
            Outcome::Success if inner.settings.count_rate => inner.count(false, elapsed),
            Outcome::Failure => inner.failure_recorded(elapsed),
            _ => {}
        }
    }

    fn abandon(&self, ticket: Ticket) {
        // A lease spent on a dropped probe stays spent: the call may have
        // reached the dependency.
        self.inner.local.abandon(ticket);
    }

    fn needs_latency(&self) -> bool {
        self.inner.local.needs_latency()
    }

    fn state(&self) -> BreakerState {
        self.inner.local.state()
    }

    fn metrics(&self) -> BreakerMetrics {
        let mut metrics = self.inner.local.metrics();
        let lease_refusals = self.inner.counters.lease_refusals.load(Ordering::Relaxed);
        metrics.rejected_total = metrics.rejected_total.saturating_add(lease_refusals);
        metrics
    }

    fn set_state(&self, state: BreakerState) -> Result<(), ManualStateError> {
        self.inner.local.set_state(state)?;
        self.inner.set_by_hand();
        Ok(())
    }

    fn trip(&self) {
        self.inner.local.trip();
        self.inner.opened_here();
    }

    fn set_throttle(&self, k: Option<f64>) {
        self.inner.local.set_throttle(k);
    }
}

impl Drop for SharedBreaker {
    fn drop(&mut self) {
        // The task may be waiting: it finds the breaker gone and ends.
        self.inner.wake.notify_one();
    }
}

impl fmt::Debug for SharedBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBreaker")
            .field("component", self.inner.local.config().component())
            .field("state", &self.state())
            .field("fleet", &self.inner.fleet)
            .finish_non_exhaustive()
    }
}
