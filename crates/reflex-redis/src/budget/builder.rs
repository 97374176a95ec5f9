//! [`FleetBudgetBuilder`]: a budget's settings, checked before it starts,
//! and the [`BudgetError`] it refuses them with.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reflex_shed::ShedHandle;

use super::{FleetBudget, Inner};
use crate::fleet::Fleet;

/// The largest cap, block or fallback: a shed layer's largest limit.
const MAX_PERMITS: usize = (1 << 31) - 1;
/// The longest lease.
const MAX_TTL: Duration = Duration::from_secs(3600);
/// The shortest lease, whatever the link's deadlines.
const MIN_TTL: Duration = Duration::from_millis(100);

/// A [`FleetBudget`] configuration that cannot work.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_redis::{Fleet, budget::{BudgetError, FleetBudget}};
/// use reflex_shed::ConcurrencyShedLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let fleet = Fleet::builder("redis://127.0.0.1:6379").build()?;
/// let shed = ConcurrencyShedLayer::builder().hard_limit(50).build()?.handle();
/// let refused = FleetBudget::builder(&fleet, &shed).cap(10).block(20).start();
/// assert_eq!(refused.unwrap_err(), BudgetError::Block { block: 20, cap: 10 });
/// let refused = FleetBudget::builder(&fleet, &shed).cap(10).ttl(Duration::MAX).start();
/// assert!(matches!(refused, Err(BudgetError::Ttl { .. })));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// The cap is 0 (a fleet that may call nothing wants a breaker) or
    /// above 2³¹ − 1.
    #[error("`cap` must be 1 to 2147483647, got {0}")]
    Cap(usize),
    /// The block is 0 or above the cap.
    #[error("`block` must be 1 to the cap ({cap}), got {block}")]
    Block {
        /// The block asked for.
        block: usize,
        /// The cap.
        cap: usize,
    },
    /// The lease's time to live is too short to renew (below three of the
    /// link's background deadlines, three samples, or 100 ms) or above an
    /// hour.
    #[error("`ttl` must be {min:?} to 1h, got {value:?}")]
    Ttl {
        /// The TTL asked for.
        value: Duration,
        /// The shortest this budget accepts.
        min: Duration,
    },
    /// The sampling interval is zero or above an hour.
    #[error("`sample_every` must be above zero and at most 1h, got {0:?}")]
    SampleEvery(Duration),
    /// A fallback above 2³¹ − 1.
    #[error("`fallback` must be at most 2147483647, got {0}")]
    Fallback(usize),
}

/// Configures a [`FleetBudget`]; see [`FleetBudget::builder`].
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use reflex_redis::{Fleet, budget::FleetBudget};
/// use reflex_shed::ConcurrencyShedLayer;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let fleet = Fleet::builder("redis://127.0.0.1:6379").build()?;
/// let shed = ConcurrencyShedLayer::builder().hard_limit(50).component("db").build()?;
/// // Four replicas; cut off from Redis, each keeps a quarter of the cap.
/// let budget = FleetBudget::builder(&fleet, &shed.handle())
///     .cap(200)
///     .block(10)
///     .ttl(Duration::from_secs(3))
///     .sample_every(Duration::from_millis(100))
///     .fallback(Some(50))
///     .start()?;
/// # drop(budget);
/// # Ok(()) }
/// ```
#[must_use]
pub struct FleetBudgetBuilder {
    fleet: Fleet,
    shed: ShedHandle,
    cap: usize,
    block: Option<usize>,
    ttl: Duration,
    sample_every: Duration,
    fallback: Option<usize>,
}

/// A budget's checked settings.
#[derive(Debug, Clone, Copy)]
pub(super) struct Config {
    pub(super) cap: usize,
    pub(super) block: usize,
    pub(super) ttl: Duration,
    pub(super) sample_every: Duration,
    pub(super) fallback: Option<usize>,
}

// === impl FleetBudgetBuilder ===

