//! Detectors: what the witness looks for each cycle, and the reports it
//! writes when it finds it.

use std::collections::HashMap;
use std::time::Duration;

use reflex_core::BoxError;
use serde::Serialize;

use crate::snapshot::{ComponentState, Snapshot};

/// A failed or refused call, as a link of a causal chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ChainLink {
    /// When, in milliseconds since the witness was built.
    pub at_ms: u64,
    /// The component whose call it was.
    pub component: String,
    /// `"failed"`, or `"rejected: <kind>"`.
    pub what: String,
}

/// What a detector sees each cycle.
#[derive(Debug)]
#[non_exhaustive]
pub struct Observation<'a> {
    /// The cycle's snapshot.
    pub snapshot: &'a Snapshot,
    /// Failed and refused calls of the last cycles, oldest first (the
    /// witness keeps the last 1 024 at most).
    pub events: &'a [ChainLink],
    /// Now, in milliseconds since the witness was built.
    pub now_ms: u64,
}

/// Something a detector found, which the witness turns into a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// What triggered it, in a few words.
    pub trigger: String,
    /// The components involved: their states and failed calls go in the
    /// report.
    pub components: Vec<String>,
    /// What the detector concluded.
    pub decision: String,
}

impl Finding {
    /// A finding about `components`.
    pub fn new(
        trigger: impl Into<String>,
        components: Vec<String>,
        decision: impl Into<String>,
    ) -> Self {
        Self {
            trigger: trigger.into(),
            components,
            decision: decision.into(),
        }
    }
}

/// What a detector found, with the evidence: a witness report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// The cycle that wrote it.
    pub cycle: u64,
    /// When, in milliseconds since the witness was built.
    pub at_ms: u64,
    /// The detector that found it.
    pub detector: String,
    /// What triggered it.
    pub trigger: String,
    /// The involved components' states in that cycle.
    pub components: Vec<ComponentState>,
    /// Their failed and refused calls, in order (the earliest, up to the
    /// chain limit).
    pub causal_chain: Vec<ChainLink>,
    /// What the detector concluded.
    pub decision: String,
    /// What was done about it (empty: nothing).
    pub actions: Vec<String>,
}

/// Looks at each cycle's observation and says what it finds. Runs on the
/// witness's cycle, off the request path: it may take its time, keep
/// state, and fail (the witness records the error in `last_error` and
/// goes on).
///
/// # Examples
///
/// A detector that reports any component refusing calls:
///
/// ```
/// use reflex_core::BoxError;
/// use reflex_witness::{Detector, Finding, Observation};
///
/// struct AnyRejection;
///
/// impl Detector for AnyRejection {
///     fn name(&self) -> &str {
///         "any_rejection"
///     }
///
///     fn inspect(&mut self, seen: &Observation<'_>) -> Result<Vec<Finding>, BoxError> {
///         Ok(seen
///             .snapshot
///             .components
///             .iter()
///             .filter(|c| !c.rejected.is_empty())
///             .map(|c| Finding::new("rejections", vec![c.component.clone()], "refusing calls"))
///             .collect())
///     }
/// }
/// # let _ = AnyRejection;
/// ```
pub trait Detector: Send + 'static {
    /// A short, stable name, written in its reports.
    fn name(&self) -> &str;

    /// What this cycle's observation shows.
    ///
    /// # Errors
    ///
    /// Any error: the witness keeps it as `last_error` and goes on.
    fn inspect(&mut self, observation: &Observation<'_>) -> Result<Vec<Finding>, BoxError>;
}

/// Failures in several components at once: at least `components` of them
/// each with at least `failures` failed or refused calls inside the last
/// `window`. Reports once per episode: again only after it has cleared.
#[derive(Debug, Clone)]
pub struct Cascade {
    components: usize,
    failures: usize,
    window: Duration,
    active: bool,
}

