//! [`Snapshot`]s: what every component did over one cycle.

use serde::Serialize;

use crate::measure::Measure;
use crate::report::Report;
use crate::state::ComponentState;

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
    pub actions: Vec<Measure>,
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

// === impl Snapshot ===

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
                    c.retry_budget_exhausted,
                    c.coalesced,
                    c.breaker_keys_opened,
                    c.fleet_link_downs,
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
