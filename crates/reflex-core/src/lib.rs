//! The contracts every reflex layer shares.
//!
//! reflex is a set of tower middleware that keep a service standing when what
//! it depends on misbehaves. Each layer lives in its own crate and depends on
//! this one alone, so each works by itself; what they share is here:
//!
//! - [`Component`]: the name of the dependency a stack guards, carried by
//!   every layer of that stack.
//! - [`Outcome`] and [`Classify`]: how a finished call counts, said once and
//!   read by the breaker, the retry layer and the witness alike.
//!   [`ServerErrorsAsFailures`] classifies `http` responses and
//!   [`GrpcErrorsAsFailures`] gRPC ones (feature `http`).
//! - [`Rejected`] and [`RejectKind`]: the one error for "the stack did not run
//!   your request". Inner errors pass through untouched.
//! - [`ConfigError`]: what a builder returns instead of panicking.
//! - [`Signal`], [`SignalSink`] and [`Sink`]: the structural events a layer
//!   reports, at the cost of a branch when nobody listens.
//! - [`BreakerControl`] and [`ShedControl`]: how a witness's reflexes steer
//!   the layers without depending on their crates.
//! - [`LayerBuilder`], [`Classified`], [`Handled`] and [`LayerHandle`]: the
//!   one way in, shared by every layer (module [`layer`]); [`KeyFn`]: the one
//!   way a keyed layer learns a request's key (module [`key`]).
//! - [`shard::Shards`]: per-key state over a few locks.
//! - [`log_limit::LogLimit`]: how often a layer writes a log line of one
//!   sort (a summary of its refusals, its state changes), lock-free.
//!
//! This crate has no tower layer of its own.
//!
//! # Examples
//!
//! Telling a rejection from an inner error:
//!
//! ```
//! use reflex_core::{Component, RejectKind, Rejected};
//!
//! fn describe(err: &(dyn std::error::Error + 'static)) -> String {
//!     match Rejected::find(err) {
//!         Some(r) if r.kind() == RejectKind::Shed => "busy, try later".to_owned(),
//!         Some(r) => format!("refused: {}", r.kind().as_str()),
//!         None => "the service failed".to_owned(),
//!     }
//! }
//!
//! let shed = Rejected::new(RejectKind::Shed, Component::new("db"));
//! assert_eq!(describe(&shed), "busy, try later");
//! assert_eq!(describe(&std::io::Error::other("boom")), "the service failed");
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod classify;
mod component;
mod config;
mod control;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod key;
pub mod layer;
pub mod log_limit;
pub mod origin;
mod rejected;
pub mod shard;
pub mod signal;

pub use classify::{Classify, DefaultClassifier, Outcome};
pub use component::Component;
pub use config::{ConfigError, ConfigErrorKind};
pub use control::{BreakerControl, ShedControl};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http::{GrpcCode, GrpcErrorsAsFailures, ServerErrorsAsFailures};
pub use key::{KeyFn, NoKey};
pub use layer::{Classified, Control, Handled, LayerBuilder, LayerHandle};
pub use rejected::{RejectKind, Rejected, find_source, sources};
pub use signal::{BreakerState, RetryReason, Signal, SignalSink, Sink, TransitionReason};

/// The error type of every reflex service, as in tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
