//! [`ComponentState`]: what one component did over one cycle, and the
//! counts its own error rate is judged on.

use serde::Serialize;

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
    /// Retries the retry budget refused (from the retry layer's
    /// `RetryBudgetExhausted` signals): the caller got the last attempt's
    /// result.
    pub retry_budget_exhausted: u64,
    /// Requests answered by another's call or the cache (from the dedup
    /// layer's signals).
    pub coalesced: u64,
    /// The breaker's state: read from the breaker's control when the
    /// witness was given one (`Witness::control`, as the preset
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
    /// The shed layer's hard limit now, read from its control when the
    /// witness was given one (`Witness::control`, as the preset does);
    /// `None` otherwise.
    pub shed_limit: Option<u64>,
    /// The component's link to the state its fleet of replicas shares (a
    /// `reflex-redis` backend), from `FleetLink` signals: `Some(true)`
    /// shared, `Some(false)` deciding alone, `None` when it has none.
    pub fleet_link_up: Option<bool>,
    /// Times that link went down in the cycle.
    pub fleet_link_downs: u64,
}

// === impl ComponentState ===

impl ComponentState {
    /// Its own failures in the cycle: the failures of its own work, and
    /// the calls its own breaker refused while open (it opened on its own
    /// failures: echoes never count for a breaker). A root whose breaker
    /// trips at once still shows what it is doing. Refusals by its shed
    /// layer (overload) or its throttle (a reflex's doing) are not
    /// failures.
    pub(crate) fn own_failures(&self) -> u64 {
        let open = reflex_core::RejectKind::CircuitOpen.as_str();
        let refused = self
            .rejected
            .iter()
            .filter(|(kind, _)| kind == open)
            .map(|(_, n)| *n)
            .sum::<u64>();
        self.own_failed.saturating_add(refused)
    }

    /// The requests its own error rate is judged over: every request that
    /// ran its own work, the echoes included (a request that failed only
    /// because a call below did got its own part right: counting it out
    /// would make a few own failures look like a high rate while
    /// everything below is down), and its own breaker's refusals.
    pub(crate) fn judged_requests(&self) -> u64 {
        self.succeeded
            .saturating_add(self.propagated_failed)
            .saturating_add(self.own_failures())
    }

    /// Its own error rate in the cycle, as the judgement reads it; `None`
    /// when no request was judged.
    pub(crate) fn own_error_rate(&self) -> Option<f64> {
        let requests = self.judged_requests();
        (requests > 0).then(|| self.own_failures() as f64 / requests as f64)
    }
}

#[cfg(test)]
impl ComponentState {
    /// `component` with nothing counted: what tests fill in.
    pub(crate) fn idle(component: &str) -> Self {
        Self {
            component: component.to_owned(),
            in_flight: 0,
            requests: 0,
            throughput: 0.0,
            succeeded: 0,
            failed: 0,
            own_failed: 0,
            propagated_failed: 0,
            ignored: 0,
            cancelled: 0,
            error_rate: 0.0,
            p50_ms: None,
            p90_ms: None,
            p99_ms: None,
            self_p50_ms: None,
            self_p90_ms: None,
            self_p99_ms: None,
            rejected: Vec::new(),
            shed: 0,
            retries: 0,
            retry_budget_exhausted: 0,
            coalesced: 0,
            breaker: None,
            breaker_keys_opened: 0,
            slot_queue_depth: 0,
            shed_limit: None,
            fleet_link_up: None,
            fleet_link_downs: 0,
        }
    }
}
