//! [`LogLimit`]: how often a layer may write a log line of one sort, decided
//! with two atomics: no lock, no allocation, one thread at a time.
//!
//! A layer under overload refuses thousands of requests a second; one
//! `WARN` line per refusal would bury the log and cost more than the
//! refusal. So each refusal is a `DEBUG` event, and the layer adds a
//! summary ("shed 1234 requests in the last 10 s") at most once per
//! interval: the first refusal after a quiet interval writes it, with the
//! count of every refusal since the previous one. State changes (a breaker
//! that opens, a limit that changes) are logged each time, up to a few per
//! interval, so a flapping breaker cannot flood the log either: the ones
//! over the limit are counted, and the next line logged says how many were
//! left out.
//!
//! The time is the caller's: a [`Duration`] since an origin the caller
//! keeps (the layers read `tokio::time::Instant`, so a test on a paused
//! clock sees every line). Record only when the line's level is enabled
//! (check `tracing::enabled!` first), so that a disabled level costs
//! nothing but that check.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use reflex_core::log_limit::LogLimit;
//!
//! let sheds = LogLimit::summary();
//! let at = |secs| Duration::from_secs(secs);
//!
//! // The first refusal is logged at once...
//! let first = sheds.record(at(0)).unwrap();
//! assert_eq!((first.count, first.window), (1, at(0)));
//! // ...the next ones within the interval are only counted...
//! for _ in 0..999 {
//!     assert!(sheds.record(at(3)).is_none());
//! }
//! // ...and the first one after it writes the summary of all of them.
//! let summary = sheds.record(at(10)).unwrap();
//! assert_eq!((summary.count, summary.window), (1000, at(10)));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often a summary of refusals is written, at most:
/// [`LogLimit::summary`]'s interval.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// How many state changes of one component are logged per
/// [`SUMMARY_INTERVAL`], at most: [`LogLimit::changes`]' limit.
pub const CHANGES_PER_INTERVAL: u16 = 4;

/// Bits of the window word that count the lines logged in the window; the
/// bits above hold the window's start.
const COUNT_BITS: u32 = 16;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// The latest window start the word holds, in milliseconds (about 8900
/// years): a later time is taken as this one.
const MAX_MILLIS: u64 = (1 << (64 - COUNT_BITS)) - 2;

/// Lets through at most `per_interval` log lines per interval, and counts
/// the events in between. See the [module docs](self).
///
/// Cheap and shareable: `record` is a `fetch_add`, a load and, for the
/// line that is let through, a compare-and-swap and a swap. Exactly one
/// caller gets each line, however many race for it.
///
/// # Examples
///
/// A breaker that flaps: four changes are logged, then the rest of the
/// interval's are counted into the next line.
///
/// ```
/// use std::time::Duration;
/// use reflex_core::log_limit::LogLimit;
///
/// let changes = LogLimit::changes();
/// let now = Duration::from_secs(1);
/// let logged = (0..10).filter_map(|_| changes.record(now)).count();
/// assert_eq!(logged, 4);
///
/// let next = changes.record(now + Duration::from_secs(10)).unwrap();
/// assert_eq!(next.suppressed(), 6);
/// ```
#[derive(Debug)]
pub struct LogLimit {
    /// The current window's start in milliseconds since the caller's
    /// origin, plus one (`0`: no line yet), above [`COUNT_BITS`] bits of
    /// lines logged in it.
    window: AtomicU64,
    /// Events recorded since the last line let through.
    pending: AtomicU64,
    interval_millis: u64,
    per_interval: u16,
}

/// What the caller who got a line writes into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Logged {
    /// Events recorded since the line before, this one included. (Racing
    /// callers may count theirs into another's line: a line can say `0`
    /// when the line just before counted its event.)
    pub count: u64,
    /// The time `count` covers: since the window of the line before began
    /// (for a summary, one line per window: since the previous summary),
    /// or, for the first line, since the caller's origin.
    pub window: Duration,
}

// === impl LogLimit ===

impl LogLimit {
    /// At most `per_interval` lines per `interval` (a zero `per_interval`
    /// is taken as one; an interval is counted in whole milliseconds, at
    /// least one).
    pub const fn new(interval: Duration, per_interval: u16) -> Self {
        let millis = interval.as_millis();
        let interval_millis = if millis == 0 {
            1
        } else if millis > MAX_MILLIS as u128 {
            MAX_MILLIS
        } else {
            millis as u64
        };
        Self {
            window: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            interval_millis,
            per_interval: if per_interval == 0 { 1 } else { per_interval },
        }
    }

    /// One summary line per [`SUMMARY_INTERVAL`]: for refusals.
    pub const fn summary() -> Self {
        Self::new(SUMMARY_INTERVAL, 1)
    }

    /// [`CHANGES_PER_INTERVAL`] lines per [`SUMMARY_INTERVAL`]: for state
    /// changes.
    pub const fn changes() -> Self {
        Self::new(SUMMARY_INTERVAL, CHANGES_PER_INTERVAL)
    }

