//! The AIMD limit, one window at a time: a pure function of the window's
//! [`Summary`].
//!
//! A window with a drop (a failure by the stack's classifier, or a call
//! slower than the configured timeout) multiplies the limit by `backoff`,
//! once however many drops it holds. A window without one, in which the
//! limit was used (calls in flight at least half of it), adds `increase`
//! per round trip it lasted (its duration over its latency), at
//! most doubling the limit.

use crate::config::{AimdConfig, Bounds};
use crate::window::Summary;

/// The state between windows: the limit before rounding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AimdState {
    pub(crate) estimate: f64,
}

// === impl AimdState ===

impl AimdState {
    pub(crate) fn new(initial: usize) -> Self {
        Self {
            estimate: initial as f64,
        }
    }

    /// Folds one closed window in, which lasted `elapsed_ns`.
    pub(crate) fn step(
        &mut self,
        config: &AimdConfig,
        bounds: Bounds,
        window: &Summary,
        elapsed_ns: u64,
    ) {
        if window.drops > 0 {
            self.estimate *= config.backoff;
        } else if window.in_flight >= self.estimate / 2.0 && window.latency_ns > 0.0 {
            let round_trips = (elapsed_ns as f64 / window.latency_ns).max(1.0);
            self.estimate += (config.increase * round_trips).min(self.estimate);
        }
        self.estimate = bounds.clamp(self.estimate);
    }

    /// A window in which calls did not come back (see the estimator): a
    /// drop, however few completed.
    pub(crate) fn starved(&mut self, config: &AimdConfig, bounds: Bounds) {
        self.estimate = bounds.clamp(self.estimate * config.backoff);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        floor: 2.0,
        ceiling: 100.0,
    };
    const CONFIG: AimdConfig = AimdConfig {
        backoff: 0.5,
        increase: 1.0,
        timeout_ns: None,
    };

    fn window(drops: u64, in_flight: f64) -> Summary {
        Summary {
            successes: 50,
            drops,
            latency_ns: 10e6,
            latency_error: 0.01,
            in_flight,
            refused: 0,
            given_up: 0,
            returned: 50 + drops,
        }
    }

    #[test]
    fn a_drop_backs_off_once_per_window() {
        let mut aimd = AimdState::new(40);
        aimd.step(&CONFIG, BOUNDS, &window(7, 40.0), 100_000_000);
        assert_eq!(aimd.estimate, 20.0);
        aimd.step(&CONFIG, BOUNDS, &window(1, 20.0), 100_000_000);
        aimd.step(&CONFIG, BOUNDS, &window(1, 20.0), 100_000_000);
        aimd.step(&CONFIG, BOUNDS, &window(1, 20.0), 100_000_000);
        assert_eq!(aimd.estimate, 2.5);
        aimd.step(&CONFIG, BOUNDS, &window(1, 2.0), 100_000_000);
        assert_eq!(aimd.estimate, 2.0, "never below the floor");
    }

    #[test]
    fn a_used_limit_grows_by_one_per_round_trip() {
        let mut aimd = AimdState::new(40);
        // 100 ms at 10 ms a call: ten round trips.
        aimd.step(&CONFIG, BOUNDS, &window(0, 38.0), 100_000_000);
        assert_eq!(aimd.estimate, 50.0);
        // Unused: it holds.
        aimd.step(&CONFIG, BOUNDS, &window(0, 10.0), 100_000_000);
        assert_eq!(aimd.estimate, 50.0);
        // At most doubling, never above the ceiling.
        aimd.step(&CONFIG, BOUNDS, &window(0, 50.0), u64::MAX);
        assert_eq!(aimd.estimate, 100.0);
    }
}
