//! `ObserveWitnessLayer` and the [`Witness`]: the stack explains what it
//! saw.
//!
//! A [`Witness`] (one per process, shared by every stack) follows
//! components; [`ObserveWitnessLayer`] records each request of a
//! component's stack (start, end, latency, outcome, rejections by kind) and
//! the witness hears the other layers' signals (it is a
//! [`SignalSink`](reflex_core::SignalSink)). Its runtime folds it all into
//! a [`Snapshot`] per interval and judges it ([`Judgement`]): each
//! component's own error rate and self time against a baseline learned on
//! healthy cycles, so that a failure or a delay is placed where it starts,
//! not where it is seen. An anomaly opens an [`Episode`] with one
//! [`Report`], an incident summary: the [`Root`]s, since when, how bad
//! against the baseline, the [`Affected`] components with the calls
//! through which they depend on a root, the causal chain of the episode,
//! and what was done. [`Detector`]s of your own run too. It keeps a bounded
//! history of the non-empty snapshots and the reports, and broadcasts each
//! non-empty snapshot.
//!
//! [`Reflex`]es close the loop, off by default: given the layers'
//! controls ([`Witness::control`]: a breaker's or a shed layer's
//! [`Control`](reflex_core::Control), traits of reflex-core, so this crate
//! depends on no other layer), they act on episodes ([`EdgeReflex`]: on
//! the root's own breaker only, never on an affected component or an
//! entry point; undone when the episode closes), and their [`Measure`]s
//! are written into the reports and episodes.
//!
//! With [`call_patterns`](WitnessBuilder::call_patterns), it learns the
//! chains of components requests go through (api calls auth calls db,
//! linked by each request's `reflex_core::origin` frame) and their usual latency, and reports a
//! chain far off it, or a new chain once learning has settled (a chain
//! cut short by a failure is neither).
//!
//! For metrics exports, [`Witness::totals`] adds every cycle up since the
//! witness started ([`Totals`]: counters by outcome and kind, a
//! [`DurationHistogram`] with fixed bounds in seconds, the last cycle's
//! gauges, reports by kind), and [`Witness::on_cycle`] runs a hook of
//! yours after each cycle. Each report is also one WARN `tracing` event,
//! its roots, affected components and actions as fields.
//!
//! # Guarantees
//!
//! - **Recording is lock-free and allocation-free.** A request costs a few
//!   `fetch_add`s on its component's counters and two reads of the
//!   witness's [`Clock`] (for its latency); a signal, a lock-free lookup of its component and an atomic.
//!   The analysis runs on the runtime's cycle, never in a request.
//! - **Nothing is lost or counted twice.** Every request that starts ends
//!   exactly once in the counters: succeeded, failed, ignored (by the
//!   classifier), rejected (a `Rejected` from a layer below, by kind) or
//!   cancelled (dropped, or its inner service panicked). A cycle takes
//!   counters with `swap`, so a request ending during a cycle lands in that
//!   one or the next.
//! - **Bounded.** Components are bounded at build time
//!   ([`max_components`](WitnessBuilder::max_components)); the history
//!   keeps at most its limit ([`MAX_HISTORY`] at most); latency histograms
//!   are fixed arrays. Keys of a keyed breaker are never components: their
//!   `KeyedBreakerTransition`s count in the component's
//!   `breaker_keys_opened`, and leave its `breaker` state alone.
//! - **Levels from signals do not drift.** The slot queue depth adds each
//!   `SlotQueued` and subtracts each of the three signals a waiter leaves
//!   by (`SlotStarted { waited: true }`, `SlotReplaced { was_running:
//!   false }`, `SlotAbandoned`): the requests waiting in all the
//!   component's slots, read as zero while a leave has overtaken its join.
//! - **No setting panics it.** `build()` refuses what it cannot honour
//!   (an interval below 1 ms, a zero or oversized bound, a factor that is
//!   not a finite number above 1) with a typed `ConfigError`; the longest
//!   interval waits as long as tokio's timer can (about 30 years); counts
//!   saturate.
//! - **A failing detector does not stop it.** An error or a panic of a
//!   detector becomes [`Witness::last_error`]; the other detectors and the
//!   next cycles run.
//! - **Stops with its handles.** The runtime's task holds the witness
//!   weakly and is aborted when the last handle is dropped. A layer whose
//!   handle the witness steers reports through [`Witness::sink`], which
//!   does not keep it alive (the preset does so): a `Witness` clone as
//!   that layer's sink would close a cycle.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use reflex_witness::Witness;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let witness = Witness::builder().interval(Duration::from_secs(1)).start()?;
//! let mut snapshots = witness.subscribe();
//! let db = witness.layer("db").build()?.layer(service_fn(|q: &'static str| async move {
//!     if q == "bad" { Err(std::io::Error::other("syntax")) } else { Ok(q.len()) }
//! }));
//! db.clone().oneshot("select 1").await?;
//! db.oneshot("bad").await.unwrap_err();
//!
//! let snapshot = snapshots.recv().await?;
//! let state = snapshot.component("db").unwrap();
//! assert_eq!((state.succeeded, state.failed), (1, 1));
//! assert_eq!(state.error_rate, 0.5);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod analyse;
mod baseline;
mod builder;
mod chain;
mod clock;
mod controls;
mod detector;
mod durations;
mod edge_reflex;
mod edges;
mod episode;
mod error;
mod events;
mod fold;
mod future;
mod histogram;
mod hooks;
mod judge;
mod judgement;
mod layer;
mod limits;
mod measure;
mod patterns;
mod record;
mod reflex;
mod registry;
mod report;
mod runtime;
mod service;
mod sink;
mod snapshot;
mod state;
mod stats;
mod totals;
mod trace;
mod witness;

pub use builder::WitnessBuilder;
pub use clock::Clock;
pub use controls::Controls;
pub use detector::{Detector, Finding, Observation};
pub use durations::{DURATION_BOUNDS, DurationHistogram};
pub use edge_reflex::{DEFAULT_K, EdgeReflex, EdgeReflexBuilder};
pub use episode::Episode;
pub use error::StartError;
pub use future::ResponseFuture;
pub use hooks::{Cycle, CycleHook};
pub use judgement::Judgement;
pub use layer::{ObserveWitnessBuilder, ObserveWitnessLayer};
pub use limits::{MAX_COMPONENTS, MAX_HISTORY};
pub use measure::{Measure, MeasureKind, Reason, Until};
pub use reflex::{Action, Reflex, Situation};
pub use report::{Affected, ChainLink, DetectionKind, Evidence, LinkKind, Report, Root};
pub use service::ObserveWitness;
pub use sink::WitnessSink;
pub use snapshot::{CallEdge, Health, Snapshot};
pub use state::ComponentState;
pub use totals::{ComponentTotals, KindCount, Totals};
pub use witness::Witness;
