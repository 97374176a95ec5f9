//! [`Judgement`]: the margins the witness judges components with, and the
//! baseline each component learns on healthy cycles.
//!
//! A component is judged on what is its own: its own failures (of
//! requests none of whose calls below failed) and its self time (latency
//! less the time spent waiting on calls below). Each is compared with a
//! baseline learned on healthy cycles only, with a minimum volume and a
//! statistical margin (docs/witness.md has the figures).

use reflex_core::{ConfigError, ConfigErrorKind};

use crate::builder::LAYER;
use crate::detect::{DetectionKind, Evidence};
use crate::snapshot::ComponentState;
use crate::stats::poisson_tail;

/// How the witness judges a component's own errors and self time against
/// its baseline; given to
/// [`WitnessBuilder::judgement`](crate::WitnessBuilder::judgement), checked
/// by `build()`.
///
/// A cycle's own failures `f` (its own breaker's refusals included) of
/// `n` requests (every request that ran its own work: succeeded, own
/// failures, echoes) are anomalous when all of these hold: `n ≥ min_requests`,
/// `f ≥ min_failures`, `f / n ≥ error_factor × p0`, and
/// `P(X ≥ f) < alpha` for `X` Poisson of mean `n × p0⁺`, where `p0` is
/// the learned own error rate (at least `error_floor`) and `p0⁺` its upper
/// bound, `p0 + 3·√(p0 / N)` over the `N` requests it was learned on (so a
/// baseline learned on few requests is not trusted below its noise).
///
/// Self time is anomalous when its p50 is above `latency_factor ×` its
/// baseline and above the baseline plus `latency_floor_ms` (with at least
/// `min_requests` requests), or its p99 is above `p99_factor ×` its
/// baseline and the same floor (with at least `p99_min_requests`).
///
/// # Examples
///
/// ```
/// use reflex_witness::{Judgement, Witness};
///
/// let witness = Witness::builder()
///     .judgement(Judgement::default().min_requests(50).close_after(3))
///     .build()?;
/// # let _ = witness;
/// let err = Witness::builder()
///     .judgement(Judgement::default().error_factor(0.5))
///     .build()
///     .unwrap_err();
/// assert_eq!(err.setting(), "judgement.error_factor");
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Judgement {
    pub(crate) warmup: u32,
    pub(crate) memory: u32,
    pub(crate) min_requests: u64,
    pub(crate) min_failures: u64,
    pub(crate) alpha: f64,
    pub(crate) error_factor: f64,
    pub(crate) error_floor: f64,
    pub(crate) latency_factor: f64,
    pub(crate) latency_floor_ms: f64,
    pub(crate) p99_factor: f64,
    pub(crate) p99_min_requests: u64,
    pub(crate) close_after: u32,
}

impl Default for Judgement {
    fn default() -> Self {
        Self {
            warmup: 5,
            memory: 50,
            min_requests: 20,
            min_failures: 5,
            alpha: 1e-6,
            error_factor: 2.0,
            error_floor: 0.001,
            latency_factor: 2.0,
            latency_floor_ms: 1.0,
            p99_factor: 3.0,
            p99_min_requests: 200,
            close_after: 2,
        }
    }
}

// === impl Judgement ===

impl Judgement {
    /// Healthy cycles of at least `min_requests` requests a component
    /// learns on before it is judged (at least 1). Defaults to 5.
    pub fn warmup(mut self, cycles: u32) -> Self {
        self.warmup = cycles;
        self
    }

    /// How many cycles a baseline remembers: each healthy cycle weighs
    /// `1 / memory` in it (at least 1). Defaults to 50.
    pub fn memory(mut self, cycles: u32) -> Self {
        self.memory = cycles;
        self
    }

    /// The fewest requests in a cycle for its error rate or its p50 to be
    /// judged (at least 1). Defaults to 20.
    pub fn min_requests(mut self, requests: u64) -> Self {
        self.min_requests = requests;
        self
    }

    /// The fewest own failures in a cycle to call its error rate anomalous
    /// (at least 1). Defaults to 5.
    pub fn min_failures(mut self, failures: u64) -> Self {
        self.min_failures = failures;
        self
    }

    /// How unlikely, under the baseline, a cycle's own failures must be
    /// (in (0, 0.5)). Defaults to 1e-6: with a few components and one
    /// cycle a second, about one chance in 100 days of a false alarm from
    /// noise alone.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// How many times its baseline rate a cycle's own error rate must be
    /// (a finite number above 1). Defaults to 2.
    pub fn error_factor(mut self, factor: f64) -> Self {
        self.error_factor = factor;
        self
    }

    /// The lowest baseline error rate judged against (in [0, 1)), so that
    /// a component with no failure while learning is not alarmed by its
    /// first few. Defaults to 0.001.
    pub fn error_floor(mut self, rate: f64) -> Self {
        self.error_floor = rate;
        self
    }

