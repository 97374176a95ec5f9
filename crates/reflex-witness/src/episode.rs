//! [`Episode`]: one incident, from the report that opens it to its end.

use serde::Serialize;

use crate::measure::Measure;
use crate::report::{DetectionKind, Root};

/// One incident, from its report to its end: from the cycle a component's
/// own errors or own work turn anomalous to the cycle it is back within its
/// baseline. Read them with [`Witness::episodes`](crate::Witness::episodes).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Episode {
    /// Its id, as in its [`Report::episode`](crate::Report::episode).
    pub id: u64,
    /// What opened it (its first root's kind).
    pub kind: DetectionKind,
    /// Where it starts, with the evidence of the cycle that opened it.
    pub roots: Vec<Root>,
    /// Since when, in milliseconds since the witness was built.
    pub since_ms: u64,
    /// The cycle that opened it (and wrote its report).
    pub opened_cycle: u64,
    /// Every component it affected over its course.
    pub affected: Vec<String>,
    /// What the reflexes did about it, and their undoing, in order.
    pub actions: Vec<Measure>,
    /// When it closed (its roots back within their baselines), in
    /// milliseconds since the witness was built; `None` while open.
    pub ended_ms: Option<u64>,
}

// === impl Episode ===

impl Episode {
    /// `true` until its roots are back within their baselines.
    pub fn is_open(&self) -> bool {
        self.ended_ms.is_none()
    }
}
