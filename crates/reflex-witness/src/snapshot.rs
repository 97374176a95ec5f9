//! [`Snapshot`]s: what every component did over one cycle.

use serde::Serialize;

use crate::detect::Report;

/// What the witness saw over one cycle: every component's state.
/// `Serialize`, for export (JSON at an endpoint, logs).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// The cycle that made it: 1 for the first, 0 for the empty snapshot
    /// before it.
    pub cycle: u64,
    /// When, in milliseconds since the witness was built.
    pub observed_at_ms: u64,
    /// Every component the witness follows.
    pub components: Vec<ComponentState>,
    /// The reports the detectors wrote in this cycle.
    pub reports: Vec<Report>,
    /// What the reflexes did in this cycle.
    pub actions: Vec<crate::reflex::Measure>,
    /// Calls made in the cycle from one component's requests into another
    /// component's stack: the dependency graph the witness learns, with
    /// how the calls went.
    pub calls: Vec<CallEdge>,
}

/// Calls from one component's requests into another's stack over a cycle
/// (a request of `caller` awaited `callee`'s service while it ran).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CallEdge {
    /// The calling component.
    pub caller: String,
    /// The component called.
    pub callee: String,
    /// Calls that ended in the cycle.
    pub calls: u64,
    /// Of those, the ones that failed, were refused, or were dropped
    /// before their end.
    pub failed: u64,
}

/// A summary of the witness: what it follows, what it found, what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// Components followed.
    pub components: usize,
    /// Call patterns seen often enough to be called learned (0 when the
    /// witness does not learn them).
    pub patterns_learned: usize,
    /// Components whose breaker is open or forced open.
    pub open_breakers: Vec<String>,
    /// Reports kept.
    pub reports: usize,
    /// Actions taken by reflexes so far.
    pub actions: usize,
}

/// One component over one cycle.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ComponentState {
    /// The component's name.
    pub component: String,
    /// Requests running now.
    pub in_flight: u64,
    /// Requests started in the cycle.
    pub requests: u64,
    /// Requests started per second over the cycle.
    pub throughput: f64,
    /// Requests that ended in a success.
    pub succeeded: u64,
    /// Requests that ended in a failure: `own_failed + propagated_failed`.
    pub failed: u64,
    /// Failures of the component's own: of requests none of whose calls
    /// below (to other components the witness follows) failed.
    pub own_failed: u64,
    /// Failures that echo one below: of requests at least one of whose
    /// calls below failed, was refused, or was dropped.
    pub propagated_failed: u64,
    /// Requests whose outcome counts for nothing.
    pub ignored: u64,
    /// Requests whose caller dropped them before the end.
    pub cancelled: u64,
    /// `failed / (succeeded + failed)`, 0 when neither.
    pub error_rate: f64,
    /// Latency percentiles of the requests that ended, in milliseconds
    /// (within 1/16 of the true value); `None` when none ended.
    pub p50_ms: Option<f64>,
    /// The 90th percentile.
    pub p90_ms: Option<f64>,
    /// The 99th percentile.
    pub p99_ms: Option<f64>,
    /// Self time percentiles, in milliseconds: a request's latency less the
    /// time during which at least one of its calls below was in flight,
    /// over the requests that succeeded or failed on their own; `None` when
    /// none did. What the component itself spent.
    pub self_p50_ms: Option<f64>,
    /// The 90th percentile of self time.
    pub self_p90_ms: Option<f64>,
    /// The 99th percentile of self time.
    pub self_p99_ms: Option<f64>,
    /// Requests refused by a layer of the stack, by kind.
    pub rejected: Vec<(String, u64)>,
    /// Requests shed (from the shed layer's signals).
    pub shed: u64,
    /// Retries made (from the retry layer's signals).
    pub retries: u64,
    /// Requests answered by another's call or the cache (from the dedup
    /// layer's signals).
    pub coalesced: u64,
    /// The breaker's state: read from the breaker's control when the
    /// witness was given one (`Witness::control_breaker`, as the preset
    /// does), else the last state a breaker reported; `None` when neither.
    /// Keyed breakers' keys never change it (see `breaker_keys_opened`).
    pub breaker: Option<String>,
    /// Keys of the component's keyed circuit breaker that went Open or
    /// ForcedOpen from an admitting state in the cycle (from
    /// `KeyedBreakerTransition` signals).
    pub breaker_keys_opened: u64,
    /// Requests waiting now in the component's slot queues, all slots
    /// together: those that joined a queue (`SlotQueued`) and have not left
    /// it (`SlotStarted { waited: true }`, `SlotReplaced { was_running:
    /// false }` or `SlotAbandoned`).
    pub slot_queue_depth: usize,
}

impl Snapshot {
    pub(crate) fn empty() -> Self {
        Self {
            cycle: 0,
            observed_at_ms: 0,
            components: Vec::new(),
            reports: Vec::new(),
            actions: Vec::new(),
            calls: Vec::new(),
        }
    }

    /// `true` when nothing happened in the cycle: no request started or
    /// ended, nothing refused, no signal counted.
    pub fn is_quiet(&self) -> bool {
        self.reports.is_empty()
            && self.actions.is_empty()
            && self.components.iter().all(|c| {
                [
                    c.requests,
                    c.succeeded,
                    c.failed,
                    c.ignored,
                    c.cancelled,
                    c.shed,
                    c.retries,
                    c.coalesced,
                    c.breaker_keys_opened,
                ]
                .iter()
                .all(|n| *n == 0)
                    && c.rejected.is_empty()
            })
    }

    /// The state of `component`, if the witness follows it.
    pub fn component(&self, component: &str) -> Option<&ComponentState> {
        self.components.iter().find(|c| c.component == component)
    }
}
