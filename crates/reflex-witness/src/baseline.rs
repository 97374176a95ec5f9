//! The baseline each component learns on healthy cycles, and the
//! [`Verdict`] of a cycle against it.
//!
//! A component is judged on what is its own: its own failures (of
//! requests none of whose calls below failed) and its self time (latency
//! less the time spent waiting on calls below). Each is compared with a
//! baseline learned on healthy cycles only, with a minimum volume and a
//! statistical margin (docs/witness.md has the figures).

use crate::judgement::Judgement;
use crate::report::{DetectionKind, Evidence};
use crate::state::ComponentState;
use crate::stats::poisson_tail;

/// A running average over the first `memory` samples, an exponential one
/// after.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Average {
    value: f64,
    samples: u32,
}

impl Average {
    fn learn(&mut self, sample: f64, memory: u32) {
        self.samples = self.samples.saturating_add(1);
        let weight = 1.0 / f64::from(self.samples.min(memory));
        self.value += (sample - self.value) * weight;
    }

    pub(crate) fn get(&self) -> Option<f64> {
        (self.samples > 0).then_some(self.value)
    }
}

/// What a component does when it works, learned on healthy cycles.
#[derive(Debug, Clone, Default)]
pub(crate) struct Baseline {
    /// Requests ([`ComponentState::judged_requests`]) and own failures
    /// ([`ComponentState::own_failures`]),
    /// each cycle's weighing `1 - 1/memory` less per cycle after it.
    requests: f64,
    own_failed: f64,
    /// Ended requests and propagated failures, the same way.
    ended: f64,
    propagated: f64,
    self_p50: Average,
    self_p99: Average,
    pub(crate) total_p50: Average,
    /// Cycles learned with at least `min_requests` requests.
    warm: u32,
}

/// What a cycle shows of a component against its baseline.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Verdict {
    /// Its own anomalies, error rate first.
    pub(crate) anomalies: Vec<(DetectionKind, Evidence)>,
    /// Requests judged ([`ComponentState::judged_requests`]).
    pub(crate) requests: u64,
}

impl Verdict {
    /// `true` when an anomaly of the same dimension as `kind` (errors, or
    /// latency) is among its own.
    pub(crate) fn is_anomalous_like(&self, kind: &DetectionKind) -> bool {
        self.anomalies
            .iter()
            .any(|(found, _)| same_dimension(found, kind))
    }
}

/// Errors and latency are judged apart: a root slow in one episode may
/// start failing in another (a slow db that then refuses connections),
/// and each gets its own report and reflex.
pub(crate) fn same_dimension(a: &DetectionKind, b: &DetectionKind) -> bool {
    let errors = |k: &DetectionKind| matches!(k, DetectionKind::OwnErrorRate);
    errors(a) == errors(b)
}

