//! The reflex witness in the tools people already run.
//!
//! What a [`Witness`](reflex_witness::Witness) knows, read off its
//! per-cycle state (never on the request path), in three forms, each
//! behind a feature so that the default build compiles none of them:
//!
//! - `prometheus`: a tower service that answers a scrape (`/metrics`) in
//!   the text exposition format, on `prometheus-client`;
//! - `opentelemetry`: the same numbers as OpenTelemetry instruments on the
//!   `opentelemetry` API; the user brings the SDK and the exporter;
//! - `page`: a tower service with the latest snapshot as JSON, a stream of
//!   snapshots and reports (server-sent events), and one live page of the
//!   stack, its assets embedded (no build step, no CDN).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "page")]
#[cfg_attr(docsrs, doc(cfg(feature = "page")))]
pub mod page;

#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod prometheus;

#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod otel;

#[cfg(any(feature = "prometheus", feature = "opentelemetry"))]
mod outcomes;
