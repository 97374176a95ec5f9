//! `CircuitBreakLayer`: stop calling a dependency that is failing, and find
//! out by probing when it has recovered.
//!
//! A breaker counts the outcome of every call through it. When a trip
//! condition holds it **opens**: calls are refused at once with a
//! [`Rejected`](reflex_core::Rejected) of kind
//! [`CircuitOpen`](reflex_core::RejectKind::CircuitOpen), whose
//! `retry_after` is the time left until it probes, and the inner service is
//! not called. After the open duration it goes **half-open**: a bounded
//! number of probe calls go through; enough successes **close** it, a
//! failure re-opens it (for longer, with a backoff).
//!
//! # Trip rules
//!
//! Any one of the rules chosen trips the breaker:
//! - `n` failures in a row ([`consecutive_failures`](CircuitBreakBuilder::consecutive_failures));
//! - a failure rate over a sliding window, count-based (the last `n` calls,
//!   exactly) or time-based (the last `t`, bucketed), once a minimum number
//!   of calls is in it ([`failure_rate`](CircuitBreakBuilder::failure_rate));
//! - a slow-call rate, a call at least a set duration long being slow,
//!   successful or not ([`slow_calls`](CircuitBreakBuilder::slow_calls)).
//!
//! With no rule chosen, a failure rate of 50% over the last 100 calls
//! trips it. Choosing a rule replaces that default, and rules chosen
//! together all apply (see [Trip rules](CircuitBreakBuilder#trip-rules)).
//!
//! What counts as a failure is the [`Classify`](reflex_core::Classify) the
//! builder was given; [`Ignored`](reflex_core::Outcome::Ignored) outcomes and
//! [`Rejected`](reflex_core::Rejected) errors from layers inside the breaker
//! count for nothing.
//!
//! # Echoes
//!
//! Under a witness layer (which gives each request a
//! [`Frame`](reflex_core::origin::Frame)), a failure of a call during which
//! one of the request's calls below (to another component) failed, was
//! refused or was dropped is an *echo* of that failure, not one of the
//! component's own: its own part of the call worked, and it counts as a
//! success (a call in the failure rate's window, not a failure). So
//! a dependency's outage opens the dependency's breaker, not those of all
//! its callers, which would refuse even the requests that never needed it.
//! [`count_echoes`](CircuitBreakBuilder::count_echoes) counts them again,
//! for a breaker that is the only one guarding its dependency. Without a
//! witness layer nothing is an echo.
//!
//! # Steering from outside
//!
//! [`BreakerHandle`] (a [`BreakerControl`](reflex_core::BreakerControl))
//! lets a witness's reflex or an operator act on a failing dependency's
//! edge:
//! - [`trip`](BreakerHandle::trip), for a blackout: opens a Closed breaker
//!   as if its own rule had tripped; its half-open probes decide, as after
//!   any trip, when it closes again, with no one to reset it.
//! - [`throttle`](BreakerHandle::throttle), for a brownout: client-side
//!   adaptive throttling (Google's SRE book). A Closed breaker refuses each
//!   call with probability `max(0, (requests − k × accepts) / (requests + 1))`
//!   over the admitted calls of the last two seconds (the book also counts
//!   refused ones; against failures that do not depend on the load that
//!   has no steady state), so about `1 − k × a` with a share `a`
//!   succeeding, with a
//!   [`Rejected`](reflex_core::Rejected) of kind
//!   [`Throttled`](reflex_core::RejectKind::Throttled), so the calls that
//!   would succeed still mostly do while the dependency gets less load.
//!   Throttled calls are no failures of the breaker's own rules.
//! - [`force_open`](BreakerHandle::force_open), [`reset`](BreakerHandle::reset)
//!   and the other manual states, for an operator who knows better.
//!
//! # Guarantees
//!
//! - **No stuck half-open.** A probe's slot is held by its response future
//!   and given back when it completes, when it is dropped, and when the
//!   inner service panics. If every probe is out and none reports within
//!   [`half_open_max_wait`](CircuitBreakBuilder::half_open_max_wait), the
//!   breaker re-opens instead of waiting on them forever.
//! - **Exactly `k` probes.** The half-open probe count lives in the state
//!   word and is taken by compare-and-swap: however many calls race, at
//!   most `k` probes are out at once (a loom model checks it).
//! - **A dropped call counts for nothing**: neither success nor failure.
//! - **Never waits.** `poll_ready` is the inner service's readiness; refusal
//!   is a future ready at once.
//! - **Cheap when healthy.** Closed, with a count window: two atomic loads
//!   to admit (the state and the throttle's switch), one `fetch_add` to
//!   record a success, no lock, no allocation, no clock read; and, to tell
//!   echoes apart, a read of the request's frame (a thread-local) when the
//!   call starts. A time window costs a clock read a call; a slow-call rate
//!   two; throttling, while on, one or two. Transitions take a small lock.
//!   See `docs/PERFORMANCE.md`.
//! - **Observable.** Every transition is a
//!   [`Signal::BreakerTransition`](reflex_core::Signal::BreakerTransition)
//!   (from, to, why) and a `tracing` event (`WARN` when it opens, `INFO`
//!   otherwise, a few per interval at most; a refused request is `DEBUG`,
//!   summed up at `INFO` once per interval: `docs/breaker.md`, "Logs");
//!   [`BreakerHandle`] reads the state and counts and sets ForcedOpen,
//!   Disabled, MetricsOnly or Closed by hand.
//!   The breakers of a [`KeyedCircuitBreakLayer`] report
//!   [`Signal::KeyedBreakerTransition`](reflex_core::Signal::KeyedBreakerTransition)
//!   instead, under the layer's component: keys are never components.
//! - **Any setting is refused or honoured.** `build()` refuses an invalid
//!   setting with a [`ConfigError`](reflex_core::ConfigError); every other
//!   one, up to `Duration::MAX` and `u32::MAX`, works as documented: clock
//!   arithmetic saturates, no configured value can panic a request.
//! - **Pluggable state.** The state lives behind [`Backend`];
//!   [`MemoryBackend`] is the default.
//!
//! # What it does not do
//!
//! - Calls that outlive a transition (admitted Closed, finished after the
//!   breaker opened) are not counted in the new state.
//! - A time window's bucket boundaries are approximate to one bucket for
//!   calls that read the clock just as a bucket turns.
//! - A panic in the inner service counts as a dropped call, not a failure.
//! - An echo is told by timing, not by cause: a request whose call below
//!   failed and which then failed for a reason of its own is taken for an
//!   echo. A call handed to another task (`tokio::spawn`) is not linked to
//!   its request and is never an echo. A slow call is slow whatever its
//!   calls below did.
//! - [`MemoryBackend`]'s throttle counts what this process sees
//!   (client-side, as the SRE book means it): replicas each throttle on
//!   their own calls.
//!
//! # Examples
//!
//! ```
//! use reflex_breaker::CircuitBreakLayer;
//! use reflex_core::{BreakerState, RejectKind, Rejected};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let breaker = CircuitBreakLayer::builder()
//!     .component("db")
//!     .consecutive_failures(2)
//!     .build()?;
//! let handle = breaker.handle();
//! let mut svc = ServiceBuilder::new()
//!     .layer(breaker)
//!     .service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("db down")) });
//!
//! for _ in 0..2 {
//!     let err = svc.ready().await?.call(()).await.unwrap_err();
//!     assert!(Rejected::find(&*err).is_none(), "the inner error passes through");
//! }
//! assert_eq!(handle.state(), BreakerState::Open);
//!
//! let err = svc.ready().await?.call(()).await.unwrap_err();
//! let rejected = Rejected::find(&*err).unwrap();
//! assert_eq!(rejected.kind(), RejectKind::CircuitOpen);
//! assert!(rejected.retry_after().is_some());
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod admit;
mod backend;
mod build;
mod builder;
mod config;
pub mod error;
pub mod future;
mod guard;
mod handle;
mod keyed;
mod layer;
mod logs;
mod loom;
mod memory;
mod metrics;
mod service;
mod shared;
mod throttle;
mod validate;
mod window;

#[cfg(all(test, loom))]
mod tests;

pub use backend::{Backend, Refusal, Ticket};
pub use builder::{CircuitBreakBuilder, Unkeyed};
pub use config::{BreakerConfig, MAX_PROBES, MAX_WINDOW_BUCKETS, MAX_WINDOW_CALLS, Window};
pub use error::ManualStateError;
pub use handle::BreakerHandle;
pub use keyed::{
    KeyedBreakerHandle, KeyedBreakerMetrics, KeyedCircuitBreak, KeyedCircuitBreakLayer,
};
pub use layer::CircuitBreakLayer;
pub use memory::MemoryBackend;
pub use metrics::BreakerMetrics;
pub use service::CircuitBreak;
