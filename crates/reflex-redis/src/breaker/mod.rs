//! [`SharedBreaker`]: a circuit breaker whose replicas act as one.
//!
//! A [`reflex_breaker::Backend`] for `CircuitBreakLayer`: each replica
//! keeps a [`MemoryBackend`] that makes every decision on the request path
//! (so admitting a call costs what it costs without Redis), and a
//! background task ties it to the fleet:
//!
//! - **Trips travel.** When this replica's breaker opens (its own rule, a
//!   probe that failed, [`trip`](reflex_breaker::Backend::trip)), the task
//!   publishes it at once and sets the component's `open` key for the open
//!   duration; every other replica's Closed breaker opens when the message
//!   arrives (one pub/sub hop: well under a millisecond on loopback, see
//!   `docs/distributed.md`). A close after successful probes travels the
//!   same way: the other replicas' Open and HalfOpen breakers close.
//! - **The fleet's rate.** With [`fleet_rate`](SharedBreakerBuilder::fleet_rate)
//!   on (the default) and a rate rule configured, each call adds to two or
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
//!   pub/sub connection) catches up at its next resync only if the `open`
//!   key still lives. A fleet trip opens the others with
//!   [`TransitionReason::Tripped`](reflex_core::TransitionReason::Tripped), a fleet close closes
//!   them as a reset (`Manual`).
//! - The `open` key lives for the base open duration: with an
//!   [`open_backoff`](reflex_breaker::CircuitBreakBuilder::open_backoff),
//!   each replica's breaker backs off by its own count of opens.
//! - States set by hand ([`ForcedOpen`](reflex_core::BreakerState::ForcedOpen),
//!   `Disabled`, `MetricsOnly`, a reset) are this replica's operator's:
//!   neither told to the fleet nor overridden by it.
//! - At most K probes per half-open spell of the fleet: a probe already
//!   out when the fleet re-opens (its lease cleared) still reports.

mod state;
mod stats;
mod store;
mod task;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reflex_breaker::{
    Backend, BreakerConfig, BreakerMetrics, ManualStateError, MemoryBackend, Refusal, Ticket,
};
use reflex_core::{BreakerState, ConfigError, ConfigErrorKind, Outcome};

use self::state::{Inner, Settings};
pub use self::stats::SharedBreakerStats;
use self::wire::{FleetWindow, RateRule, scope, ttl_ms};
use crate::fleet::Fleet;

const LAYER: &str = "shared_breaker";

/// A circuit breaker backend shared by the replicas of a fleet: see the
/// [module docs](self) for what it shares and guarantees.
///
/// Made by [`SharedBreaker::builder`]`(&fleet)…`[`backend()`](SharedBreakerBuilder::backend),
/// given to [`build_with_backend`](reflex_breaker::CircuitBreakBuilder::build_with_backend).
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

/// Configures a [`SharedBreaker`]; see [`SharedBreaker::builder`].
#[must_use = "a builder does nothing until `backend` or `build` is called"]
#[derive(Debug, Clone)]
pub struct SharedBreakerBuilder {
    fleet: Fleet,
    flush_every: Duration,
    fleet_rate: bool,
}

// === impl SharedBreaker ===

