//! The gradient limit, one window at a time: a pure function of the
//! window's [`Summary`], so that its behaviour is tested on samples written
//! by hand. Each window gives a latency (the mean of the middle half of
//! its calls, robust to a quarter of them far off and smooth on a coarse
//! clock), its error,
//! and the calls in flight at completion on average; `ratio` is the
//! latency over the no-load latency (the baseline), and the margin is the
//! tolerance, or twice the combined error of the window and the baseline
//! if larger.
//!
//! - **Queued** (ratio beyond the margin, by at least one call): the
//!   dependency serves about `in_flight / ratio` calls at once (Little's
//!   law); the limit goes towards that plus half the tolerance (a queue
//!   that keeps the dependency busy), `smoothing` of the way.
//! - **Within the margin**: the limit is steered to where calls take ¾ of
//!   the tolerance more than without load (inside the band of a tolerance
//!   around the knee, where noise rarely takes it out), half of the
//!   distance per window (at most half the tolerance), so one noisy window
//!   moves it by a fraction of a call. It only grows while calls press
//!   against it: in flight near it, or requests refused at it, at least a
//!   quarter as many as completed (a critical reserve keeps the other
//!   calls below it; a burst's few refusals say nothing).
//! - **Clear** windows in a row (ratio within 0.4 of the margin) add a
//!   quarter of a call from the third, then ½, 1, 2, … up to doubling: a
//!   dependency that grew is followed in a few seconds. From the start the
//!   limit doubles per window until calls first queue (slow start).
//! - **The baseline**: the first window (a window from its first sample)
//!   gives a first guess, checked as soon as the limit settles by a
//!   **calibration**: two windows a `probe_depth` below what the dependency
//!   serves, then another `probe_depth` lower while calls there were faster
//!   in proportion to the fewer calls in flight (all of them queued). Its
//!   last level, measured on until its mean is known to a quarter of the
//!   tolerance (at most eight windows), replaces the guess; the limit starts from
//!   what Little's law says the dependency served before it. A window
//!   lowers the baseline only with strong evidence (its latency plus three
//!   times its error). Later **probes** run on evidence, not on a timer: under
//!   load the windows themselves say whether the baseline still holds.
//!   Clearly fewer calls in flight (twice the margin) than the most since
//!   the last probe, clearly slower (the margin), while pressing against
//!   the limit: the calls did not queue, the dependency got slower for
//!   every call, and the baseline is stale (the limit would otherwise fall
//!   to the floor). A probe then holds the limit for two windows at what
//!   the dependency serves by the stale baseline (below what it really
//!   serves: the level meets no queue), or, after a probe the cap held
//!   back, by what that probe measured; takes the mean of its windows'
//!   latencies, or the last alone if the first was slower beyond the
//!   margin (it drained a queue left from before); and puts the limit
//!   back. A raise beyond the margin is taken, up to the tolerance, twice
//!   that after a probe the cap held back, and so on up to 64 times (the
//!   next probe follows at once); a measure within the margin leaves the
//!   baseline, or lowers it with the evidence a window needs. A window in
//!   which the calls stay well below the limit measures the baseline for
//!   free, every `probe_interval` ±25%; calls still slow at the floor,
//!   where no probe has room, are the measure as often (a capped raise,
//!   no chain).
//!
//! - **Starved windows**: calls that do not come back (see the estimator)
//!   close a window with too few samples; the limit goes towards what
//!   came back, `smoothing` of the way, a probe under way ends, and slow
//!   start begins again.
//!
//! Under a steady overload no probe runs after the calibration, and none
//! refuses calls (Envoy #8337): the calls at the limit are the
//! measurement. The baseline never rises by itself under load: only
//! probes move it up, on evidence, from a level where calls no longer
//! queue. A sustained overload cannot raise the limit (Netflix
//! concurrency-limits #134). Probes have nothing to do with the floor
//! (Envoy #46532), which is only a bound. Only the calibration, once, goes
//! a `probe_depth` at a time below what the dependency serves.

