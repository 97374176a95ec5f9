//! [`BreakerConfig`]: a validated breaker configuration.

use std::sync::Arc;
use std::time::Duration;

use reflex_core::{Component, Sink};

use crate::logs::Logs;

pub(crate) const LAYER: &str = "breaker";

/// The most calls a count-based window holds.
pub const MAX_WINDOW_CALLS: u32 = 1 << 20;
/// The most buckets a time-based window has.
pub const MAX_WINDOW_BUCKETS: u32 = 1000;
/// The most probes a half-open breaker admits at once.
pub const MAX_PROBES: u32 = (1 << 15) - 1;

/// Which recent calls the rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `calls` calls, exactly.
    Count {
        /// How many calls.
        calls: u32,
    },
    /// The calls of the last `length`, in `buckets` buckets: a bucket drops
    /// out of the window whole, so the window covers between
    /// `length - length / buckets` and `length`.
    ///
    /// Any length is taken as given, up to [`Duration::MAX`]. A bucket is
    /// counted in nanoseconds in a `u64`, as is the breaker's clock (since
    /// it was built): a bucket longer than that (about 584 years) outlasts
    /// the clock, so the window holds every call, as its length says.
    Time {
        /// How far back.
        length: Duration,
        /// In how many buckets.
        buckets: u32,
    },
}

/// A breaker's configuration, validated. Built by
/// [`CircuitBreakBuilder`](crate::CircuitBreakBuilder); a custom
/// [`Backend`](crate::Backend) is built from it.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    pub(crate) component: Component,
    pub(crate) sink: Sink,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) failure_rate: Option<f64>,
    pub(crate) slow_call: Option<(f64, Duration)>,
    pub(crate) window: Window,
    pub(crate) minimum_calls: u32,
    pub(crate) open_duration: Duration,
    pub(crate) open_backoff: Option<(f64, Duration)>,
    pub(crate) probes: u32,
    pub(crate) probe_successes: u32,
    pub(crate) half_open_max_wait: Duration,
    pub(crate) count_echoes: bool,
    /// Not a setting: the log limiters of the layer built from it, shared
    /// by every breaker it makes (every key's).
    pub(crate) logs: Arc<Logs>,
}

// === impl BreakerConfig ===

impl BreakerConfig {
    /// The component the breaker guards.
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// Where transitions are reported.
    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    /// Trip after this many failures in a row, if set.
    pub fn consecutive_failures(&self) -> Option<u32> {
        self.consecutive_failures
    }

    /// Trip when the failure rate over the window reaches this, if set.
    pub fn failure_rate(&self) -> Option<f64> {
        self.failure_rate
    }

    /// Trip when the rate of calls at least this slow reaches the
    /// threshold, if set: `(threshold, duration)`.
    pub fn slow_call(&self) -> Option<(f64, Duration)> {
        self.slow_call
    }

    /// The window the rates are computed over.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Rates trip only once the window holds this many calls.
    pub fn minimum_calls(&self) -> u32 {
        self.minimum_calls
    }

    /// How long the breaker stays open before it probes, the first time.
    pub fn open_duration(&self) -> Duration {
        self.open_duration
    }

    /// The open duration grows by this factor on each re-open without a
    /// close in between, up to this cap, if set.
    pub fn open_backoff(&self) -> Option<(f64, Duration)> {
        self.open_backoff
    }

    /// Probe calls admitted at once while half-open.
    pub fn probes(&self) -> u32 {
        self.probes
    }

    /// Successful probes that close the breaker.
    pub fn probe_successes(&self) -> u32 {
        self.probe_successes
    }

    /// How long a half-open breaker with every probe taken waits for one to
    /// report before it re-opens.
    pub fn half_open_max_wait(&self) -> Duration {
        self.half_open_max_wait
    }

    /// `true` when a failure counts even if a call below it failed
    /// meanwhile (an echo); `false` (the default) when echoes are ignored.
    pub fn count_echoes(&self) -> bool {
        self.count_echoes
    }

