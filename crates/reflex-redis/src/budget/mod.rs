//! A fleet-wide concurrency budget: at most `cap` calls in flight to a
//! dependency across every replica, with the hot path one local atomic.
//!
//! A [`FleetBudget`] steers one shed layer
//! ([`reflex_shed::ConcurrencyShedLayer`]) through its fleet cap
//! ([`ShedHandle::set_fleet_cap`]): the layer admits against the permits
//! this replica leased from the fleet, with the compare-and-swap it
//! always does. Nothing on the request path talks to Redis. A background
//! task looks at the layer every [`sample_every`](FleetBudgetBuilder::sample_every)
//! (calls in flight, requests shed) and renews the lease, every third of
//! its [`ttl`](FleetBudgetBuilder::ttl) and whenever demand changes:
//!
//! - a replica that sheds, or runs close to what it holds, asks for one
//!   [`block`](FleetBudgetBuilder::block) more; one that does not comes
//!   down to what it used plus a block; an idle one keeps one block;
//! - Redis grants what the cap leaves after the other replicas' leases,
//!   and, when the replicas together want more than the cap, no more than
//!   a replica's fair share (`cap × its want / all wants`, at least a
//!   block): a replica above its share gives permits back at its next
//!   renewal, and a starved replica asks the others to renew at once
//!   (pub/sub);
//! - a replica that dies stops renewing: its lease lapses a TTL after its
//!   last renewal and the others take its permits.
//!
//! # What is guaranteed
//!
//! - **The cap holds while Redis is up and every replica renews within
//!   its TTL.** A replica raises its local cap only after Redis granted it;
//!   it lowers it before telling Redis (the lowered cap is in force when
//!   [`ShedHandle::set_fleet_cap`] returns), then reads its calls in
//!   flight, and Redis records it as holding the larger of its grant and
//!   those calls (they cannot be revoked: they drain). The lease script
//!   runs atomically, with Redis's clock (`TIME`): the replicas' clocks
//!   play no part.
//! - **A replica that cannot renew for a whole TTL falls back**: to the
//!   shed layer's own limit, or to the static share given to
//!   [`fallback`](FleetBudgetBuilder::fallback). It counts the TTL from
//!   when it sent its last granted renewal, before Redis ran it (so the
//!   TTL ends no later than Redis's), and looks every sample: it falls
//!   back at its first look after the TTL, up to a sample (or a renewal's
//!   deadline, when one is under way) after Redis may have handed its
//!   permits on. While Redis is down the link
//!   reports [`Signal::FleetLink`](reflex_core::Signal::FleetLink)`{ up:
//!   false }` under the layer's component; when Redis is back the budget
//!   leases again at once and the cap holds again once every replica has.
//! - **Every request gets exactly one outcome**, the shed layer's: admitted
//!   or shed, Redis up or not.
//!
//! # What is not
//!
//! - **While a replica is cut off**, its fallback is local behaviour: with
//!   the default (`None`), the fleet may run above the cap. With a share of
//!   `cap / replicas` it does not while Redis is down for every replica;
//!   while only some are cut off, the others lease the whole cap once the
//!   cut-off leases lapse in Redis, and the fleet may run above it by the
//!   cut-off replicas' shares. Calls admitted under a lease that lapsed
//!   drain after Redis has handed its permits on.
//! - **Redis losing its state** (a restart without persistence, a failover
//!   to a replica that missed the last writes) forgets every lease: until
//!   every replica has renewed (one third of a TTL, or at once on the
//!   link's comeback), the first to renew may be granted permits the others
//!   still use. The excess drains as their next renewals record what they
//!   hold.
//! - **Fairness is by wants, not by need**: a replica's share follows what
//!   it asks for, renewed at most every sample.
//! - Every replica of a component must be given the same cap; block and TTL
//!   may differ.
//!
//! A replica starts holding no permits: its layer sheds every request until
//! the first lease (one round trip once the link is up), or until a TTL
//! passes without one (then the fallback).
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use reflex_redis::{Fleet, budget::FleetBudget};
//! use reflex_shed::ConcurrencyShedLayer;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let fleet = Fleet::builder("redis://127.0.0.1:6379").namespace("shop").build()?;
//! let shed = ConcurrencyShedLayer::builder().hard_limit(50).component("db").build()?;
//! // 200 connections to the database, shared by every replica.
//! let budget = FleetBudget::builder(&fleet, &shed.handle())
//!     .cap(200)
//!     .block(10)
//!     .ttl(Duration::from_secs(5))
//!     .start()?;
//! // ... serve through `shed`; keep `budget` as long as the layer serves.
//! println!("{:?}", budget.metrics());
//! # Ok(()) }
//! ```

mod builder;
mod demand;
mod script;
mod task;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use reflex_shed::ShedHandle;

pub use builder::{BudgetError, FleetBudgetBuilder};

use self::builder::Config;
use self::script::BudgetKeys;
use crate::fleet::Fleet;
use crate::keys::escape;

