//! Replicas that act as one: reflex's layers sharing state through Redis
//! (or Valkey).
//!
//! A service runs as N replicas. Alone, each replica's breaker learns that
//! a dependency is down by itself, each replica's concurrency limit is a
//! guess at its share of the dependency, and N replicas that miss the same
//! key make N identical calls. This crate gives each of those a backend
//! shared through Redis:
//!
//! - [`breaker`]: a circuit breaker backend whose trips reach every replica
//!   over pub/sub, whose failure rate is judged over the fleet's calls
//!   (windowed counters, flushed in batches), and whose half-open probes
//!   are leased, K in all.
//! - [`budget`]: a fleet-wide cap on calls in flight to a dependency; each
//!   replica leases blocks of permits (with a TTL, renewed) and admits
//!   against its lease with one local atomic.
//! - [`dedup`]: the first replica to miss a key leases it and calls; the
//!   others wait for its result instead of calling.
//!
//! All of them hang off one [`Fleet`]: one replica's link to Redis.
//!
//! # What is guaranteed, and what is not
//!
//! - **The request path never waits on Redis longer than the fleet's
//!   [`op_timeout`](FleetBuilder::op_timeout)**, and the breaker and the
//!   budget never wait on it at all: they decide from local atomics that a
//!   background task keeps in step with Redis.
//! - **Redis is a dependency too.** When it is slow or down, each backend
//!   falls back to what this replica sees alone, reports
//!   [`Signal::FleetLink`](reflex_core::Signal::FleetLink) to the witness,
//!   and resyncs when Redis answers again. Every request still gets exactly
//!   one outcome.
//! - **Consistency is eventual, within one round trip and one flush.** A
//!   trip reaches the other replicas when its pub/sub message does; a
//!   fleet-wide rate is judged on counts flushed every
//!   [`flush_every`](breaker::SharedBreaker) interval. A network partition
//!   that cuts a replica from Redis makes that replica local (see
//!   `docs/distributed.md`).
//! - Keys of one component share a hash tag (`{namespace:kind:component}`),
//!   so every script touches one slot of a Redis Cluster.
//!
//! # Examples
//!
//! ```no_run
//! use reflex_redis::Fleet;
//!
//! # async fn run() -> Result<(), reflex_redis::FleetError> {
//! let fleet = Fleet::builder("redis://127.0.0.1:6379")
//!     .namespace("checkout")
//!     .build()?;
//! # let _ = fleet;
//! # Ok(()) }
//! ```

pub mod breaker;
pub mod budget;
pub mod dedup;
mod error;
mod fleet;
mod keys;
mod link;

pub use breaker::{SharedBreaker, SharedBreakerBuilder, SharedBreakerStats};
pub use budget::{BudgetError, FleetBudget};
pub use dedup::{FleetDedupHandle, FleetDedupLayer};
pub use error::FleetError;
pub use fleet::{Fleet, FleetBuilder};