impl SharedBreaker {
    /// A builder of breakers shared through `fleet`.
    pub fn builder(fleet: &Fleet) -> SharedBreakerBuilder {
        SharedBreakerBuilder {
            fleet: fleet.clone(),
            flush_every: Duration::from_millis(100),
            fleet_rate: true,
        }
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
    /// let make = SharedBreaker::builder(&fleet).backend()?;
    /// let mut kept = None;
    /// let _layer = CircuitBreakLayer::builder().build_with_backend(|config| {
    ///     let breaker = make(config);
    ///     kept = Some(breaker.clone());
    ///     breaker
    /// })?;
    /// let stats = kept.expect("built").stats();
    /// println!("{} calls across the fleet", stats.fleet_calls);
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
        metrics.rejected_total = metrics
            .rejected_total
            .saturating_add(self.stats().lease_refusals);
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

// === impl SharedBreakerBuilder ===

impl SharedBreakerBuilder {
    /// How often the counts of the fleet rate go to Redis (one script per
    /// interval, when there were calls): the fleet judges its rate at most
    /// this late. Between 1 ms and an hour. Defaults to 100 ms.
    pub fn flush_every(mut self, every: Duration) -> Self {
        self.flush_every = every;
        self
    }

    /// Judge the breaker's rate rules over the fleet's calls too (they
    /// still apply to this replica's alone). Off: only trips and closes are
    /// shared. Defaults to on; does nothing for a breaker with no rate rule.
    pub fn fleet_rate(mut self, on: bool) -> Self {
        self.fleet_rate = on;
        self
    }

    /// Checks the settings and gives what
    /// [`build_with_backend`](reflex_breaker::CircuitBreakBuilder::build_with_backend)
    /// takes: each call makes a breaker with the layer's configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `flush_every` is zero or above an hour.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use reflex_breaker::CircuitBreakLayer;
    /// use reflex_redis::{Fleet, SharedBreaker};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let fleet = Fleet::builder("redis://127.0.0.1:6379").build()?;
    /// let layer = CircuitBreakLayer::builder()
    ///     .component("payments")
    ///     .consecutive_failures(5)
    ///     .build_with_backend(SharedBreaker::builder(&fleet).backend()?)?;
    /// # let _ = layer;
    /// # Ok(()) }
    /// ```
    pub fn backend(self) -> Result<impl FnOnce(BreakerConfig) -> SharedBreaker, ConfigError> {
        self.check()?;
        Ok(move |config| self.start(config))
    }

    /// As [`backend`](Self::backend), for one configuration at hand.
    ///
    /// # Errors
    ///
    /// As [`backend`](Self::backend).
    pub fn build(self, config: BreakerConfig) -> Result<SharedBreaker, ConfigError> {
        self.check()?;
        Ok(self.start(config))
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.flush_every.is_zero() {
            return Err(ConfigError::new(
                LAYER,
                "flush_every",
                ConfigErrorKind::Zero,
                "must be above zero",
            ));
        }
        if self.flush_every < Duration::from_millis(1)
            || self.flush_every > Duration::from_secs(3600)
        {
            return Err(ConfigError::new(
                LAYER,
                "flush_every",
                ConfigErrorKind::OutOfRange,
                format!(
                    "must be between 1 ms and an hour, got {:?}",
                    self.flush_every
                ),
            ));
        }
        Ok(())
    }

    /// Makes the breaker and starts its task on the fleet's runtime.
    fn start(self, config: BreakerConfig) -> SharedBreaker {
        let fleet = self.fleet;
        let component = config.component().clone();
        fleet.attach(&component);
        let name = component.as_str();
        let keys = fleet.keys();
        let count_rate =
            self.fleet_rate && (config.failure_rate().is_some() || config.slow_call().is_some());
        let settings = Settings {
            scope: scope(name),
            open_key: keys.key("cb", name, "open"),
            probes_key: keys.key("cb", name, "probes"),
            window_key: keys.key("cb", name, "window"),
            flush_every: self.flush_every,
            count_rate,
            slow_call: config
                .slow_call()
                .filter(|_| count_rate)
                .map(|(_, slow)| slow),
            window: FleetWindow::of(config.window()),
            rule: RateRule {
                minimum_calls: u64::from(config.minimum_calls()),
                failure_rate: config.failure_rate(),
                slow_rate: config.slow_call().map(|(threshold, _)| threshold),
            },
            probes: config.probes(),
            lease_ttl_ms: ttl_ms(config.half_open_max_wait()),
            open_ms: ttl_ms(config.open_duration()),
        };
        let inner = Arc::new(Inner::new(MemoryBackend::new(config), fleet, settings));
        task::spawn(&inner);
        SharedBreaker { inner }
    }
}