impl Baseline {
    /// The learned own error rate (`None` before any request).
    pub(crate) fn error_rate(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.own_failed / self.requests)
    }

    /// `true` once warmed up: judged from then on.
    pub(crate) fn is_warm(&self, judgement: &Judgement) -> bool {
        self.warm >= judgement.warmup
    }

    /// `true` when `state`'s echoed failures are well above the usual.
    pub(crate) fn propagation_up(&self, state: &ComponentState, judgement: &Judgement) -> bool {
        let ended = state.succeeded.saturating_add(state.failed);
        let usual = if self.ended > 0.0 {
            (self.propagated / self.ended).max(judgement.error_floor)
        } else {
            judgement.error_floor
        };
        state.propagated_failed > 0
            && state.propagated_failed as f64 >= judgement.error_factor * usual * ended as f64
    }

    /// `true` when `state`'s total latency is well above the usual.
    pub(crate) fn total_latency_up(&self, state: &ComponentState, judgement: &Judgement) -> bool {
        match (state.p50_ms, self.total_p50.get()) {
            (Some(p50), Some(usual)) => {
                p50 > (judgement.latency_factor * usual).max(usual + judgement.latency_floor_ms)
            }
            _ => false,
        }
    }

    /// Judges `state` against this baseline (nothing before warm-up).
    pub(crate) fn judge(&self, state: &ComponentState, judgement: &Judgement) -> Verdict {
        let failed = state.own_failures();
        let requests = state.judged_requests();
        let mut verdict = Verdict {
            anomalies: Vec::new(),
            requests,
        };
        if !self.is_warm(judgement) {
            return verdict;
        }
        let learned = self.error_rate().unwrap_or(0.0);
        let p0 = learned.max(judgement.error_floor);
        let p0_upper = 3.0f64
            .mul_add((p0 / self.requests.max(1.0)).sqrt(), p0)
            .min(1.0);
        let n = requests as f64;
        if requests >= judgement.min_requests
            && failed >= judgement.min_failures
            && failed as f64 >= judgement.error_factor * p0 * n
            && poisson_tail(failed, n * p0_upper) < judgement.alpha
        {
            verdict.anomalies.push((
                DetectionKind::OwnErrorRate,
                Evidence::ErrorRate {
                    failed,
                    requests,
                    observed: failed as f64 / n,
                    baseline: learned,
                },
            ));
        }
        // Latency is judged over the requests with a self time: those that
        // succeeded or failed on their own (echoes have none).
        let timed = state.succeeded.saturating_add(state.own_failed);
        let slow = |observed: Option<f64>, usual: Option<f64>, factor: f64| match (observed, usual)
        {
            (Some(observed), Some(usual)) => (observed
                > (factor * usual).max(usual + judgement.latency_floor_ms))
            .then_some((observed, usual)),
            _ => None,
        };
        if timed >= judgement.min_requests {
            if let Some((observed_ms, baseline_ms)) = slow(
                state.self_p50_ms,
                self.self_p50.get(),
                judgement.latency_factor,
            ) {
                verdict.anomalies.push((
                    DetectionKind::OwnLatencyP50,
                    Evidence::Latency {
                        percentile: 50,
                        observed_ms,
                        baseline_ms,
                        requests: timed,
                    },
                ));
            }
        }
        if timed >= judgement.p99_min_requests
            && !verdict
                .anomalies
                .iter()
                .any(|(k, _)| *k == DetectionKind::OwnLatencyP50)
        {
            if let Some((observed_ms, baseline_ms)) =
                slow(state.self_p99_ms, self.self_p99.get(), judgement.p99_factor)
            {
                verdict.anomalies.push((
                    DetectionKind::OwnLatencyP99,
                    Evidence::Latency {
                        percentile: 99,
                        observed_ms,
                        baseline_ms,
                        requests: timed,
                    },
                ));
            }
        }
        verdict
    }

    /// Learns a healthy cycle of `state`.
    pub(crate) fn learn(&mut self, state: &ComponentState, judgement: &Judgement) {
        let keep = 1.0 - 1.0 / f64::from(judgement.memory);
        let failed = state.own_failures();
        let requests = state.judged_requests();
        let timed = state.succeeded.saturating_add(state.own_failed);
        let ended = state.succeeded.saturating_add(state.failed);
        self.requests = self.requests.mul_add(keep, requests as f64);
        self.own_failed = self.own_failed.mul_add(keep, failed as f64);
        self.ended = self.ended.mul_add(keep, ended as f64);
        self.propagated = self
            .propagated
            .mul_add(keep, state.propagated_failed as f64);
        if requests < judgement.min_requests {
            return;
        }
        self.warm = self.warm.saturating_add(1);
        if let Some(p50) = state
            .self_p50_ms
            .filter(|_| timed >= judgement.min_requests)
        {
            self.self_p50.learn(p50, judgement.memory);
        }
        if let Some(p50) = state.p50_ms {
            self.total_p50.learn(p50, judgement.memory);
        }
        if timed >= judgement.p99_min_requests {
            if let Some(p99) = state.self_p99_ms {
                self.self_p99.learn(p99, judgement.memory);
            }
        }
    }
}