use std::f64::consts::SQRT_2;

use crate::config::{Bounds, GradientConfig};
use crate::window::Summary;

use self::probe::{Level, Probe};

pub(crate) use self::words::WORDS;

mod probe;
mod words;

/// The state between windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GradientState {
    /// The limit, before rounding.
    pub(crate) estimate: f64,
    /// The no-load latency, in nanoseconds; 0 before the first window.
    pub(crate) baseline: f64,
    /// Windows in a row that let the limit grow.
    streak: u64,
    /// From `STALE` once windows said the baseline is stale (too low): a
    /// probe follows at once. One more for each probe in a row whose raise
    /// the cap held back (the next one may raise it twice as much).
    stale: u64,
    /// What later windows compare with to tell a stale baseline: the
    /// window of the most calls in flight that was not slow since the last
    /// probe that found the baseline sound (a chain of capped probes keeps
    /// it), or since fewer calls last got no slower (its latency and calls
    /// in flight).
    last: Level,
    /// Until calls first queue, the limit doubles per window.
    slow_start: bool,
    /// Whether a probe measured the baseline yet.
    probed: bool,
    /// The probe in progress, if `step > 0`.
    probe: Probe,
    /// When a probe is due unless a window confirms the baseline first.
    next_probe: u64,
    rng: u64,
}

/// What a window did, for the logs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum GradientEvent {
    /// The first window set the baseline.
    Baseline,
    /// A probe began.
    ProbeStarted,
    /// A probe ended with this baseline.
    ProbeEnded,
    /// Calls did not come back: the window closed without enough of them.
    Starved,
}

/// The share of the tolerance within which a window counts as clear of
/// queueing (the limit may grow).
const GROWTH: f64 = 0.4;

/// Where the limit is steered to within the margin: calls taking this
/// share of the tolerance more than without load.
const SET_POINT: f64 = 0.75;

/// The share of its distance from the set point the limit moves per
/// window within the margin.
const GAIN: f64 = 0.5;

/// The share of the tolerance within which a window counts as nearly
/// clear (a run of growth goes on through it).
const NEAR: f64 = 0.75;

/// Refusals say calls press against the limit from this share of the
/// window's successes.
const REFUSED_SHARE: f64 = 0.25;

/// The windows a probe lasts.
const PROBE_WINDOWS: u64 = 2;

/// The baseline is stale (too low): a probe follows at once.
const STALE: u64 = 1;

// === impl GradientState ===

impl GradientState {
    pub(crate) fn new(initial: usize, seed: u64) -> Self {
        Self {
            estimate: initial as f64,
            baseline: 0.0,
            streak: 0,
            stale: 0,
            last: Level::default(),
            slow_start: true,
            probed: false,
            probe: Probe::default(),
            next_probe: 0,
            rng: seed,
        }
    }

    pub(crate) fn probing(&self) -> bool {
        self.probe.step > 0
    }

