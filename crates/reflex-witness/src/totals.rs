//! [`Totals`]: what every component counted since the witness started,
//! added up once per cycle, for the exports that want counters
//! (Prometheus, OpenTelemetry) rather than one cycle's snapshot.

use reflex_core::BreakerState;

use crate::durations::DurationHistogram;
use crate::events::REJECT_KINDS;
use crate::report::KIND_NAMES;
use crate::snapshot::Snapshot;
use crate::state::ComponentState;

/// A count under a kind's name (a rejection kind, a report kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KindCount {
    /// The kind's stable name (`RejectKind::as_str`,
    /// [`DetectionKind::as_str`](crate::DetectionKind::as_str), or `other`
    /// for a rejection kind this witness does not know).
    pub kind: &'static str,
    /// How many since the witness started.
    pub count: u64,
}

/// What the witness counted since it started, every cycle added up
/// ([`Witness::totals`](crate::Witness::totals)): per component, requests
/// by outcome, rejections by kind, sheds, retries, coalesced requests and
/// a histogram of durations; the gauges of the last cycle; and the reports
/// by kind.
///
/// Added up by the cycle from the counters it takes anyway: nothing is
/// counted on the request path for them. A request ending during a cycle
/// lands in that one or the next, as in the snapshots. Counts saturate.
///
/// # Examples
///
/// ```
/// use reflex_witness::Witness;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let witness = Witness::builder().build()?;
/// let db = witness.layer("db").build()?.layer(service_fn(|n: u32| async move {
///     if n == 0 { Err(std::io::Error::other("zero")) } else { Ok(n) }
/// }));
/// for n in [1, 2, 0] {
///     let _ = db.clone().oneshot(n).await;
///     witness.cycle_now();
/// }
/// let totals = witness.totals();
/// let db = totals.component("db").unwrap();
/// assert_eq!((db.succeeded, db.failed), (2, 1));
/// assert_eq!(db.duration.count(), 3);
/// assert_eq!(totals.cycles, 3);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Totals {
    /// Cycles added up so far: grows by one with each cycle.
    pub cycles: u64,
    /// Every component the witness follows, in the order it met them.
    pub components: Vec<ComponentTotals>,
    /// Reports written, by [`DetectionKind`](crate::DetectionKind) (every
    /// kind, zero included; all detectors of your own under `custom`).
    pub reports: Vec<KindCount>,
}

/// One component since the witness started: counters added up over the
/// cycles, and the gauges of the last cycle.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ComponentTotals {
    /// The component's name.
    pub component: String,
    /// Requests that ended in a success.
    pub succeeded: u64,
    /// Requests that ended in a failure, own or echoed.
    pub failed: u64,
    /// Of those, the component's own failures (none of the request's calls
    /// below failed).
    pub own_failed: u64,
    /// Requests whose outcome counts for nothing (the classifier said so).
    pub ignored: u64,
    /// Requests dropped before their end (or whose inner service
    /// panicked).
    pub cancelled: u64,
    /// Requests refused by a layer of the stack, by kind: every kind the
    /// witness knows, zero included, then `other`.
    pub rejected: Vec<KindCount>,
    /// Requests shed (the shed layer's signals).
    pub shed: u64,
    /// Retries made (the retry layer's signals).
    pub retries: u64,
    /// Retries the retry budget refused.
    pub retry_budget_exhausted: u64,
    /// Requests answered by another's call or the dedup cache.
    pub coalesced: u64,
    /// Durations of the requests that succeeded or failed, in seconds.
    pub duration: DurationHistogram,
    /// Requests in flight at the last cycle.
    pub in_flight: u64,
    /// The breaker's state at the last cycle, if the witness knows one.
    pub breaker: Option<BreakerState>,
    /// The shed layer's hard limit at the last cycle, if the witness was
    /// given its control.
    pub shed_limit: Option<u64>,
    /// Requests waiting in the component's slot queues at the last cycle.
    pub slot_queue_depth: u64,
    /// The link to the fleet's shared state at the last cycle: `Some(true)`
    /// shared, `Some(false)` deciding alone, `None` when it has none.
    pub fleet_link_up: Option<bool>,
    /// Times that link went down.
    pub fleet_link_downs: u64,
}

// === impl Totals ===

impl Default for Totals {
    /// Nothing counted yet: no cycle, no component, every report kind at
    /// zero.
    fn default() -> Self {
        Self {
            cycles: 0,
            components: Vec::new(),
            reports: KIND_NAMES
                .iter()
                .map(|kind| KindCount { kind, count: 0 })
                .collect(),
        }
    }
}

