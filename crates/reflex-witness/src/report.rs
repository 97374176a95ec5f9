//! What the witness writes: [`Report`]s, one per episode, read like an
//! incident summary, with their roots, affected components and causal
//! chains.

use std::fmt;

use reflex_core::RejectKind;
use serde::{Serialize, Serializer};

use crate::measure::Measure;
use crate::state::ComponentState;

/// What a report is about.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DetectionKind {
    /// A component's own error rate (failures none of whose calls below
    /// failed) far above its baseline.
    OwnErrorRate,
    /// A component's own work (self time: its latency less the time spent
    /// waiting on its calls below) far slower than its baseline, at the
    /// median.
    OwnLatencyP50,
    /// The same at the 99th percentile (judged only with enough volume).
    OwnLatencyP99,
    /// A chain of components not seen while the witness learned its
    /// patterns (`call_patterns`).
    NewCallPattern {
        /// The components of the chain, caller first.
        chain: Vec<String>,
    },
    /// A known chain far slower than usual.
    SlowCallPattern {
        /// The components of the chain, caller first.
        chain: Vec<String>,
        /// The cycle's median latency of the chain, in milliseconds.
        observed_ms: f64,
        /// Its usual latency, in milliseconds.
        usual_ms: f64,
    },
    /// A finding of a detector of your own, by its name.
    Custom(String),
}

/// The names of the kinds ([`DetectionKind::as_str`]), in their order.
pub(crate) const KIND_NAMES: [&str; 6] = [
    "own_error_rate",
    "own_latency_p50",
    "own_latency_p99",
    "new_call_pattern",
    "slow_call_pattern",
    "custom",
];

impl DetectionKind {
    /// A short, stable, lowercase name, fit for metric labels and logs (as
    /// it is serialized). Every detector of your own is `custom`, whatever
    /// its name: a label takes few values.
    ///
    /// ```
    /// use reflex_witness::DetectionKind;
    ///
    /// assert_eq!(DetectionKind::OwnErrorRate.as_str(), "own_error_rate");
    /// assert_eq!(DetectionKind::Custom("disk".into()).as_str(), "custom");
    /// ```
    pub fn as_str(&self) -> &'static str {
        let index = match self {
            Self::OwnErrorRate => 0,
            Self::OwnLatencyP50 => 1,
            Self::OwnLatencyP99 => 2,
            Self::NewCallPattern { .. } => 3,
            Self::SlowCallPattern { .. } => 4,
            Self::Custom(_) => 5,
        };
        KIND_NAMES[index]
    }

    /// `true` for the kinds of the judgement of own errors and self time
    /// (the ones that have a root and an episode).
    pub fn is_own(&self) -> bool {
        matches!(
            self,
            Self::OwnErrorRate | Self::OwnLatencyP50 | Self::OwnLatencyP99
        )
    }
}

/// How bad a root is against its baseline, with the volume it was judged
/// on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Evidence {
    /// Own failures of the cycle against the baseline rate.
    ErrorRate {
        /// Own failures in the cycle.
        failed: u64,
        /// Requests judged: every request that ran its own work (succeeded, own
        /// failures, echoes) and its own breaker's refusals.
        requests: u64,
        /// `failed / requests`.
        observed: f64,
        /// The baseline own error rate (learned on healthy cycles).
        baseline: f64,
    },
    /// Self time at a percentile against its baseline.
    Latency {
        /// 50 or 99.
        percentile: u8,
        /// The cycle's self time at that percentile, in milliseconds.
        observed_ms: f64,
        /// The baseline, in milliseconds.
        baseline_ms: f64,
        /// Requests judged: those with a self time (succeeded, or failed
        /// on their own).
        requests: u64,
    },
}

/// A component where an episode starts: its own errors or its own work,
/// not an echo of a call below.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Root {
    /// The component.
    pub component: String,
    /// What is wrong with it.
    pub kind: DetectionKind,
    /// How bad, against its baseline (`None` for a detector of your own).
    pub evidence: Option<Evidence>,
}

