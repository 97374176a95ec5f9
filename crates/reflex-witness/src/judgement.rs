//! [`Judgement`]: the margins the witness judges components with, checked
//! when the witness is built.

use reflex_core::{ConfigError, ConfigErrorKind};

use crate::limits::LAYER;

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