impl FleetBudgetBuilder {
    pub(super) fn new(fleet: &Fleet, shed: &ShedHandle) -> Self {
        Self {
            fleet: fleet.clone(),
            shed: shed.clone(),
            cap: 0,
            block: None,
            ttl: Duration::from_secs(5),
            sample_every: Duration::from_millis(50),
            fallback: None,
        }
    }

    /// The fleet-wide cap: calls in flight to the dependency across every
    /// replica of the component. Every replica must be given the same.
    /// No default: [`start`](Self::start) refuses a budget without one.
    pub fn cap(mut self, cap: usize) -> Self {
        self.cap = cap;
        self
    }

    /// Permits are leased and given back this many at a time, and an idle
    /// replica keeps one block. Defaults to a twentieth of the cap (at
    /// least 1). Keep `replicas × block` under the cap, or idle replicas
    /// hold most of it.
    pub fn block(mut self, block: usize) -> Self {
        self.block = Some(block);
        self
    }

    /// How long a lease lives without renewal: a dead replica's permits go
    /// back to the fleet after it, and a replica that cannot reach Redis
    /// for that long falls back. Renewed every third of it, and sooner
    /// when demand changes. Defaults to 5 s.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How often the budget looks at the shed layer's numbers (in flight,
    /// requests shed) to decide what to ask for. Defaults to 50 ms.
    pub fn sample_every(mut self, every: Duration) -> Self {
        self.sample_every = every;
        self
    }

    /// The limit this replica falls back to once its lease has lapsed (it
    /// could not renew for a whole TTL): `None`, the shed layer's own
    /// limit; `Some(n)`, a static share such as `cap / replicas` (0 refuses
    /// every call until Redis is back). Defaults to `None`.
    pub fn fallback(mut self, fallback: Option<usize>) -> Self {
        self.fallback = fallback;
        self
    }

    /// Checks the settings, caps the shed layer at 0 permits until the
    /// first lease, and starts the budget's task on the fleet's runtime.
    ///
    /// # Errors
    ///
    /// A [`BudgetError`] for a cap, block, TTL, sampling interval or
    /// fallback that cannot work; nothing is started.
    pub fn start(self) -> Result<FleetBudget, BudgetError> {
        let config = self.check()?;
        let inner = Arc::new(Inner::new(&self.fleet, self.shed, config));
        self.fleet.attach(inner.shed.component());
        inner.begin();
        let runtime = self.fleet.runtime().clone();
        runtime.spawn(super::task::run(Arc::downgrade(&inner), self.fleet));
        Ok(FleetBudget { inner })
    }

    fn check(&self) -> Result<Config, BudgetError> {
        if !(1..=MAX_PERMITS).contains(&self.cap) {
            return Err(BudgetError::Cap(self.cap));
        }
        let block = self.block.unwrap_or((self.cap / 20).max(1));
        if !(1..=self.cap).contains(&block) {
            return Err(BudgetError::Block {
                block,
                cap: self.cap,
            });
        }
        if self.sample_every.is_zero() || self.sample_every > MAX_TTL {
            return Err(BudgetError::SampleEvery(self.sample_every));
        }
        let min = MIN_TTL
            .max(self.fleet.link.timing.background() * 3)
            .max(self.sample_every * 3);
        if self.ttl < min || self.ttl > MAX_TTL {
            return Err(BudgetError::Ttl {
                value: self.ttl,
                min,
            });
        }
        if let Some(fallback) = self.fallback.filter(|f| *f > MAX_PERMITS) {
            return Err(BudgetError::Fallback(fallback));
        }
        Ok(Config {
            cap: self.cap,
            block,
            ttl: self.ttl,
            sample_every: self.sample_every,
            fallback: self.fallback,
        })
    }
}

impl fmt::Debug for FleetBudgetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetBudgetBuilder")
            .field("component", self.shed.component())
            .field("cap", &self.cap)
            .field("block", &self.block)
            .field("ttl", &self.ttl)
            .field("sample_every", &self.sample_every)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}
