//! What the breakers of a fleet say to each other, how their fleet window
//! is cut into buckets, and when the fleet's counts trip: the pieces that
//! need no server (the Lua in `store.rs` mirrors [`FleetWindow`]).

use std::time::Duration;

use reflex_breaker::Window;

use crate::keys::escape;

/// A breaker's news on the fleet's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// The sender's breaker opened: every Closed breaker opens.
    Open,
    /// The sender's probes succeeded: every Open or HalfOpen breaker
    /// closes.
    Close,
}

impl Event {
    pub(crate) fn parse(body: &str) -> Option<Self> {
        match body {
            "open" => Some(Self::Open),
            "close" => Some(Self::Close),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Close => "close",
        }
    }
}

/// The scope of a component's breaker messages: `cb:` and its escaped
/// name (no `|`, so it cannot break a message's fields).
pub(crate) fn scope(component: &str) -> String {
    format!("cb:{}", escape(component))
}

/// The window a count-based breaker's fleet rate is judged over: counts
/// cannot be ordered across replicas, so the fleet counts time instead.
pub(crate) const COUNT_WINDOW_LENGTH: Duration = Duration::from_secs(10);
/// The buckets of that window.
pub(crate) const COUNT_WINDOW_BUCKETS: u32 = 10;
/// The most buckets a fleet window has (each is a hash field read at
/// every flush).
pub(crate) const MAX_FLEET_BUCKETS: u32 = 60;
/// The longest fleet window.
pub(crate) const MAX_FLEET_WINDOW: Duration = Duration::from_secs(3600);
/// The longest a key lives (an open key, a lease): 30 days.
pub(crate) const MAX_KEY_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// A fleet window: `buckets` buckets of `bucket_ms` milliseconds of
/// Redis's clock, the current one included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FleetWindow {
    pub(crate) bucket_ms: u64,
    pub(crate) buckets: u32,
}

impl FleetWindow {
    /// The fleet window of a breaker's window: a time window as given
    /// (at most [`MAX_FLEET_WINDOW`] long, in at most [`MAX_FLEET_BUCKETS`]
    /// buckets of at least 1 ms); a count window as
    /// [`COUNT_WINDOW_LENGTH`] in [`COUNT_WINDOW_BUCKETS`].
    pub(crate) fn of(window: Window) -> Self {
        let (length, buckets) = match window {
            Window::Count { .. } => (COUNT_WINDOW_LENGTH, COUNT_WINDOW_BUCKETS),
            Window::Time { length, buckets } => (length.min(MAX_FLEET_WINDOW), buckets),
        };
        let buckets = buckets.clamp(1, MAX_FLEET_BUCKETS);
        let length_ms = u64::try_from(length.as_millis()).unwrap_or(u64::MAX);
        Self {
            bucket_ms: (length_ms / u64::from(buckets)).max(1),
            buckets,
        }
    }

    /// The bucket Redis's clock at `now_ms` falls in (as the flush script
    /// computes it: kept here to test the arithmetic).
    #[cfg(test)]
    pub(crate) fn bucket_of(self, now_ms: u64) -> u64 {
        now_ms / self.bucket_ms
    }

    /// `true` when `bucket` is in the window whose newest bucket is
    /// `current`: neither older than the window nor ahead of the clock (as
    /// the flush script decides it).
    #[cfg(test)]
    pub(crate) fn is_live(self, bucket: u64, current: u64) -> bool {
        bucket <= current && bucket + u64::from(self.buckets) > current
    }

    /// How long the window's key outlives its last write: the window and
    /// one bucket more.
    pub(crate) fn expiry_ms(self) -> u64 {
        self.bucket_ms
            .saturating_mul(u64::from(self.buckets) + 1)
            .min(MAX_KEY_TTL_MS)
    }
}

/// The fleet's counts over its window, as the flush script returns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FleetCounts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// What trips a breaker on the fleet's counts: the breaker's own rate
/// rules, applied to them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RateRule {
    pub(crate) minimum_calls: u64,
    pub(crate) failure_rate: Option<f64>,
    pub(crate) slow_rate: Option<f64>,
}