    /// Folds one closed window in.
    pub(crate) fn step(
        &mut self,
        config: &GradientConfig,
        bounds: Bounds,
        window: &Summary,
        now: u64,
    ) -> Option<GradientEvent> {
        let latency = window.latency_ns;
        if latency <= 0.0 {
            return None;
        }
        // The window's latency and the baseline are both noisy: a
        // difference counts beyond twice their combined error.
        let margin = config.tolerance.max(2.0 * SQRT_2 * window.latency_error);
        // What a window says of the no-load latency at most: its latency,
        // plus three times its error (the lowest of a long run's noisy
        // latencies is below the truth by that much: with twice, a baseline
        // crept down over ten minutes and the limit with it, at C = 10 to
        // a few calls). The first guess takes one error.
        let bound = latency * 3.0f64.mul_add(window.latency_error, 1.0);
        if self.baseline <= 0.0 {
            // A first guess, from a first window that may be small: a probe
            // checks it as soon as the limit settles.
            self.baseline = latency * (1.0 + window.latency_error);
            self.next_probe = now;
            return Some(GradientEvent::Baseline);
        }
        if self.probing() {
            return self.probe_window(config, bounds, window, margin, now);
        }
        self.baseline = self.baseline.min(bound);
        let ratio = latency / self.baseline;
        // Calls queue when they are slower than the margin allows, and by
        // at least one call: `in_flight × (1 − 1/ratio)` of those in flight
        // wait (Little's law), and a fraction of a call is noise.
        let capacity = window.in_flight / ratio;
        let queued = ratio > 1.0 + margin && window.in_flight - capacity >= 1.0;
        let used = window.in_flight >= self.estimate / 2.0;
        if self.slow_start {
            if !queued {
                if used {
                    self.estimate = bounds.clamp(self.estimate * 2.0);
                }
                return None;
            }
            self.slow_start = false;
        }
        // A limit that settled, or that fell to the floor (where calls that
        // stay as slow say the dependency got slower, not busier).
        let settled = !queued
            || capacity >= self.estimate * (1.0 - config.tolerance)
            || self.estimate < bounds.floor + 1.0;
        // Requests refused at it count when they are more than a burst's:
        // a few refused at a load the dependency serves say nothing of more
        // room (after C doubled under a steady load, they took the limit
        // to 1.15 C).
        let refused =
            window.refused > 0 && window.refused as f64 >= REFUSED_SHARE * window.successes as f64;
        let pressed =
            refused || window.in_flight >= self.estimate.floor() * (1.0 - config.tolerance);
        // Calls press against the limit, and are slower than the margin
        // allows.
        let slow = ratio > 1.0 + margin && pressed;
        self.track_staleness(window, slow, margin);
        if self.probed && self.stale >= STALE {
            // Fewer calls were slower: what looked like a queue may be a
            // dependency slower for every call, and the limit would fall on
            // to the floor. A probe checks at once: at what the dependency
            // serves by the stale baseline (at most; the level meets no
            // queue), or in a chain, by the measure of the probe before.
            let measured = self.probe.last_latency;
            let capacity = if self.stale > STALE && measured > 0.0 {
                window.in_flight * measured / latency
            } else {
                capacity
            };
            if let Some(event) = self.start_probe(config, bounds, capacity, window, margin, now) {
                return Some(event);
            }
        } else if settled && now >= self.next_probe {
            let floored = slow && self.estimate < bounds.floor + 1.0;
            if !used && !queued {
                // Calls run well below the limit: this window measured the
                // no-load latency as a probe would, for free. A first
                // measure replaces the guess outright, from one window: it
                // is taken an error high, since one that came out low
                // would hold the limit below the knee, and one high only
                // a little above it.
                let error = window.latency_error;
                let measure = if self.probed {
                    latency
                } else {
                    latency * (1.0 + error)
                };
                self.measured(config, measure, error, margin, now);
            } else if !self.probed || floored {
                // The first guess, checked by the calibration; or calls
                // still slow at the floor, where no probe has room and
                // they are the measure.
                if let Some(event) = self.start_probe(config, bounds, capacity, window, margin, now)
                {
                    return Some(event);
                }
            } else {
                // Under load, the windows are the evidence: a stale
                // baseline shows as fewer calls slower (above), and a probe
                // would only refuse calls to learn what they already say
                // (Envoy #8337). At a load the dependency serves, it would
                // hold the limit where the calls are and refuse their
                // peaks.
                self.next_probe = self.after_interval(config, now);
            }
        }
        if queued {
            // The dependency serves about `capacity` at once: the limit goes
            // towards that plus half the tolerance (a queue that keeps the
            // dependency busy), `smoothing` of the way.
            self.streak = 0;
            self.fall_towards(config, bounds, capacity);
            return None;
        }
        // Within the margin, the limit is steered to where calls take ¾ of
        // the tolerance more than without load: half of the way there per
        // window, a few percent at most, so that one noisy window moves it
        // by a fraction of a call. Only a limit calls press against grows:
        // one they stay well below says nothing of more.
        let error = (config.tolerance.mul_add(SET_POINT, 1.0) - ratio)
            .clamp(-config.tolerance, config.tolerance);
        if error < 0.0 || pressed {
            self.estimate = bounds.clamp(self.estimate * GAIN.mul_add(error, 1.0));
        }
        // Far below the knee, clear windows in a row grow it faster: from
        // the third, by a quarter of a call, then ½, 1, 2, … up to
        // doubling (a window only nearly clear neither adds nor ends the
        // run once it runs; one whose calls do not press ends it, or the
        // steps of pressed windows apart piled up to a leap of 16).
        if pressed && ratio <= 1.0 + margin * GROWTH {
            self.streak += 1;
            if self.streak >= 3 {
                let step = 0.25 * 2f64.powi((self.streak - 3).min(60) as i32);
                self.estimate = bounds.clamp(self.estimate + step.min(self.estimate));
            }
        } else if !pressed || self.streak < 3 || ratio > 1.0 + margin * NEAR {
            self.streak = 0;
        }
        None
    }

