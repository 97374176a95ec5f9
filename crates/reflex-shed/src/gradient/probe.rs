//! Probes of the no-load latency: the first one (a calibration) goes down
//! a `probe_depth` at a time while its level still meets a queue; later
//! ones, called by windows that say the baseline is stale, hold the limit
//! for two windows at what the dependency serves.

use crate::config::{Bounds, GradientConfig};
use crate::window::Summary;

use super::{GradientEvent, GradientState, PROBE_WINDOWS};

/// The most windows the calibration measures its last level for.
const CALIBRATION_WINDOWS: u64 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Probe {
    /// The probe's window under way, from 1; 0: none.
    pub(super) step: u64,
    /// The limit before the probe, put back after it.
    pub(super) saved: f64,
    /// The sum of its windows' latencies so far.
    pub(super) measured: f64,
    /// Its last window's latency; once it ended, what it measured (the
    /// next probe of a chain starts from that).
    pub(super) last_latency: f64,
    /// The sum of its windows' calls in flight so far.
    pub(super) in_flight: f64,
    /// The sum of its windows' squared relative errors so far.
    pub(super) errors: f64,
    /// The window before this level: its latency and calls in flight.
    pub(super) above: Level,
    /// The window before the probe.
    pub(super) top: Level,
}

/// A window's latency and calls in flight, to compare two levels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Level {
    pub(super) latency: f64,
    pub(super) in_flight: f64,
}

// === impl GradientState ===

impl GradientState {
    /// Folds a window of the probe under way in.
    pub(super) fn probe_window(
        &mut self,
        config: &GradientConfig,
        bounds: Bounds,
        window: &Summary,
        margin: f64,
        now: u64,
    ) -> Option<GradientEvent> {
        let latency = window.latency_ns;
        self.probe.measured += latency;
        self.probe.last_latency = latency;
        self.probe.in_flight += window.in_flight;
        self.probe.errors += window.latency_error * window.latency_error;
        let windows = self.probe.step;
        if windows < PROBE_WINDOWS {
            self.probe.step += 1;
            return None;
        }
        let level = Level {
            latency: self.probe.measured / windows as f64,
            in_flight: self.probe.in_flight / windows as f64,
        };
        if self.probed {
            // The mean of its windows, or its last one alone if the ones
            // before were slower beyond the margin: they still drained a
            // queue left from before (a dependency that lost capacity).
            let last = self.probe.last_latency;
            let before = (self.probe.measured - last) / (PROBE_WINDOWS - 1) as f64;
            let measured = if before > last * (1.0 + margin) {
                last
            } else {
                level.latency
            };
            return self.end_probe(config, measured, window.latency_error, margin, now);
        }
        if windows == PROBE_WINDOWS && self.descend(config, bounds, level, margin) {
            return None;
        }
        // The calibration measures on at its last level until its mean is
        // known to a quarter of the tolerance: a noisy dependency's first
        // measure, a few percent low, held the limit below the knee.
        let error = self.probe.errors.sqrt() / windows as f64;
        if error > config.tolerance / 4.0 && windows < CALIBRATION_WINDOWS {
            self.probe.step += 1;
            return None;
        }
        // Before the probe, calls met a queue: the dependency served
        // what Little's law says it did there, and the limit starts
        // from that rather than from a first guess.
        let top = self.probe.top;
        let ratio = top.latency / level.latency;
        let event = self.end_probe(config, level.latency, error, margin, now);
        if ratio > 1.0 + margin {
            let target = top.in_flight / ratio * (1.0 + config.tolerance / 2.0);
            self.estimate = bounds.clamp(target.min(self.estimate));
        }
        event
    }

    /// Starts a probe: a level at what the dependency serves (`capacity`),
    /// where nothing queues and the dependency stays busy, at least one
    /// call below the limit and no lower than the floor (the calibration:
    /// no lower than a `probe_depth` below the limit).
    pub(super) fn start_probe(
        &mut self,
        config: &GradientConfig,
        bounds: Bounds,
        capacity: f64,
        window: &Summary,
        margin: f64,
        now: u64,
    ) -> Option<GradientEvent> {
        let latency = window.latency_ns;
        let saved = self.estimate;
        // The first probe checks a first guess that may be well off: it goes
        // a `probe_depth` below, and on down from there. Later ones, called
        // by windows that say the baseline is stale, go to what the
        // dependency serves, half a call above: a level bounded above it
        // would meet a queue, and take it for a slower dependency.
        let (level, lowest) = if self.probed {
            (capacity + 0.5, bounds.floor)
        } else {
            (
                capacity.min(saved) * (1.0 - config.probe_depth),
                (saved * (1.0 - config.probe_depth)).max(bounds.floor),
            )
        };
        let level = level.min(saved - 1.0).max(lowest);
        if level > saved - 1.0 {
            // No room below the limit (the floor): what calls take at the
            // lowest limit there is, is the measure, a capped raise per
            // `probe_interval` (a chain of doubling raises would take in
            // the queue of a dependency that serves fewer than the floor).
            self.measured(config, latency, window.latency_error, margin, now);
            self.stale = 0;
            self.last = Level::default();
            return None;
        }
        let top = Level {
            latency,
            in_flight: window.in_flight,
        };
        self.probe = Probe {
            step: 1,
            saved,
            above: top,
            top,
            ..Probe::default()
        };
        self.estimate = level;
        Some(GradientEvent::ProbeStarted)
    }

