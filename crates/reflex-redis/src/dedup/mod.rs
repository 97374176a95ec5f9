//! Dedup leases: the first replica to miss a key calls, the others wait
//! for its result.
//!
//! [`FleetDedupLayer`] goes below the in-process dedup layer
//! (`reflex_dedup::DedupLayer`), so that one request per key per replica
//! reaches it. For a request with a key:
//!
//! 1. it tries to take the key's **lease** in Redis (`SET NX PX`, within
//!    the fleet's `op_timeout`);
//! 2. the **leader** (who took it) calls the inner service, renewing its
//!    lease every third of [`lease_ttl`](FleetDedupBuilder::lease_ttl)
//!    while the call runs; then, in the background (the response does not
//!    wait), one script stores the result (its [`Codec`]'s bytes, with a
//!    TTL), lets the lease go and tells the fleet over pub/sub;
//! 3. a **follower** (the lease was held) waits for that message (or,
//!    when none comes, looks again every quarter of the lease TTL, at most
//!    half the result TTL, within 5 ms and 1 s) and decodes the stored
//!    result;
//!    when the leader ended without one (an error, a cancelled or panicked
//!    call, a dead process whose lease expired), one follower takes the
//!    lease over and calls; the others wait on.
//!
//! # What is guaranteed
//!
//! - **Exactly one outcome per request**, and a request never waits on
//!   Redis longer than the fleet's `op_timeout` per call: with Redis down,
//!   slow or in error, it calls the inner service itself (counted in
//!   [`local_fallbacks`](FleetDedupMetrics::local_fallbacks)). A follower
//!   waits for the *leader* at most [`max_wait`](FleetDedupBuilder::max_wait)
//!   (and a look at Redis in flight then, within `op_timeout`), then calls
//!   itself. A follower whose link goes down stops waiting at once.
//! - **A lease is let go on every way out.** A result, an error, a
//!   response the codec declines, a dropped (cancelled) request and a
//!   panicking inner service all release it at once (a task spawned on
//!   the fleet's runtime), so a waiter takes over without waiting for the
//!   TTL. Only a dead process, a partition or Redis failing at that
//!   moment leaves a lease to expire.
//! - **Bounded in Redis.** Every lease and result key expires
//!   ([`lease_ttl`](FleetDedupBuilder::lease_ttl),
//!   [`result_ttl`](FleetDedupBuilder::result_ttl)); a result is at most
//!   [`max_result_bytes`](FleetDedupBuilder::max_result_bytes) (larger
//!   ones are not stored: their waiters call on their own); a key longer
//!   than 512 bytes is named by a 128-bit hash of it. All of a
//!   component's keys share one hash tag (`{namespace:dedup:component}`),
//!   so each script touches one slot of a Redis Cluster.
//! - **A result reaches only requests of the same key.** A response one
//!   client got reaches another replica's client only when the key
//!   function gave both requests the same key, and only as bytes your
//!   codec made from it: sharing is opt-in, as with the in-process dedup.
//!   The stored result carries its whole key, checked on reading, so even
//!   two long keys whose hashes collide never share. Make the key hold
//!   everything that makes answers differ (tenant, user, language), and
//!   let the codec decline (`None`) responses that must stay with their
//!   client.
//! - **Only answers are shared, never errors.** An inner error reaches
//!   its own caller; the followers take over one at a time (each new
//!   leader calls once), so a failing dependency sees one call at a time
//!   per key rather than a stampede, until `max_wait`.
//!
//! - **Observable.** [`FleetDedupHandle`] counts leader calls, follower
//!   hits, takeovers, local fallbacks, waits timed out and unshared
//!   answers on this replica; a follower hit emits
//!   [`Signal::Coalesced`](reflex_core::Signal::Coalesced) (with
//!   `waiters: 1`: the other waiters are on other replicas, uncounted),
//!   and the layer's component hears the fleet's
//!   [`Signal::FleetLink`](reflex_core::Signal::FleetLink). Per-request
//!   `tracing` events are `DEBUG`, never with the key.
//!
//! # What is not
//!
//! - **At most one call per key is not guaranteed**, only what the leases
//!   make likely. Two calls happen when a leader's call outlasts its lease
//!   (renewals failing: Redis slow or down), when Redis is down (each
//!   request calls), after a Redis failover that lost the lease (a replica
//!   promoted before it received the `SET`), and when a follower waits
//!   past `max_wait`.
//! - **A follower holds its inner service's readiness** while it waits
//!   (as `poll_ready` gave it): below a concurrency limit, waiting
//!   followers hold permits.
//! - Requests of one replica with the same key are coalesced by Redis too
//!   (each waits on the channel), but at a round trip each: put the
//!   in-process dedup above this layer.
//! - Every keyed request costs a Redis round trip to take the lease; a
//!   leader one more per renewal (every third of the lease TTL) while it
//!   calls and one in the background to let go; a follower one more each
//!   time it looks again, and a subscription to the fleet's channel while
//!   it waits (every message of the fleet wakes it, to read the scope and
//!   key). Each keyed request allocates the key's two names in Redis, the
//!   lease owner's token and its boxed future; a leader also its stored
//!   result and its message. A request without a key costs the key
//!   function and a branch.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use reflex_redis::Fleet;
//! use reflex_redis::dedup::{FleetDedupLayer, RawCodec};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let fleet = Fleet::builder("redis://127.0.0.1:6379").namespace("shop").build()?;
//! let dedup = FleetDedupLayer::builder(&fleet)
//!     .component("catalog")
//!     // Public pages only: never a user's own.
//!     .key(|path: &String| path.starts_with("/items/").then(|| path.clone()))
//!     .codec(RawCodec)
//!     .lease_ttl(Duration::from_secs(1))
//!     .max_wait(Duration::from_secs(3))
//!     .build()?;
//! let catalog = dedup.layer(service_fn(|path: String| async move {
//!     Ok::<_, std::io::Error>(format!("page {path}"))
//! }));
//! let page = catalog.oneshot("/items/42".to_owned()).await?;
//! assert_eq!(page, "page /items/42");
//! # Ok(()) }
//! ```

mod builder;
mod codec;
mod flow;
mod handle;
mod layer;
mod service;
mod settings;
mod store;

pub use builder::FleetDedupBuilder;
pub use codec::{Codec, FnCodec, NoCodec, RawCodec, codec_fn};
pub use handle::{FleetDedupHandle, FleetDedupMetrics};
pub use layer::FleetDedupLayer;
pub use service::{FleetDedup, ResponseFuture};