    /// Compares a `slow` window (beyond the margin) whose calls press
    /// against the limit with the window of the most calls in flight that
    /// was not slow, since the last probe: once there are clearly fewer (twice the
    /// margin) and they are clearly slower (the margin), what looks like a
    /// queue may be a dependency slower for every call, and the baseline
    /// stale: a probe tells. (A dependency that lost capacity looks the
    /// same here; its probe measures the baseline as it was.) Calls that
    /// did not get slower met a queue, or crossed the knee, below which
    /// they are as fast with fewer: the comparison starts over from here.
    fn track_staleness(&mut self, window: &Summary, slow: bool, margin: f64) {
        let here = Level {
            latency: window.latency_ns,
            in_flight: window.in_flight,
        };
        let top = self.last;
        if top.latency <= 0.0 || (!slow && here.in_flight >= top.in_flight) {
            self.last = here;
            return;
        }
        let fewer = top.in_flight / here.in_flight;
        if !slow || fewer < 2.0f64.mul_add(margin, 1.0) {
            return;
        }
        if here.latency > top.latency * (1.0 + margin) {
            self.stale = self.stale.max(STALE);
        } else {
            self.last = here;
        }
    }

    /// Folds in a window in which calls did not come back: too few of them
    /// (`returned`) in `elapsed_ns` for its age, while calls pressed
    /// against the limit or were given up on (see the estimator). The
    /// dependency served what Little's law says of them at the baseline:
    /// the limit goes towards that plus half the tolerance, `smoothing` of
    /// the way (with none, it halves at the default), a probe under way
    /// ends unmeasured, and the limit starts again as it started, doubling
    /// per window until calls queue: a dependency that recovers is
    /// followed in a few windows.
    pub(crate) fn starved(
        &mut self,
        config: &GradientConfig,
        bounds: Bounds,
        returned: u64,
        elapsed_ns: u64,
    ) {
        if self.baseline <= 0.0 {
            return;
        }
        self.probe = Probe::default();
        let served = returned as f64 * self.baseline / (elapsed_ns.max(1) as f64);
        self.fall_towards(config, bounds, served);
        self.slow_start = true;
        self.streak = 0;
    }

    /// The dependency serves about `served` calls at once: a limit above
    /// that plus half the tolerance (a queue that keeps the dependency
    /// busy) goes towards it, `smoothing` of the way; one below stays.
    fn fall_towards(&mut self, config: &GradientConfig, bounds: Bounds, served: f64) {
        let target = served * (1.0 + config.tolerance / 2.0);
        if target < self.estimate {
            self.estimate = bounds.clamp(
                config
                    .smoothing
                    .mul_add(target - self.estimate, self.estimate),
            );
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
