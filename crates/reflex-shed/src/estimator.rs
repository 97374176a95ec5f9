//! [`Estimator`]: an adaptive limit at run time. Completed calls
//! [`record`](Estimator::record) into the current window (a few atomics);
//! the caller that finds the window due closes it, through the window's
//! gate, and recomputes the limit, off every other request's path. No
//! lock, no task: the estimator's state sits in atomics that only the
//! caller holding the gate touches. Refusals and calls given up on are no
//! samples; they close a due window only when completions never would:
//! calls given up on after a long wait, and too few back, say it is
//! starved (calls do not come back).

use crate::aimd::AimdState;
use crate::config::{AdaptiveConfig, AlgorithmConfig};
use crate::gradient::{self, GradientEvent, GradientState};
use crate::loom::{AtomicU64, Ordering};
use crate::window::{Accumulators, Gate, Summary};

use self::starved::GIVEN_UP;

/// Words of state: the end of the last window, the windows closed, the
/// last window's latency, then the algorithm's own.
const LAST_CLOSE: usize = 0;
const WINDOWS: usize = 1;
const LATENCY: usize = 2;
const ALGORITHM: usize = 3;
const WORDS: usize = ALGORITHM + gradient::WORDS;

#[derive(Debug)]
pub(crate) struct Estimator {
    config: AdaptiveConfig,
    gate: Gate,
    window: Accumulators,
    /// When the estimator last changed the limit: a call admitted before
    /// ran under another limit, and is no sample of this one.
    changed_at: AtomicU64,
    /// How long a call may wait before one given up on says calls do not
    /// come back: [`GIVEN_UP`] times the reference latency (0: none yet).
    slow_after: AtomicU64,
    /// Read and written only by the caller holding the gate (the handle's
    /// reads for metrics aside: they may see two windows' fields mixed).
    state: [AtomicU64; WORDS],
}

/// A window closed and the limit recomputed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Recomputed {
    /// The limit the estimator asks for now.
    pub(crate) limit: usize,
    pub(crate) summary: Summary,
    pub(crate) event: Option<GradientEvent>,
}

/// What the estimator says of itself, for metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct View {
    pub(crate) limit: usize,
    pub(crate) windows: u64,
    pub(crate) latency_ns: f64,
    /// The gradient's no-load latency (0: not measured yet, or AIMD).
    pub(crate) baseline_ns: f64,
    pub(crate) probing: bool,
}

enum Algorithm {
    Gradient(GradientState),
    Aimd(AimdState),
}

// === impl Estimator ===

impl Estimator {
    pub(crate) fn new(config: AdaptiveConfig, seed: u64) -> Self {
        let estimator = Self {
            config,
            // The first window lasts a window from its first sample.
            gate: Gate::new(0),
            window: Accumulators::new(),
            changed_at: AtomicU64::new(0),
            slow_after: AtomicU64::new(0),
            state: std::array::from_fn(|_| AtomicU64::new(0)),
        };
        let algorithm = match config.algorithm {
            AlgorithmConfig::Gradient(gradient) => Algorithm::Gradient(GradientState::new(
                config.initial,
                gradient.seed.unwrap_or(seed),
            )),
            AlgorithmConfig::Aimd(_) => Algorithm::Aimd(AimdState::new(config.initial)),
        };
        estimator.store_algorithm(&algorithm);
        estimator
    }

    pub(crate) fn config(&self) -> &AdaptiveConfig {
        &self.config
    }

    /// One completed call: `latency_ns` from admission to answer,
    /// `in_flight` counted at completion (itself included), `failed` by the
    /// stack's classifier. `now` is the time of completion. A call admitted
    /// before the limit last changed is not counted. Returns the recomputed
    /// limit when this call closed a window.
    #[inline]
    pub(crate) fn record(
        &self,
        latency_ns: u64,
        in_flight: usize,
        failed: bool,
        now: u64,
    ) -> Option<Recomputed> {
        let slow = match self.config.algorithm {
            AlgorithmConfig::Aimd(aimd) => aimd.timeout_ns.is_some_and(|t| latency_ns > t),
            AlgorithmConfig::Gradient(_) => false,
        };
        let admitted = now.saturating_sub(latency_ns);
        if admitted < self.changed_at.load(Ordering::Relaxed) {
            // Admitted under the limit before: says nothing of this one,
            // but it came back.
            self.window.other();
        } else if failed || slow {
            self.window.drop_signal(in_flight);
        } else {
            self.window.success(latency_ns, in_flight);
        }
        self.close_if_due(in_flight, now)
    }

