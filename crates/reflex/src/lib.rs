//! reflex: tower middleware that keeps a service standing when what it
//! depends on misbehaves.
//!
//! Six primitives, each its own crate, re-exported here behind a cargo
//! feature (all on by default):
//!
//! | module | layer | what it does |
//! |---|---|---|
//! | [`shed`] | `ConcurrencyShedLayer` | caps requests in flight, refuses the rest at once |
//! | [`dedup`] | `DedupLayer` | identical requests in flight share one inner call |
//! | [`slot`] | `SlotAdmissionLayer` | one running request per named slot: queue, replace or drop |
//! | [`retry`] | `RetryLayer` | budgeted, jittered retries that honour `Retry-After` and open breakers |
//! | [`breaker`] | `CircuitBreakLayer` | stops calling a failing dependency, probes its recovery |
//! | [`witness`] | `ObserveWitnessLayer` | records what the stack saw; detects cascades and regressions; reflexes |
//!
//! [`core`] holds what they share: components, classifiers, the one
//! [`Rejected`](core::Rejected) error, signals. [`http`] maps errors to
//! responses (feature `http`), and `http::grpc` to tonic statuses (feature
//! `tonic`, off by default). [`telemetry`] puts the witness in the tools
//! people already run: Prometheus, OpenTelemetry and a live page (features
//! `prometheus`, `opentelemetry`, `page`, off by default). [`redis`] makes
//! a fleet of replicas act as one through Redis (feature `redis`, off by
//! default).
//!
//! [`Preset`] composes them for one component in the documented order
//! (witness, shed, dedup, slot, retry, breaker, timeout), every layer
//! reporting to one witness. It is tested over real sockets behind an axum
//! router, a hyper 1 server, a tonic server and around a hyper-util client;
//! `examples/` in the repository runs each.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use reflex::{breaker::CircuitBreakLayer, retry::RetryLayer, shed::ConcurrencyShedLayer};
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), reflex::core::ConfigError> {
//! let stack = ServiceBuilder::new()
//!     .layer(ConcurrencyShedLayer::builder().component("db").hard_limit(64).build()?)
//!     .layer(RetryLayer::builder().component("db").max_attempts(3).build()?)
//!     .layer(CircuitBreakLayer::builder().component("db").build()?)
//!     .timeout(Duration::from_secs(2));
//! # let _ = stack;
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub use reflex_core as core;

#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
pub use reflex_breaker as breaker;
#[cfg(feature = "dedup")]
#[cfg_attr(docsrs, doc(cfg(feature = "dedup")))]
pub use reflex_dedup as dedup;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use reflex_redis as redis;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub use reflex_retry as retry;
#[cfg(feature = "shed")]
#[cfg_attr(docsrs, doc(cfg(feature = "shed")))]
pub use reflex_shed as shed;
#[cfg(feature = "slot")]
#[cfg_attr(docsrs, doc(cfg(feature = "slot")))]
pub use reflex_slot as slot;
#[cfg(any(feature = "prometheus", feature = "opentelemetry", feature = "page"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "prometheus", feature = "opentelemetry", feature = "page")))
)]
pub use reflex_telemetry as telemetry;
#[cfg(feature = "witness")]
#[cfg_attr(docsrs, doc(cfg(feature = "witness")))]
pub use reflex_witness as witness;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;

#[cfg(all(feature = "shed", feature = "breaker", feature = "witness"))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(feature = "shed", feature = "breaker", feature = "witness")))
)]
pub mod preset;

#[cfg(all(feature = "shed", feature = "breaker", feature = "witness"))]
pub use preset::Preset;

mod toggle;
pub use toggle::{Toggle, ToggleFuture, ToggleService};
