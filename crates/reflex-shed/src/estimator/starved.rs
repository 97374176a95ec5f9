//! Windows that completions never close: calls given up on after a long
//! wait, and too few back, say the window is starved.

use super::{Estimator, LAST_CLOSE, Recomputed, WINDOWS};
use crate::config::AlgorithmConfig;
use crate::loom::Ordering;

/// A call given up on after this many times the reference latency (the
/// no-load latency, or AIMD's last window's) is a sign that calls do not
/// come back. A sign only: a window needs its completions to say so too
/// (see [`STARVED`]), so a client's own deadline a little above the
/// latency (a hedge) changes nothing.
pub(super) const GIVEN_UP: f64 = 1.0;

/// A window is starved when, by Little's law, its calls took more than
/// this many times the reference latency: the calls that came back over
/// its age, against the calls in flight now, say so.
const STARVED: f64 = 4.0;

// === impl Estimator ===

impl Estimator {
    /// Closes the window if it is due and completions may never close it:
    /// it is starved (whatever its samples), or it is a quarter of a window
    /// overdue (completions would have closed it, had they come, or been
    /// enough) and either is the first (which has no latency to judge by,
    /// and closes with any sample at all; it still begins at its first
    /// sample) or holds enough samples while calls are given up on (it
    /// straddles the moment calls stopped coming back). A refusal or a
    /// call given up on closes no other window (they stay where
    /// completions end them).
    pub(super) fn close_if_starved(&self, in_flight: usize, now: u64) -> Option<Recomputed> {
        if !self.gate.due(now) {
            return None;
        }
        let began = self.word(LAST_CLOSE);
        let overdue = began > 0
            && now.saturating_sub(began)
                >= self
                    .config
                    .window_ns
                    .saturating_add(self.config.window_ns / 4);
        let first = self.word(WINDOWS) == 0;
        let stalled = overdue
            && (first || (self.window.any_given_up() && self.tally().0 >= self.config.min_samples));
        if !stalled && !self.starved(in_flight, now) {
            return None;
        }
        self.close(now, in_flight, stalled && first)
    }

    /// The window's samples so far (what `min_samples` counts), and the
    /// calls that came back (whatever their outcome, samples or not).
    pub(super) fn tally(&self) -> (u64, u64) {
        let (successes, drops) = self.window.count();
        let samples = match self.config.algorithm {
            AlgorithmConfig::Gradient(_) => successes,
            AlgorithmConfig::Aimd(_) => successes.saturating_add(drops),
        };
        let returned = successes
            .saturating_add(drops)
            .saturating_add(self.window.others());
        (samples, returned)
    }

    /// Whether the window is starved: it lasted a window, a call was given
    /// up on in it after waiting the reference latency, fewer calls came
    /// back in it (whatever their outcome, samples or not) than are in
    /// flight now (calls take longer than the window), and those that did,
    /// over its age, against the `in_flight` calls now, say by Little's law
    /// that calls took more than [`STARVED`] times the reference latency.
    /// Calls that never complete then hold no window open. One too small to
    /// count then brings the limit down (see the algorithms' `starved`);
    /// one that holds enough samples counts as any other.
    ///
    /// A refusal is no such sign: at a light, bursty load the calls in
    /// flight at a refusal are many more than on average, and a burst after
    /// an idle spell finds a window in which nothing came back; counted,
    /// both brought the limit down for nothing.
    pub(super) fn starved(&self, in_flight: usize, now: u64) -> bool {
        let age = now.saturating_sub(self.word(LAST_CLOSE));
        let reference = self.slow_after.load(Ordering::Relaxed) as f64 / GIVEN_UP;
        if age < self.config.window_ns || reference <= 0.0 || !self.window.any_given_up() {
            return false;
        }
        let (_, returned) = self.tally();
        (returned as usize) < in_flight
            && (returned as f64) * reference * STARVED < in_flight as f64 * age as f64
    }
}
