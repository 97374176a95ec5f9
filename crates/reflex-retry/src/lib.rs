//! `RetryLayer`: retries that heal, never storms.
//!
//! A failed call is tried again after a delay, a bounded number of times,
//! while three things keep retries from making an outage worse:
//!
//! - a **retry budget** shared by every clone of the layer: retries are
//!   limited to a fraction of recent requests plus a small floor per second
//!   ([`RetryBudget`]), so a dependency that fails every call sees at most
//!   `1 + ratio` times its normal load, not `max_attempts` times;
//! - **jittered exponential backoff** with a cap ([`Backoff`], [`Jitter`]),
//!   so clients that failed together do not retry together;
//! - **the server's word**: a `Retry-After` the policy reads (the http
//!   policy does, on 429 and 503) replaces the backoff when it is within the
//!   cap.
//!
//! And an **open breaker below ends retrying at once**: an attempt refused
//! with `CircuitOpen` is the caller's answer, with the breaker's
//! `retry_after`. A request asleep until the breaker probes would hold its
//! place in the layers above (a shed permit) for nothing; waiting for the
//! probe is an opt-in with a cap
//! ([`RetryBuilder::wait_for_open_breaker`]).
//!
//! For `http` (feature `http`), `RetryLayer::builder().http()` builds an
//! `HttpRetryLayer`: a layer for any place in a stack that takes
//! `Request<B>`, records the body as the service inside reads it, and sends
//! it again on a retry (see the `http` module).
//!
//! What is retried is what the [`Classify`](reflex_core::Classify) calls a
//! failure and the [`Policy`] accepts. [`Rejected`](reflex_core::Rejected)
//! errors of other layers are never retried (but `CircuitOpen`, when the
//! layer was asked to wait for it).
//!
//! # Guarantees
//!
//! - **Readiness before every attempt.** A call moves the ready inner
//!   service into its response future, which drives it to readiness again
//!   before each retry: a retry never calls a service cold.
//! - **Nothing runs after a drop.** Dropping the response future, during an
//!   attempt or a backoff, ends the request: no later attempt is made.
//! - **Exactly one outcome.** The caller gets the first result that is not
//!   retried: a success, a failure the policy stops on, or the last failed
//!   attempt's result when attempts, budget or deadline run out (the
//!   original error or response, not a new one), or another layer's
//!   refusal (an open breaker's `CircuitOpen`). A budget refusal is a
//!   [`Signal::RetryBudgetExhausted`](reflex_core::Signal::RetryBudgetExhausted)
//!   and a count on the [`RetryHandle`], never an error of its own: the
//!   caller gets the last attempt's own result.
//! - **No panic from a value.** A setting the layer cannot honour is a
//!   [`ConfigError`](reflex_core::ConfigError) from `build()`; a duration
//!   of more than a century (`Duration::MAX` among them), configured or
//!   received (`Retry-After`, a breaker's `retry_after`), means never: such
//!   a deadline or timeout is none, and such a delay ends retrying.
//! - **Cheap when nothing fails.** No allocation and no boxed future; with
//!   the budget on, one atomic load and one `fetch_add` per request, and a
//!   clock read once in 64 requests; the per-attempt timeout and deadline,
//!   when set, read the clock once per attempt, and a request still running
//!   at its first poll arms its timer with one allocation. Over http, a
//!   request with a body that may be retried allocates the body's record
//!   (two allocations, and the list of its chunks as they are read); an
//!   empty body, or a request that is not retried, allocates nothing. See
//!   `docs/PERFORMANCE.md`.
//! - **Observable.** Every retry is a
//!   [`Signal::RetryAttempt`](reflex_core::Signal::RetryAttempt) (attempt,
//!   delay, why) and a `DEBUG` event; a retry the budget refuses is a
//!   `DEBUG` event too, summed up at `WARN` once per interval at most
//!   (`docs/retry.md`, "Logs"); [`RetryHandle`] reads retries,
//!   recoveries, budget refusals and the budget left.
//!
//! # What it does not do
//!
//! - It does not make a request idempotent: with the default policy every
//!   failure is retried, so use a policy that knows your requests (for http,
//!   `HttpPolicy` retries only idempotent methods).
//! - Requests are copied for retries by the policy; a request that cannot
//!   be copied is sent once.
//! - A panic in the inner service is not caught: it unwinds through the
//!   response future, which is then dropped, and nothing is retried.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use reflex_retry::RetryLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let retry = RetryLayer::builder()
//!     .max_attempts(3)
//!     .backoff(Duration::from_millis(10), 2.0)
//!     .build()?;
//! let handle = retry.handle();
//!
//! // Fails once, then succeeds.
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let mut svc = ServiceBuilder::new().layer(retry).service(service_fn(move |n: u32| {
//!     let call = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     async move {
//!         if call == 0 { Err(std::io::Error::other("flaky")) } else { Ok(n * 2) }
//!     }
//! }));
//! assert_eq!(svc.ready().await?.call(21).await?, 42);
//! assert_eq!(handle.metrics().retries, 1);
//! assert_eq!(handle.metrics().recovered, 1);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod attempts;
mod backoff;
mod budget;
mod builder;
pub mod error;
pub mod future;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod layer;
mod logs;
mod policy;
mod retry_after;
mod service;
mod settings;
mod shared;
mod stats;
mod timer;

pub use backoff::{Backoff, Jitter};
pub use budget::RetryBudget;
pub use builder::{CopiedRequests, RetryBuilder};
#[cfg(feature = "http")]
pub use error::NotReplayable;
pub use error::TimedOut;
pub use handle::{RetryHandle, RetryMetrics};
pub use layer::RetryLayer;
pub use policy::{Decision, DefaultPolicy, Policy};
pub use retry_after::parse_retry_after;
pub use service::Retry;

/// The layer's name in its [`ConfigError`](reflex_core::ConfigError)s.
const LAYER: &str = "retry";
