//! The witness's numbers for Prometheus: a
//! [`Collector`](prometheus_client::collector::Collector) on
//! `prometheus-client` ([`WitnessCollector`]) and a tower service that
//! answers a scrape ([`MetricsService`]).
//!
//! Every value is read from [`Witness::totals`](reflex_witness::Witness::totals)
//! at scrape time: counters since the witness started, gauges as of its
//! last cycle. Nothing is recorded on the request path.
//!
//! # The metrics
//!
//! Per component (label `component`): they are per dependency, not per
//! http route, so the names are `reflex_*` rather than OpenTelemetry's
//! `http_server_*`, whose labels (route, method, status) a component does
//! not have.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `reflex_request_duration_seconds` | histogram | `component` | durations of the requests that succeeded or failed, in the buckets of [`DURATION_BOUNDS`](reflex_witness::DURATION_BOUNDS) (OpenTelemetry's advice for http durations); the sum is within 1/32 |
//! | `reflex_requests_total` | counter | `component`, `outcome` | requests that ended: `succeeded`, `failed`, `ignored` (by the classifier), `cancelled` (dropped), `rejected` (by a layer of the stack); their sum is every request that ended |
//! | `reflex_own_failures_total` | counter | `component` | failures of the component's own (none of the request's calls below failed) |
//! | `reflex_rejections_total` | counter | `component`, `kind` | refusals by kind (`shed`, `circuit_open`, `throttled`, `slot_busy`, …, `other`) |
//! | `reflex_sheds_total` | counter | `component` | requests the shed layer refused (its signals) |
//! | `reflex_retries_total` | counter | `component` | retries made |
//! | `reflex_retry_budget_exhausted_total` | counter | `component` | retries the retry budget refused |
//! | `reflex_coalesced_total` | counter | `component` | requests answered by an identical request's call or the dedup cache |
//! | `reflex_in_flight` | gauge | `component` | requests in flight |
//! | `reflex_breaker_state` | gauge | `component`, `state` | 1 for the breaker's state, 0 for the five others (no series without a breaker) |
//! | `reflex_fleet_link_downs_total` | counter | `component` | times the link to the fleet's shared state (a `reflex-redis` backend) went down |
//! | `reflex_fleet_link_up` | gauge | `component` | 1 while sharing state through redis, 0 while deciding alone (only for components with a fleet backend) |
//! | `reflex_shed_limit` | gauge | `component` | the shed layer's hard limit (when the witness has its control, as the preset gives it) |
//! | `reflex_slot_queue_depth` | gauge | `component` | requests waiting in the slot queues |
//! | `reflex_reports_total` | counter | `kind` | witness reports by kind (`own_error_rate`, `own_latency_p50`, `own_latency_p99`, `new_call_pattern`, `slow_call_pattern`, `custom`) |
//!
//! Every label value of a counter is written from the start, zeros
//! included, so `rate()` sees a series' first increase.
//!
//! # Examples
//!
//! ```
//! use axum::Router;
//! use reflex_telemetry::prometheus::MetricsService;
//! use reflex_witness::Witness;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let witness = Witness::builder().start()?;
//! let app: Router = Router::new().route_service("/metrics", MetricsService::new(&witness));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

mod collector;
mod service;

pub use collector::WitnessCollector;
pub use service::{CONTENT_TYPE, MetricsService};