    /// The open duration after `opens` opens in a row (1 for the first):
    /// `open_duration × factor^(opens − 1)`, at most the cap, never below
    /// `open_duration`, whatever the numbers (an overflow is the cap).
    pub(crate) fn open_duration_after(&self, opens: u32) -> Duration {
        match self.open_backoff {
            // The first open is the open duration itself, not its f64 image.
            None => self.open_duration,
            Some(_) if opens <= 1 => self.open_duration,
            Some((factor, cap)) => {
                let exponent = i32::try_from(opens.saturating_sub(1)).unwrap_or(i32::MAX);
                let grown = self.open_duration.as_secs_f64() * factor.powi(exponent);
                // Not a number, infinite, or past what a Duration holds: the
                // cap. Rounding through f64 may land a hair outside the
                // bounds: clamp.
                Duration::try_from_secs_f64(grown)
                    .map_or(cap, |grown| grown.min(cap))
                    .max(self.open_duration)
            }
        }
    }

    /// `true` when calls' latencies are needed (slow-call rate configured).
    pub(crate) fn needs_latency(&self) -> bool {
        self.slow_call.is_some()
    }

    /// `true` when a window must record every call.
    pub(crate) fn has_window(&self) -> bool {
        self.failure_rate.is_some() || self.slow_call.is_some()
    }
}

/// The configuration the unit tests and loom models start from: trips on
/// the first failure (no rate rule), admits one probe and closes on its
/// success, waits up to an hour for a probe to report, and stays open
/// `open_duration` every time. Not validated: a model may open for zero.
#[cfg(test)]
impl BreakerConfig {
    pub(crate) fn trips_on_first_failure(open_duration: Duration) -> Self {
        Self {
            component: Component::default(),
            sink: Sink::none(),
            consecutive_failures: Some(1),
            failure_rate: None,
            slow_call: None,
            window: Window::Count { calls: 1 },
            minimum_calls: 1,
            open_duration,
            open_backoff: None,
            probes: 1,
            probe_successes: 1,
            half_open_max_wait: Duration::from_secs(3600),
            count_echoes: false,
            logs: Arc::new(Logs::new()),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn with_backoff(open: Duration, factor: f64, cap: Duration) -> BreakerConfig {
        BreakerConfig {
            open_backoff: Some((factor, cap)),
            ..BreakerConfig::trips_on_first_failure(open)
        }
        .validate()
        .expect("valid")
    }

    #[test]
    fn the_open_duration_never_shrinks_however_many_opens_in_a_row() {
        let config = with_backoff(Duration::from_secs(30), 2.0, Duration::from_secs(120));
        // Cast to i32, opens past 2^31 made a negative exponent: 7.5 s.
        for opens in [1 << 31, (1 << 31) + 2, u32::MAX - 1, u32::MAX] {
            assert_eq!(
                config.open_duration_after(opens),
                Duration::from_secs(120),
                "after {opens} opens"
            );
        }
        let flat = with_backoff(Duration::from_secs(30), 1.0, Duration::from_secs(30));
        assert_eq!(flat.open_duration_after(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn an_open_duration_grown_past_what_a_duration_holds_is_the_cap() {
        for (open, factor, cap) in [
            (Duration::from_secs(1 << 63), f64::MAX, Duration::MAX),
            (Duration::from_secs(1 << 63), 2.0, Duration::MAX),
            (Duration::MAX, 1.0, Duration::MAX),
            (Duration::MAX, f64::MAX, Duration::MAX),
            (Duration::from_nanos(1), f64::MAX, Duration::MAX),
            (
                Duration::from_secs(u64::MAX - 5000),
                1.0 + f64::EPSILON,
                Duration::MAX,
            ),
        ] {
            let config = with_backoff(open, factor, cap);
            assert_eq!(config.open_duration_after(1), open, "{open:?} × {factor}");
            for opens in [2, 3, 64, 1025, u32::MAX] {
                let grown = config.open_duration_after(opens);
                assert!(
                    grown >= open && grown <= cap,
                    "{open:?} × {factor}^{opens}: {grown:?}"
                );
            }
        }
    }
}