/// One replica's share of a fleet-wide concurrency budget: keeps a shed
/// layer's fleet cap at the permits leased from Redis (see the
/// [module docs](self) for what is guaranteed).
///
/// The budget lives as long as this handle: dropping it ends its task and
/// lifts the layer's fleet cap (the layer goes back to its own limit); its
/// lease is not given back but lapses a TTL later. Keep it beside the layer.
///
/// # Examples
///
/// ```no_run
/// use reflex_redis::{Fleet, budget::{BudgetState, FleetBudget}};
/// use reflex_shed::ConcurrencyShedLayer;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let fleet = Fleet::builder("redis://127.0.0.1:6379").build()?;
/// let shed = ConcurrencyShedLayer::builder().hard_limit(50).component("db").build()?;
/// let budget = FleetBudget::builder(&fleet, &shed.handle()).cap(12).block(2).start()?;
/// let metrics = budget.metrics();
/// if metrics.state == BudgetState::Leased {
///     assert!(metrics.granted <= 12);
/// }
/// # Ok(()) }
/// ```
#[must_use = "the budget ends when dropped"]
pub struct FleetBudget {
    inner: Arc<Inner>,
}

/// A budget's live numbers, from [`FleetBudget::metrics`].
///
/// Read under a lock the budget's task takes a few times a second: cheap,
/// but not for the request path.
///
/// # Examples
///
/// ```no_run
/// # fn show(budget: &reflex_redis::FleetBudget) {
/// let m = budget.metrics();
/// println!("{}/{} permits here, {} in the fleet across {} replicas", m.granted, m.cap, m.fleet_total, m.replicas);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetMetrics {
    /// Leased, falling back, or not leased yet.
    pub state: BudgetState,
    /// Permits this replica admits against (0 unless leased).
    pub granted: usize,
    /// Permits it asks for now.
    pub wanted: usize,
    /// Permits Redis records as this replica's at its last renewal (its
    /// grant, or more while calls admitted before drain).
    pub held: usize,
    /// Permits Redis records across the fleet at this replica's last
    /// renewal.
    pub fleet_total: usize,
    /// Replicas holding a lease at this replica's last renewal.
    pub replicas: usize,
    /// The fleet-wide cap.
    pub cap: usize,
    /// Renewals Redis answered.
    pub renewals: u64,
    /// Renewals that failed (Redis slow, down, or erring).
    pub failures: u64,
    /// Times the lease lapsed and the replica fell back.
    pub fallbacks: u64,
}

/// Where a budget stands.
///
/// # Examples
///
/// ```no_run
/// use reflex_redis::budget::BudgetState;
/// # fn check(budget: &reflex_redis::FleetBudget) {
/// if budget.metrics().state == BudgetState::Fallback {
///     eprintln!("cut off from redis: admitting against the fallback");
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BudgetState {
    /// No lease yet: the layer sheds everything (for at most a TTL).
    Starting,
    /// Admitting against permits leased from the fleet.
    Leased,
    /// The lease lapsed: admitting against the fallback until Redis grants
    /// a lease again.
    Fallback,
}

pub(crate) struct Inner {
    shed: ShedHandle,
    config: Config,
    keys: BudgetKeys,
    /// This budget's pub/sub scope: `budget:<component>`.
    scope: String,
    metrics: Mutex<BudgetMetrics>,
}

// === impl FleetBudget ===

impl FleetBudget {
    /// A builder for the budget of the component `shed` guards, shared
    /// with every replica of `fleet`.
    pub fn builder(fleet: &Fleet, shed: &ShedHandle) -> FleetBudgetBuilder {
        FleetBudgetBuilder::new(fleet, shed)
    }

    /// The budget's live numbers.
    pub fn metrics(&self) -> BudgetMetrics {
        *self
            .inner
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Permits this replica admits against now (0 unless leased).
    pub fn granted(&self) -> usize {
        self.metrics().granted
    }

    /// The shed layer this budget steers.
    pub fn shed(&self) -> &ShedHandle {
        &self.inner.shed
    }
}

impl fmt::Debug for FleetBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetBudget")
            .field("component", self.inner.shed.component())
            .field("metrics", &self.metrics())
            .finish()
    }
}

// === impl Inner ===

impl Inner {
    fn new(fleet: &Fleet, shed: ShedHandle, config: Config) -> Self {
        let component = shed.component().as_str().to_owned();
        Self {
            keys: BudgetKeys::new(&fleet.link, &component),
            scope: format!("budget:{}", escape(&component)),
            metrics: Mutex::new(BudgetMetrics {
                state: BudgetState::Starting,
                granted: 0,
                wanted: 0,
                held: 0,
                fleet_total: 0,
                replicas: 0,
                cap: config.cap,
                renewals: 0,
                failures: 0,
                fallbacks: 0,
            }),
            shed,
            config,
        }
    }

    /// No permits until the first lease.
    fn begin(&self) {
        let _ = self.shed.set_fleet_cap(Some(0));
    }

    fn record(&self, change: impl FnOnce(&mut BudgetMetrics)) {
        change(&mut self.metrics.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shed.set_fleet_cap(None);
    }
}