    /// Records one event at `now` (time since the caller's origin, never
    /// going back): `Some` when this caller writes the line, with what it
    /// says; `None` when the event is only counted.
    pub fn record(&self, now: Duration) -> Option<Logged> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let now = millis(now).min(MAX_MILLIS);
        let mut word = self.window.load(Ordering::Relaxed);
        loop {
            let start = word >> COUNT_BITS;
            let lines = word & COUNT_MASK;
            // `start` is the window's start plus one: `0` is none yet.
            let new_window = start == 0 || now >= (start - 1).saturating_add(self.interval_millis);
            let next = if new_window {
                ((now + 1) << COUNT_BITS) | 1
            } else if lines < u64::from(self.per_interval) {
                word + 1
            } else {
                return None;
            };
            match self
                .window
                .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    let previous = start.saturating_sub(1);
                    return Some(Logged {
                        count: self.pending.swap(0, Ordering::AcqRel),
                        window: Duration::from_millis(now.saturating_sub(previous)),
                    });
                }
                Err(actual) => word = actual,
            }
        }
    }
}

impl Default for LogLimit {
    /// [`LogLimit::summary`].
    fn default() -> Self {
        Self::summary()
    }
}

// === impl Logged ===

impl Logged {
    /// Events left out since the line before: all but this one.
    pub fn suppressed(&self) -> u64 {
        self.count.saturating_sub(1)
    }

    /// [`window`](Self::window) in whole milliseconds, as a log field.
    pub fn window_ms(&self) -> u64 {
        millis(self.window)
    }
}

/// A duration as the layers' log fields give one (`retry_after_ms`,
/// `window_ms`, …): whole milliseconds, rounded down, saturating.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_core::log_limit::millis;
///
/// assert_eq!(millis(Duration::from_micros(1500)), 1);
/// assert_eq!(millis(Duration::MAX), u64::MAX);
/// ```
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_summary_is_written_once_per_interval_with_every_event_counted() {
        let limit = LogLimit::summary();
        assert_eq!(limit.record(secs(0)).map(|l| l.count), Some(1));
        let counted = (0..10_000)
            .filter(|_| limit.record(secs(9)).is_some())
            .count();
        assert_eq!(counted, 0, "within the interval: counted only");
        let summary = limit.record(secs(10)).unwrap();
        assert_eq!(summary.count, 10_001);
        assert_eq!(summary.window, secs(10));
        // The window starts at the summary, not at a fixed grid.
        assert!(limit.record(secs(19)).is_none());
        assert_eq!(limit.record(secs(20)).map(|l| l.count), Some(2));
    }

    #[test]
    fn changes_are_let_through_up_to_the_limit_then_counted_into_the_next_line() {
        let limit = LogLimit::changes();
        let lines: Vec<_> = (0..6).filter_map(|_| limit.record(secs(5))).collect();
        assert_eq!(lines.len(), usize::from(CHANGES_PER_INTERVAL));
        assert!(lines.iter().all(|line| line.suppressed() == 0));
        let next = limit.record(secs(15)).unwrap();
        assert_eq!(next.suppressed(), 2);
        assert_eq!(next.window_ms(), 10_000);
    }

    #[test]
    fn the_first_line_covers_the_time_since_the_origin() {
        let limit = LogLimit::new(secs(1), 1);
        assert_eq!(limit.record(secs(7)).map(|l| l.window), Some(secs(7)));
        let limit = LogLimit::new(secs(1), 1);
        assert!(limit.record(Duration::ZERO).is_some());
        assert!(limit.record(Duration::from_millis(999)).is_none());
        assert!(limit.record(secs(1)).is_some());
    }

    #[test]
    fn degenerate_settings_still_let_lines_through() {
        let limit = LogLimit::new(Duration::ZERO, 0);
        assert!(limit.record(Duration::ZERO).is_some());
        assert!(
            limit.record(Duration::ZERO).is_none(),
            "one per millisecond"
        );
        assert!(limit.record(Duration::from_millis(1)).is_some());
        let forever = LogLimit::new(Duration::MAX, 1);
        assert!(forever.record(Duration::MAX).is_some());
        assert!(forever.record(Duration::MAX).is_none());
    }

    #[test]
    fn racing_threads_get_exactly_one_line_and_lose_no_event() {
        let limit = Arc::new(LogLimit::summary());
        let lines = Arc::new(AtomicUsize::new(0));
        let counted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (limit, lines, counted) = (limit.clone(), lines.clone(), counted.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if let Some(line) = limit.record(secs(1)) {
                            lines.fetch_add(1, Ordering::Relaxed);
                            counted.fetch_add(line.count, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(lines.load(Ordering::Relaxed), 1);
        let last = limit.record(secs(11)).unwrap();
        assert_eq!(counted.load(Ordering::Relaxed) + last.count, 40_001);
    }
}
