//! The gradient's state as the words the estimator stores it in: only the
//! caller holding the window's gate writes them.

use super::GradientState;
use super::probe::{Level, Probe};

/// The number of words [`GradientState`] is stored in.
pub(crate) const WORDS: usize = 20;

// === impl GradientState ===

impl GradientState {
    pub(crate) fn to_words(self) -> [u64; WORDS] {
        [
            self.estimate.to_bits(),
            self.baseline.to_bits(),
            self.streak,
            self.probe.step,
            self.probe.saved.to_bits(),
            self.probe.measured.to_bits(),
            self.probe.in_flight.to_bits(),
            self.probe.above.latency.to_bits(),
            self.probe.above.in_flight.to_bits(),
            self.probe.top.latency.to_bits(),
            self.probe.top.in_flight.to_bits(),
            u64::from(self.probed),
            self.next_probe,
            self.rng,
            u64::from(self.slow_start),
            self.stale,
            self.last.latency.to_bits(),
            self.last.in_flight.to_bits(),
            self.probe.last_latency.to_bits(),
            self.probe.errors.to_bits(),
        ]
    }

    pub(crate) fn from_words(words: [u64; WORDS]) -> Self {
        Self {
            estimate: f64::from_bits(words[0]),
            baseline: f64::from_bits(words[1]),
            streak: words[2],
            probe: Probe {
                step: words[3],
                saved: f64::from_bits(words[4]),
                measured: f64::from_bits(words[5]),
                last_latency: f64::from_bits(words[18]),
                errors: f64::from_bits(words[19]),
                in_flight: f64::from_bits(words[6]),
                above: Level {
                    latency: f64::from_bits(words[7]),
                    in_flight: f64::from_bits(words[8]),
                },
                top: Level {
                    latency: f64::from_bits(words[9]),
                    in_flight: f64::from_bits(words[10]),
                },
            },
            probed: words[11] != 0,
            next_probe: words[12],
            rng: words[13],
            slow_start: words[14] != 0,
            stale: words[15],
            last: Level {
                latency: f64::from_bits(words[16]),
                in_flight: f64::from_bits(words[17]),
            },
        }
    }
}