    /// A call that completed with an outcome to be ignored: no sample, but
    /// it came back. Closes the window if it is due.
    #[cold]
    pub(crate) fn ignored(&self, in_flight: usize, now: u64) -> Option<Recomputed> {
        self.window.other();
        self.close_if_due(in_flight, now)
    }

    /// A request refused at `hard_limit`: evidence that calls press against
    /// the limit, whatever share of it their class may take (a critical
    /// reserve keeps the others below it), if the limit is the estimator's
    /// own. One a reflex holds lower says nothing of it: counted there, it
    /// would let the estimate grow while the reflex holds. Closes a first
    /// window that completions left overdue (see `close_if_starved`).
    #[cold]
    pub(crate) fn refused(
        &self,
        hard_limit: usize,
        in_flight: usize,
        now: u64,
    ) -> Option<Recomputed> {
        if hard_limit >= self.limit() {
            self.window.refusal();
        }
        self.close_if_starved(in_flight, now)
    }

    /// A call given up on (its future dropped) after `waited_ns`, with
    /// `in_flight` calls (itself included): no sample, ever. Only one that
    /// waited [`GIVEN_UP`] times the reference latency counts, as a sign
    /// that calls do not come back. Closes the window if it is due.
    #[cold]
    pub(crate) fn given_up(
        &self,
        waited_ns: u64,
        in_flight: usize,
        now: u64,
    ) -> Option<Recomputed> {
        let slow_after = self.slow_after.load(Ordering::Relaxed);
        if slow_after > 0 && waited_ns >= slow_after {
            self.window.given_up();
        }
        self.close_if_starved(in_flight, now)
    }

    #[inline]
    fn close_if_due(&self, in_flight: usize, now: u64) -> Option<Recomputed> {
        if !self.gate.due(now) {
            return None;
        }
        self.close(now, in_flight, false)
    }

    /// Closes the window if nobody else is; `in_flight` calls now. A
    /// `stalled` first window closes with any sample.
    #[cold]
    fn close(&self, now: u64, in_flight: usize, stalled: bool) -> Option<Recomputed> {
        let closing = self.gate.try_close(now)?;
        let windows = self.word(WINDOWS);
        let (samples, _) = self.tally();
        if windows == 0 && self.word(LAST_CLOSE) == 0 {
            // The first window lasts a window from its first sample: one
            // that closed on its first samples would hold the fastest of
            // the calls started together.
            self.set_word(LAST_CLOSE, now.max(1));
            closing.reopen(now.saturating_add(self.config.window_ns));
            return None;
        }
        let starved = samples < self.config.min_samples && self.starved(in_flight, now);
        let enough = samples >= self.config.min_samples || (stalled && samples > 0);
        if !enough && !starved {
            // Not enough to go on: the window goes on. The first one closes
            // at its first enough samples, later ones at most every quarter
            // window.
            let next = if windows == 0 {
                now
            } else {
                now.saturating_add(self.config.window_ns / 4)
            };
            closing.reopen(next);
            return None;
        }
        let summary = self.window.take();
        let elapsed = now.saturating_sub(self.word(LAST_CLOSE));
        let bounds = self.config.bounds();
        let mut algorithm = self.load_algorithm();
        let before = self.round(estimate(&algorithm));
        let event = match (&mut algorithm, self.config.algorithm) {
            (Algorithm::Gradient(state), AlgorithmConfig::Gradient(config)) if starved => {
                state.starved(&config, bounds, summary.returned, elapsed);
                Some(GradientEvent::Starved)
            }
            (Algorithm::Gradient(state), AlgorithmConfig::Gradient(config)) => {
                state.step(&config, bounds, &summary, now)
            }
            (Algorithm::Aimd(state), AlgorithmConfig::Aimd(config)) if starved => {
                state.starved(&config, bounds);
                Some(GradientEvent::Starved)
            }
            (Algorithm::Aimd(state), AlgorithmConfig::Aimd(config)) => {
                state.step(&config, bounds, &summary, elapsed);
                None
            }
            _ => None,
        };
        self.store_algorithm(&algorithm);
        self.set_word(LAST_CLOSE, now);
        self.set_word(WINDOWS, windows.saturating_add(1));
        if summary.latency_ns > 0.0 {
            self.set_word(LATENCY, summary.latency_ns.to_bits());
        }
        let reference = reference(&algorithm, f64::from_bits(self.word(LATENCY)));
        self.slow_after
            .store((reference * GIVEN_UP) as u64, Ordering::Relaxed);
        let limit = self.round(estimate(&algorithm));
        if limit != before {
            self.changed_at.store(now, Ordering::Relaxed);
        }
        closing.reopen(now.saturating_add(self.config.window_ns));
        Some(Recomputed {
            limit,
            summary,
            event,
        })
    }