impl Totals {
    /// The totals of `component`, if the witness follows it.
    pub fn component(&self, component: &str) -> Option<&ComponentTotals> {
        self.components.iter().find(|c| c.component == component)
    }

    /// Reports written of the kind named `kind`
    /// ([`DetectionKind::as_str`](crate::DetectionKind::as_str)).
    pub fn reports_of(&self, kind: &str) -> u64 {
        count_of(&self.reports, kind)
    }

    /// Adds a cycle: its `snapshot`, and the `durations` of its
    /// components, in the snapshot's order.
    pub(crate) fn add(&mut self, snapshot: &Snapshot, durations: &[DurationHistogram]) {
        self.cycles = self.cycles.saturating_add(1);
        for (at, state) in snapshot.components.iter().enumerate() {
            // Components keep their places: the one at the snapshot's place
            // is almost always the one.
            let index = match self.components.get(at) {
                Some(c) if c.component == state.component => at,
                _ => self
                    .components
                    .iter()
                    .position(|c| c.component == state.component)
                    .unwrap_or_else(|| {
                        self.components
                            .push(ComponentTotals::new(state.component.clone()));
                        self.components.len() - 1
                    }),
            };
            self.components[index].add(state, durations.get(at));
        }
        for report in &snapshot.reports {
            add_to(&mut self.reports, report.kind.as_str(), 1);
        }
    }
}

// === impl ComponentTotals ===

impl ComponentTotals {
    fn new(component: String) -> Self {
        Self {
            component,
            succeeded: 0,
            failed: 0,
            own_failed: 0,
            ignored: 0,
            cancelled: 0,
            rejected: REJECT_KINDS
                .iter()
                .map(|kind| kind.as_str())
                .chain(["other"])
                .map(|kind| KindCount { kind, count: 0 })
                .collect(),
            shed: 0,
            retries: 0,
            retry_budget_exhausted: 0,
            coalesced: 0,
            duration: DurationHistogram::default(),
            in_flight: 0,
            breaker: None,
            shed_limit: None,
            fleet_link_up: None,
            fleet_link_downs: 0,
            slot_queue_depth: 0,
        }
    }

    /// Requests refused with the kind named `kind` (`RejectKind::as_str`,
    /// or `other`).
    pub fn rejected_of(&self, kind: &str) -> u64 {
        count_of(&self.rejected, kind)
    }

    /// Requests refused, all kinds together.
    pub fn rejected_total(&self) -> u64 {
        self.rejected
            .iter()
            .fold(0, |sum, k| sum.saturating_add(k.count))
    }

    /// Requests that ended, whichever way: succeeded, failed, ignored,
    /// cancelled or refused.
    pub fn ended(&self) -> u64 {
        [
            self.succeeded,
            self.failed,
            self.ignored,
            self.cancelled,
            self.rejected_total(),
        ]
        .into_iter()
        .fold(0, u64::saturating_add)
    }

    fn add(&mut self, state: &ComponentState, durations: Option<&DurationHistogram>) {
        let counters = [
            (&mut self.succeeded, state.succeeded),
            (&mut self.failed, state.failed),
            (&mut self.own_failed, state.own_failed),
            (&mut self.ignored, state.ignored),
            (&mut self.cancelled, state.cancelled),
            (&mut self.shed, state.shed),
            (&mut self.retries, state.retries),
            (
                &mut self.retry_budget_exhausted,
                state.retry_budget_exhausted,
            ),
            (&mut self.coalesced, state.coalesced),
            (&mut self.fleet_link_downs, state.fleet_link_downs),
        ];
        for (total, n) in counters {
            *total = total.saturating_add(n);
        }
        for (kind, n) in &state.rejected {
            add_to(&mut self.rejected, kind, *n);
        }
        if let Some(durations) = durations {
            self.duration.add(durations);
        }
        self.in_flight = state.in_flight;
        self.breaker = state.breaker.as_deref().and_then(|name| {
            BreakerState::ALL
                .iter()
                .copied()
                .find(|s| s.as_str() == name)
        });
        self.shed_limit = state.shed_limit;
        self.fleet_link_up = state.fleet_link_up;
        self.slot_queue_depth = u64::try_from(state.slot_queue_depth).unwrap_or(u64::MAX);
    }
}

fn count_of(counts: &[KindCount], kind: &str) -> u64 {
    counts
        .iter()
        .find(|k| k.kind == kind)
        .map_or(0, |k| k.count)
}

fn add_to(counts: &mut [KindCount], kind: &str, n: u64) {
    if let Some(k) = counts.iter_mut().find(|k| k.kind == kind) {
        k.count = k.count.saturating_add(n);
    }
}