/// A component that depends on a root (calls it, or calls a component
/// that does, …) and shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Affected {
    /// The component.
    pub component: String,
    /// How it depends on the root: itself first, the root last
    /// (`["api", "auth", "db"]`).
    pub path: Vec<String>,
    /// Its failures that echo a call below, in the cycle.
    pub propagated_failed: u64,
    /// Its requests that ended in the cycle (succeeded or failed).
    pub requests: u64,
    /// Its total latency p50 in the cycle, in milliseconds.
    pub p50_ms: Option<f64>,
    /// Its baseline total latency p50, in milliseconds (`None` before it
    /// was learned).
    pub baseline_p50_ms: Option<f64>,
}

/// What happened to a call in a causal chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkKind {
    /// It failed on its own: none of its calls below failed.
    Failed,
    /// It failed after a call below failed, was refused or dropped: an
    /// echo.
    FailedBelow,
    /// A layer of its stack refused it.
    Refused(RejectKind),
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed => f.write_str("failed"),
            Self::FailedBelow => f.write_str("failed below"),
            Self::Refused(kind) => write!(f, "refused: {}", kind.as_str()),
        }
    }
}

impl Serialize for LinkKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A failed or refused call, as a link of a causal chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ChainLink {
    /// When, in milliseconds since the witness was built.
    pub at_ms: u64,
    /// The component whose call it was.
    pub component: String,
    /// What happened to it.
    pub what: LinkKind,
}

/// An incident summary: what was found, where it starts, since when, how
/// bad against the baseline, who is affected and through which calls, the
/// chain of failures of this episode, and what was done about it.
///
/// The judgement writes one report when an episode opens (read its end in
/// [`Witness::episodes`](crate::Witness::episodes)); call patterns and
/// detectors of your own write theirs as they find.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// The episode it opens ([`Witness::episodes`](crate::Witness::episodes));
    /// `None` for a call pattern's or a detector's of your own.
    pub episode: Option<u64>,
    /// The cycle that wrote it.
    pub cycle: u64,
    /// When, in milliseconds since the witness was built.
    pub at_ms: u64,
    /// What it is about (the first root's kind when there are several).
    pub kind: DetectionKind,
    /// Where it starts: the components whose own errors or own work are
    /// anomalous (several when they turned at once).
    pub roots: Vec<Root>,
    /// Since when, in milliseconds since the witness was built: the first
    /// own failure of a root in the cycle that opened the episode, or that
    /// cycle's start for a latency episode.
    pub since_ms: u64,
    /// The components that depend on a root and show it (echoed failures
    /// or a longer total latency), with the path of calls.
    pub affected: Vec<Affected>,
    /// The states of the roots and affected components in that cycle.
    pub components: Vec<ComponentState>,
    /// Failed and refused calls of this episode only, the roots' first
    /// failures first, then the others' in time order (up to the chain
    /// limit).
    pub causal_chain: Vec<ChainLink>,
    /// One line for a human: what, where, how bad.
    pub summary: String,
    /// What the reflexes did about it in that cycle (empty: nothing). The
    /// episode's later actions, and their undoing, are in
    /// [`Episode::actions`](crate::Episode::actions).
    pub actions: Vec<Measure>,
}

/// The one line of an episode's report: each root with how bad it is
/// against its baseline, then the affected components' paths.
pub(crate) fn summary(roots: &[Root], affected: &[Affected]) -> String {
    let roots: Vec<String> = roots
        .iter()
        .map(|root| match &root.evidence {
            Some(Evidence::ErrorRate {
                failed,
                requests,
                observed,
                baseline,
            }) => format!(
                "{}: own error rate {:.1}% ({failed} of {requests} requests), baseline {:.2}%",
                root.component,
                observed * 100.0,
                baseline * 100.0
            ),
            Some(Evidence::Latency {
                percentile,
                observed_ms,
                baseline_ms,
                requests,
            }) => format!(
                "{}: own work p{percentile} {observed_ms:.1} ms ({requests} requests), baseline {baseline_ms:.1} ms",
                root.component
            ),
            None => root.component.clone(),
        })
        .collect();
    let mut line = roots.join("; ");
    if !affected.is_empty() {
        let paths: Vec<String> = affected.iter().map(|a| a.path.join(" -> ")).collect();
        line.push_str("; affected: ");
        line.push_str(&paths.join(", "));
    }
    line
}