    pub(crate) fn view(&self) -> View {
        let algorithm = self.load_algorithm();
        let (baseline_ns, probing) = match &algorithm {
            Algorithm::Gradient(state) => (state.baseline, state.probing()),
            Algorithm::Aimd(_) => (0.0, false),
        };
        View {
            limit: self.limit(),
            windows: self.word(WINDOWS),
            latency_ns: f64::from_bits(self.word(LATENCY)),
            baseline_ns,
            probing,
        }
    }

    /// The limit the estimator asks for now: one load, the estimate being
    /// the first word of either algorithm's state.
    fn limit(&self) -> usize {
        self.round(f64::from_bits(self.word(ALGORITHM)))
    }

    /// The limit an estimate asks for: rounded down, within the bounds.
    fn round(&self, estimate: f64) -> usize {
        let rounded = self.config.bounds().clamp(estimate.floor());
        (rounded as usize).clamp(self.config.floor, self.config.ceiling)
    }

    fn word(&self, i: usize) -> u64 {
        self.state[i].load(Ordering::Relaxed)
    }

    fn set_word(&self, i: usize, value: u64) {
        self.state[i].store(value, Ordering::Relaxed);
    }

    fn load_algorithm(&self) -> Algorithm {
        let words: [u64; gradient::WORDS] = std::array::from_fn(|i| self.word(ALGORITHM + i));
        match self.config.algorithm {
            AlgorithmConfig::Gradient(_) => Algorithm::Gradient(GradientState::from_words(words)),
            AlgorithmConfig::Aimd(_) => Algorithm::Aimd(AimdState {
                estimate: f64::from_bits(words[0]),
            }),
        }
    }

    fn store_algorithm(&self, algorithm: &Algorithm) {
        let words = match algorithm {
            Algorithm::Gradient(state) => state.to_words(),
            Algorithm::Aimd(state) => {
                let mut words = [0; gradient::WORDS];
                words[0] = state.estimate.to_bits();
                words
            }
        };
        for (i, word) in words.into_iter().enumerate() {
            self.set_word(ALGORITHM + i, word);
        }
    }
}

/// The latency calls take at no load, as far as the algorithm knows: the
/// gradient's baseline, or for AIMD (or before a baseline) the last
/// window's `latency_ns` (0: none).
fn reference(algorithm: &Algorithm, latency_ns: f64) -> f64 {
    match algorithm {
        Algorithm::Gradient(state) if state.baseline > 0.0 => state.baseline,
        _ => latency_ns,
    }
}

fn estimate(algorithm: &Algorithm) -> f64 {
    match algorithm {
        Algorithm::Gradient(state) => state.estimate,
        Algorithm::Aimd(state) => state.estimate,
    }
}

mod starved;

#[cfg(all(test, not(loom)))]
mod tests;