    /// How many times its baseline p50 a cycle's self-time p50 must be (a
    /// finite number above 1). Defaults to 2.
    pub fn latency_factor(mut self, factor: f64) -> Self {
        self.latency_factor = factor;
        self
    }

    /// How far above its baseline, in milliseconds, a self-time percentile
    /// must also be (finite, at least 0), so that a component of a few
    /// microseconds is not "3× slower" at a few more. Defaults to 1 ms.
    pub fn latency_floor_ms(mut self, ms: f64) -> Self {
        self.latency_floor_ms = ms;
        self
    }

    /// How many times its baseline p99 a cycle's self-time p99 must be (a
    /// finite number above 1). Defaults to 3.
    pub fn p99_factor(mut self, factor: f64) -> Self {
        self.p99_factor = factor;
        self
    }

    /// The fewest requests in a cycle for its p99 to be judged (at least
    /// 100: below, a p99 is one or two requests). Defaults to 200.
    pub fn p99_min_requests(mut self, requests: u64) -> Self {
        self.p99_min_requests = requests;
        self
    }

    /// Consecutive cycles of a root back within its baseline (with at
    /// least `min_requests` requests) that close its episode (at least 1).
    /// Defaults to 2.
    pub fn close_after(mut self, cycles: u32) -> Self {
        self.close_after = cycles;
        self
    }

    /// Refuses what it cannot honour.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let err = |setting: &'static str, kind, reason: String| {
            Err(ConfigError::new(LAYER, setting, kind, reason))
        };
        let zero = ConfigErrorKind::Zero;
        let range = ConfigErrorKind::OutOfRange;
        if self.warmup == 0 {
            return err("judgement.warmup", zero, "at least one cycle".into());
        }
        if self.memory == 0 {
            return err("judgement.memory", zero, "at least one cycle".into());
        }
        if self.min_requests == 0 {
            return err("judgement.min_requests", zero, "at least 1".into());
        }
        if self.min_failures == 0 {
            return err("judgement.min_failures", zero, "at least 1".into());
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return err(
                "judgement.alpha",
                range,
                format!("must be in (0, 0.5), got {}", self.alpha),
            );
        }
        for (setting, factor) in [
            ("judgement.error_factor", self.error_factor),
            ("judgement.latency_factor", self.latency_factor),
            ("judgement.p99_factor", self.p99_factor),
        ] {
            if !(factor.is_finite() && factor > 1.0) {
                return err(
                    setting,
                    range,
                    format!("must be a finite number above 1, got {factor}"),
                );
            }
        }
        if !(self.error_floor >= 0.0 && self.error_floor < 1.0) {
            return err(
                "judgement.error_floor",
                range,
                format!("must be in [0, 1), got {}", self.error_floor),
            );
        }
        if !(self.latency_floor_ms.is_finite() && self.latency_floor_ms >= 0.0) {
            return err(
                "judgement.latency_floor_ms",
                range,
                format!(
                    "must be finite and at least 0, got {}",
                    self.latency_floor_ms
                ),
            );
        }
        if self.p99_min_requests < 100 {
            return err(
                "judgement.p99_min_requests",
                range,
                format!("must be at least 100, got {}", self.p99_min_requests),
            );
        }
        if self.close_after == 0 {
            return err("judgement.close_after", zero, "at least one cycle".into());
        }
        Ok(())
    }
}

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
    /// Requests ([`judged_requests`]) and own failures ([`own_failures`]),
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
    /// Requests judged ([`judged_requests`]).
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

/// A component's own failures in a cycle: the failures of its own work,
/// and the calls its own breaker refused while open (it opened on its own
/// failures: echoes never count for a breaker). A root whose breaker trips
/// at once still shows what it is doing. Refusals by its shed layer
/// (overload) or its throttle (a reflex's doing) are not failures.
pub(crate) fn own_failures(state: &ComponentState) -> u64 {
    let open = reflex_core::RejectKind::CircuitOpen.as_str();
    let refused = state
        .rejected
        .iter()
        .filter(|(kind, _)| kind == open)
        .map(|(_, n)| *n)
        .sum::<u64>();
    state.own_failed.saturating_add(refused)
}

/// The requests a component's own error rate is judged over: every request
/// that ran its own work, the echoes included (a request that failed only
/// because a call below did got its own part right: counting it out would
/// make a few own failures look like a high rate while everything below is
/// down), and its own breaker's refusals.
pub(crate) fn judged_requests(state: &ComponentState) -> u64 {
    state
        .succeeded
        .saturating_add(state.propagated_failed)
        .saturating_add(own_failures(state))
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
        let failed = own_failures(state);
        let requests = judged_requests(state);
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
        let failed = own_failures(state);
        let requests = judged_requests(state);
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