    /// The first probe, which checks a first guess, goes on a
    /// `probe_depth` lower while its level still met a queue: calls were
    /// faster in proportion to the calls in flight (at least half of it),
    /// as they are when all of them queue. Returns whether it goes on.
    fn descend(
        &mut self,
        config: &GradientConfig,
        bounds: Bounds,
        level: Level,
        margin: f64,
    ) -> bool {
        let above = self.probe.above;
        if level.in_flight <= 0.0 || level.latency <= 0.0 {
            return false;
        }
        let fewer = above.in_flight / level.in_flight;
        let faster = above.latency / level.latency;
        let next = (level.in_flight * (1.0 - config.probe_depth)).max(bounds.floor);
        if faster <= 1.0 + margin.max((fewer - 1.0) / 2.0) || next > self.estimate - 1.0 {
            return false;
        }
        self.probe = Probe {
            step: 1,
            above: level,
            measured: 0.0,
            last_latency: 0.0,
            in_flight: 0.0,
            errors: 0.0,
            ..self.probe
        };
        self.estimate = next;
        true
    }

    /// Ends the probe with what it measured (of relative error `error`),
    /// and puts the limit back. The measure stays in `probe.last_latency`:
    /// a probe that follows in a chain starts from what it says the
    /// dependency serves.
    fn end_probe(
        &mut self,
        config: &GradientConfig,
        measured: f64,
        error: f64,
        margin: f64,
        now: u64,
    ) -> Option<GradientEvent> {
        self.measured(config, measured, error, margin, now);
        self.estimate = self.probe.saved;
        self.probe = Probe {
            last_latency: measured,
            ..Probe::default()
        };
        self.streak = 0;
        if self.stale == 0 {
            // Windows compare from here on; while the baseline is still
            // stale, with the most calls before it wore the limit down.
            self.last = Level::default();
        }
        Some(GradientEvent::ProbeEnded)
    }

    /// Folds a measure of the no-load latency (of relative error `error`)
    /// in, and schedules the next. The first replaces the first window's
    /// guess. Later ones raise the baseline only beyond the margin (a
    /// probe called by a capacity lost, rather than a slower dependency,
    /// measures it as it was), or in a chain; and lower it only with the
    /// evidence a window needs (the measure plus three times its error).
    /// A raise is capped at the tolerance (a probe that still met a queue
    /// would otherwise raise it by that queue); a probe the cap held back
    /// is followed by another at once, allowed twice the raise, up to 64
    /// times the tolerance: a dependency that got twice as slow for every
    /// call is followed within five or six probes.
    pub(super) fn measured(
        &mut self,
        config: &GradientConfig,
        measured: f64,
        error: f64,
        margin: f64,
        now: u64,
    ) {
        let before = self.baseline;
        // The cap doubles with each probe in a row it held back.
        let raise = config.tolerance * 2f64.powi(self.stale.saturating_sub(1).min(6) as i32);
        let ceiling = before * (1.0 + raise);
        let capped = measured > ceiling.max(before * (1.0 + margin));
        // A probe after one the cap held back measures a baseline known to
        // be stale: it is taken even within the margin.
        let chained = self.stale > super::STALE;
        self.baseline = if !self.probed || chained || measured > before * (1.0 + margin) {
            measured.min(ceiling)
        } else {
            before.min(measured * 3.0f64.mul_add(error, 1.0))
        };
        self.probed = true;
        self.stale = if capped {
            // Held back by the cap: the baseline is still stale, and the
            // next window measures again.
            self.stale.max(super::STALE) + 1
        } else {
            0
        };
        self.next_probe = self.after_interval(config, now);
    }

    /// `now` plus the probe interval, jittered by ±25%.
    pub(super) fn after_interval(&mut self, config: &GradientConfig, now: u64) -> u64 {
        let unit = (splitmix(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64;
        let interval = config.probe_interval_ns as f64 * 0.5f64.mul_add(unit, 0.75);
        now.saturating_add(interval as u64)
    }
}

/// A step of splitmix64: jitter needs no more.
pub(super) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