impl RateRule {
    /// `true` when `counts` hold at least the minimum of calls and a rate
    /// reaches its threshold.
    pub(crate) fn trips(self, counts: FleetCounts) -> bool {
        if counts.calls == 0 || counts.calls < self.minimum_calls {
            return false;
        }
        let rate = |n: u64| n as f64 / counts.calls as f64;
        self.failure_rate
            .is_some_and(|threshold| rate(counts.failures) >= threshold)
            || self
                .slow_rate
                .is_some_and(|threshold| rate(counts.slow) >= threshold)
    }
}

/// `duration` in whole milliseconds, between 1 and [`MAX_KEY_TTL_MS`]:
/// what a `PX` takes.
pub(crate) fn ttl_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_KEY_TTL_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_back_from_their_text_and_nothing_else() {
        for event in [Event::Open, Event::Close] {
            assert_eq!(Event::parse(event.as_str()), Some(event));
        }
        for other in ["", "OPEN", "open ", "closed", "open|x"] {
            assert_eq!(Event::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn a_scope_never_holds_the_field_separator() {
        assert_eq!(scope("db"), "cb:db");
        assert!(!scope("a|b{c}").contains(['|', '{', '}']));
    }

    #[test]
    fn a_time_window_keeps_its_buckets_and_a_count_window_gets_ten_seconds() {
        let time = FleetWindow::of(Window::Time {
            length: Duration::from_secs(30),
            buckets: 10,
        });
        assert_eq!((time.bucket_ms, time.buckets), (3000, 10));
        let count = FleetWindow::of(Window::Count { calls: 100 });
        assert_eq!((count.bucket_ms, count.buckets), (1000, 10));
    }

    #[test]
    fn any_window_makes_buckets_of_at_least_a_millisecond_and_a_bounded_expiry() {
        for (length, buckets) in [
            (Duration::ZERO, 1),
            (Duration::from_nanos(1), 1000),
            (Duration::MAX, 1000),
            (Duration::MAX, 0),
            (Duration::from_millis(5), 1000),
        ] {
            let window = FleetWindow::of(Window::Time { length, buckets });
            assert!(window.bucket_ms >= 1, "{length:?}/{buckets}");
            assert!((1..=MAX_FLEET_BUCKETS).contains(&window.buckets));
            assert!(window.bucket_ms * u64::from(window.buckets) <= 3_600_000);
            assert!(window.expiry_ms() > window.bucket_ms);
            assert!(window.expiry_ms() <= MAX_KEY_TTL_MS);
        }
    }

    #[test]
    fn a_bucket_is_live_for_the_windows_length_and_never_ahead_of_the_clock() {
        let window = FleetWindow {
            bucket_ms: 100,
            buckets: 3,
        };
        assert_eq!(window.bucket_of(12_345), 123);
        let current = 123;
        assert!(window.is_live(123, current));
        assert!(window.is_live(121, current));
        assert!(!window.is_live(120, current), "three buckets back is out");
        assert!(!window.is_live(124, current), "ahead of the clock");
        assert!(window.is_live(0, 0));
    }

    #[test]
    fn the_fleet_trips_only_with_the_minimum_of_calls_and_a_rate_at_its_threshold() {
        let rule = RateRule {
            minimum_calls: 30,
            failure_rate: Some(0.5),
            slow_rate: None,
        };
        let counts = |calls, failures, slow| FleetCounts {
            calls,
            failures,
            slow,
        };
        assert!(rule.trips(counts(45, 27, 0)));
        assert!(rule.trips(counts(30, 15, 0)), "at the threshold");
        assert!(!rule.trips(counts(29, 29, 0)), "under the minimum");
        assert!(!rule.trips(counts(45, 22, 45)), "no slow rule");
        let slow = RateRule {
            minimum_calls: 0,
            failure_rate: None,
            slow_rate: Some(0.8),
        };
        assert!(slow.trips(counts(10, 0, 8)));
        assert!(!slow.trips(counts(0, 0, 0)), "no calls, no rate");
    }

    #[test]
    fn a_ttl_is_at_least_a_millisecond_and_at_most_thirty_days() {
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_millis(250)), 250);
        assert_eq!(ttl_ms(Duration::MAX), MAX_KEY_TTL_MS);
    }
}