impl Cascade {
    /// A cascade of `components` components with `failures` failures each
    /// inside `window`.
    pub fn new(components: usize, failures: usize, window: Duration) -> Self {
        Self {
            components: components.max(1),
            failures: failures.max(1),
            window,
            active: false,
        }
    }
}

impl Detector for Cascade {
    fn name(&self) -> &str {
        "cascade"
    }

    fn inspect(&mut self, seen: &Observation<'_>) -> Result<Vec<Finding>, BoxError> {
        let from = seen
            .now_ms
            .saturating_sub(u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX));
        let mut per_component: Vec<(&str, usize)> = Vec::new();
        for link in seen.events.iter().filter(|l| l.at_ms >= from) {
            match per_component.iter_mut().find(|(c, _)| *c == link.component) {
                Some((_, n)) => *n += 1,
                None => per_component.push((&link.component, 1)),
            }
        }
        let failing: Vec<String> = per_component
            .into_iter()
            .filter(|(_, n)| *n >= self.failures)
            .map(|(c, _)| c.to_owned())
            .collect();
        if failing.len() < self.components {
            self.active = false;
            return Ok(Vec::new());
        }
        if std::mem::replace(&mut self.active, true) {
            return Ok(Vec::new());
        }
        let decision = format!(
            "{} components failing together: {}",
            failing.len(),
            failing.join(", ")
        );
        Ok(vec![Finding::new("cascade", failing, decision)])
    }
}

/// A component's latency far off its own baseline: its p50 over a cycle
/// above `factor` times its baseline p50 (an average of its earlier
/// cycles, learned over `warmup` cycles of at least `min_requests`
/// requests). Reports once per episode; the baseline learns neither from
/// the regression nor from cycles where more than 10% of calls failed.
#[derive(Debug, Clone)]
pub struct LatencyRegression {
    factor: f64,
    warmup: u32,
    min_requests: u64,
    baselines: HashMap<String, Baseline>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Baseline {
    p50_ms: f64,
    cycles: u32,
    regressed: bool,
}

impl LatencyRegression {
    /// A regression at `factor` times the baseline, learned over `warmup`
    /// cycles of at least `min_requests` requests each.
    pub fn new(factor: f64, warmup: u32, min_requests: u64) -> Self {
        Self {
            factor,
            warmup: warmup.max(1),
            min_requests,
            baselines: HashMap::new(),
        }
    }
}

impl LatencyRegression {
    pub(crate) fn factor(&self) -> f64 {
        self.factor
    }
}

impl Detector for LatencyRegression {
    fn name(&self) -> &str {
        "latency_regression"
    }

    fn inspect(&mut self, seen: &Observation<'_>) -> Result<Vec<Finding>, BoxError> {
        let mut findings = Vec::new();
        for state in &seen.snapshot.components {
            let Some(p50) = state.p50_ms else { continue };
            if state.succeeded + state.failed + state.ignored < self.min_requests {
                continue;
            }
            let baseline = self.baselines.entry(state.component.clone()).or_default();
            if baseline.cycles >= self.warmup && p50 > self.factor * baseline.p50_ms {
                if !std::mem::replace(&mut baseline.regressed, true) {
                    findings.push(Finding::new(
                        "latency_regression",
                        vec![state.component.clone()],
                        format!(
                            "{}: p50 {p50:.1} ms, {:.1}× its baseline of {:.1} ms",
                            state.component,
                            p50 / baseline.p50_ms,
                            baseline.p50_ms
                        ),
                    ));
                }
                continue;
            }
            baseline.regressed = false;
            // A baseline is what the component does when it works: cycles
            // of mostly failed calls (fast refusals) would drag it down.
            if state.error_rate > 0.1 {
                continue;
            }
            // A running average over the warm-up, then an exponential one.
            baseline.cycles = baseline.cycles.saturating_add(1);
            let weight = 1.0 / f64::from(baseline.cycles.min(self.warmup.max(5)));
            baseline.p50_ms += (p50 - baseline.p50_ms) * weight;
        }
        Ok(findings)
    }
}
