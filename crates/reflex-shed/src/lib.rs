//! `ConcurrencyShedLayer`: a cap on requests in flight that refuses the rest
//! at once.
//!
//! The cheapest protection a service has: when the limit's worth of
//! requests are already running in the inner service (a fixed
//! `hard_limit`, or an [`Adaptive`] one the layer finds), the next one is
//! refused before any
//! memory or work is spent on it, with a [`Rejected`](reflex_core::Rejected)
//! of kind [`Shed`](reflex_core::RejectKind::Shed) that says when to come
//! back ([`DEFAULT_RETRY_AFTER`], one second, unless configured). Callers
//! see the refusal at once and can go elsewhere or come back later, instead of queueing
//! behind a dependency that is already saturated.
//!
//! # Guarantees
//!
//! - **The limit holds.** No admission ever takes the count above the hard
//!   limit in force: the limit and the count are one atomic word, and
//!   admission checks and increments it in one compare-and-swap. A refused
//!   request never makes another one look refused, and an admission ordered
//!   after [`ShedHandle::set_hard_limit`] sees the new limit. (Lowering the
//!   limit cancels nothing: requests already running finish.) Loom models
//!   check all three.
//! - **Refusal is immediate.** The layer never waits for its own reasons:
//!   `poll_ready` is the inner service's readiness, and a request over the
//!   limit gets a future that is ready at once with the rejection.
//! - **Only the limit sheds.** An inner service that is not ready is waited
//!   for as usual. (tower's `LoadShed` sheds whenever the inner service is
//!   not ready; this layer does not.)
//! - **Nothing leaks.** A request's permit is held by its response future and
//!   given back when the inner future completes, when the response future is
//!   dropped, or when the inner service panics, in `call` or in the future.
//! - **Cheap.** On the happy path: a compare-and-swap to admit and an atomic
//!   subtraction to release, plus a reference-count increment and decrement
//!   for the permit the future owns; no lock and no allocation. A refusal
//!   costs one small allocation (the boxed error) and a signal. See
//!   `docs/PERFORMANCE.md`.
//! - **Steerable.** [`ShedHandle::set_hard_limit`] changes the limit for the
//!   next request (an adaptive one's cap), [`ShedHandle::pin_limit`] holds
//!   it; [`ShedHandle::metrics`] reads the live numbers ([`ShedMetrics`])
//!   with a few atomic loads. The layer is
//!   [`Handled`](reflex_core::Handled): its control is the hard limit
//!   ([`Control::Shed`](reflex_core::Control::Shed)), for a witness's
//!   reflexes.
//! - **Adaptive, if asked.** [`Adaptive::gradient`] finds the limit from
//!   the latency of the calls against the dependency's latency without
//!   load (measured by a first probe, then by probes that run when the
//!   windows say it is stale, never under a steady overload);
//!   [`Adaptive::aimd`] from their outcomes, by the stack's classifier. Only
//!   completed calls are samples, in flight is read at their completion,
//!   and the limit is recomputed once per window by the caller that closes
//!   it, with a compare-and-swap: no lock, no task, no allocation.
//! - **Shared fairly, critical first.** [`partition`](ConcurrencyShedBuilder::partition)
//!   and [`share`](ConcurrencyShedBuilder::share) guarantee each partition
//!   its share, lend an idle one's and give it back first;
//!   [`critical`](ConcurrencyShedBuilder::critical) requests keep a reserve
//!   and are shed last.
//! - **Observable.** Sheds, soft-limit excursions (with hysteresis: one
//!   warning per excursion) and limit changes are [`Signal`](reflex_core::Signal)s
//!   to the configured sink and `tracing` events: a shed is `DEBUG`, summed
//!   up at `WARN` once per interval at most; excursions and limit changes
//!   are `WARN`/`INFO`, a few per interval at most (`docs/shed.md`, "Logs").
//!
//! # What it does not do
//!
//! - It does not queue: a request over the limit is refused, not delayed.
//!   Put tower's `ConcurrencyLimitLayer` behind it to queue instead.
//! - A permit covers the response future, not the response body: a streamed
//!   body that outlives its future is no longer counted.
//! - It does not preempt: a critical request, or a partition coming back,
//!   waits for running calls to finish.
//! - An adaptive limit sees only the calls it admits, and the knee of a
//!   dependency is soft: it keeps the limit near the capacity, within a
//!   call or two (see `docs/shed.md`, "Figures").
//! - The limit is per process: replicas do not share it.
//!
//! # Examples
//!
//! ```
//! use reflex_core::{RejectKind, Rejected};
//! use reflex_shed::ConcurrencyShedLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let shed = ConcurrencyShedLayer::builder()
//!     .hard_limit(1)
//!     .component("db")
//!     .build()?;
//! let handle = shed.handle();
//!
//! let (release, wait) = tokio::sync::oneshot::channel::<()>();
//! let mut wait = Some(wait);
//! let mut svc = ServiceBuilder::new().layer(shed).service_fn(move |q: &'static str| {
//!     let wait = wait.take();
//!     async move {
//!         if let Some(wait) = wait {
//!             let _ = wait.await;
//!         }
//!         Ok::<_, std::io::Error>(format!("rows for {q}"))
//!     }
//! });
//!
//! // The first request takes the only permit and waits for `release`...
//! let first = svc.ready().await?.call("a");
//! assert_eq!(handle.metrics().in_flight, 1);
//!
//! // ...so the second one is shed at once.
//! let err = svc.ready().await?.call("b").await.unwrap_err();
//! let rejected = Rejected::find(&*err).unwrap();
//! assert_eq!(rejected.kind(), RejectKind::Shed);
//! assert_eq!(handle.metrics().shed_total, 1);
//!
//! release.send(()).unwrap();
//! assert_eq!(first.await?, "rows for a");
//! assert_eq!(handle.metrics().in_flight, 0);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod adaptive;
mod aimd;
mod builder;
mod classes;
mod config;
mod counter;
mod estimator;
pub mod future;
mod gradient;
mod handle;
mod layer;
mod logs;
mod loom;
mod partition;
mod service;
mod shared;
mod steer;
mod validate;
mod window;

#[cfg(all(test, loom))]
mod tests;

pub use adaptive::{
    Adaptive, Aimd, DEFAULT_CEILING, DEFAULT_FLOOR, DEFAULT_INITIAL, DEFAULT_MIN_SAMPLES,
    DEFAULT_WINDOW, Gradient,
};
pub use builder::{ConcurrencyShedBuilder, DEFAULT_CRITICAL_RESERVE, DEFAULT_RETRY_AFTER};
#[cfg(feature = "http")]
pub use classes::CriticalExtension;
pub use classes::{
    Critical, CriticalBy, CriticalKey, NoCritical, PartitionKey, Partitions, Unpartitioned,
};
pub use handle::{AdaptiveMetrics, LimitSource, PartitionMetrics, ShedHandle, ShedMetrics};
pub use layer::ConcurrencyShedLayer;
pub use service::ConcurrencyShed;
