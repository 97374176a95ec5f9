//! [`Signal`]s: the structural events layers report, and the [`SignalSink`]
//! that hears them.
//!
//! A layer emits a signal when something worth knowing happens (a request
//! shed, a limit crossed, a breaker tripped). A witness implements
//! [`SignalSink`] and folds what it hears into per-component state off the
//! request path. A layer that was given no sink pays one branch per signal.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::Component;

/// A structural event reported by a layer.
///
/// Signals are small `Copy` values: emitting one allocates nothing. The
/// component that emitted it travels beside it, see [`SignalSink::emit`].
/// New variants arrive with new layers, so matches need a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signal {
    /// The shed layer refused a request: `in_flight` requests were running
    /// against a hard limit of `hard_limit`.
    Shed {
        /// Requests in flight when this one was refused.
        in_flight: usize,
        /// The hard limit in force.
        hard_limit: usize,
    },
    /// In-flight requests went above the soft limit. Emitted once per
    /// excursion: not again until [`Signal::SoftLimitRecovered`].
    SoftLimitExceeded {
        /// Requests in flight after the one that crossed.
        in_flight: usize,
        /// The soft limit in force.
        soft_limit: usize,
    },
    /// In-flight requests fell back to the soft limit's low-water mark,
    /// ending the excursion [`Signal::SoftLimitExceeded`] began.
    SoftLimitRecovered {
        /// Requests in flight after the one that ended.
        in_flight: usize,
        /// The soft limit in force.
        soft_limit: usize,
    },
    /// The shed layer's hard limit was changed through its handle.
    HardLimitChanged {
        /// The limit before.
        from: usize,
        /// The limit now.
        to: usize,
    },
    /// A request took its slot (at once, or after waiting in its queue).
    SlotStarted {
        /// `true` when it waited in the slot's queue first.
        waited: bool,
    },
    /// A request joined its slot's queue.
    SlotQueued {
        /// Requests waiting in that slot's queue, this one included.
        depth: usize,
    },
    /// A newer request replaced a running or waiting one, whose caller got
    /// `Rejected { Replaced }`.
    SlotReplaced {
        /// `true` when the replaced request was running (and was
        /// cancelled), `false` when it was waiting.
        was_running: bool,
    },
    /// A request waiting in its slot's queue left it without running: its
    /// caller dropped it (gave up, or a timeout above fired). Every request
    /// that joined a queue ([`Signal::SlotQueued`]) leaves it once: by
    /// [`Signal::SlotStarted`] with `waited`, by [`Signal::SlotReplaced`]
    /// with `was_running: false`, or by this.
    SlotAbandoned,
    /// A request was refused because its slot was busy (`DropIfRunning`).
    SlotBusy,
    /// A request was refused because its slot's queue, or the layer's
    /// bound on all waiting requests, was full.
    SlotQueueFull,
    /// A request joined an identical one in flight and will receive a copy
    /// of its answer instead of calling the inner service.
    Coalesced {
        /// Requests waiting on that call now, this one included.
        waiters: usize,
    },
    /// A request was answered from the dedup layer's cache.
    DedupCacheHit {
        /// `true` when the answer was past its TTL, served while a refresh
        /// of it ran.
        stale: bool,
    },
    /// The retry layer is about to try a request again.
    RetryAttempt {
        /// The attempt about to be made: 2 for the first retry.
        attempt: u32,
        /// How long it waits before that attempt.
        delay: Duration,
        /// What made the previous attempt worth retrying.
        reason: RetryReason,
    },
    /// A retry was wanted but the retry budget had none left: the caller
    /// got the last attempt's result.
    RetryBudgetExhausted {
        /// The attempt that was refused: 2 for the first retry.
        attempt: u32,
    },
    /// One key's breaker of a keyed circuit breaker layer changed state.
    ///
    /// Emitted under the layer's own component: the keys (hosts, tenants)
    /// are request data, so they never become components of their own,
    /// and one key's trip is not the component's breaker tripping.
    KeyedBreakerTransition {
        /// The state it left.
        from: BreakerState,
        /// The state it entered.
        to: BreakerState,
        /// Why.
        reason: TransitionReason,
    },
    /// A circuit breaker changed state.
    BreakerTransition {
        /// The state it left.
        from: BreakerState,
        /// The state it entered.
        to: BreakerState,
        /// Why.
        reason: TransitionReason,
    },
}

/// The state of a circuit breaker.
///
/// Closed admits, Open refuses, HalfOpen probes. The last three are set by
/// hand (through a breaker's handle) and stay until changed by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through and are counted; enough failures trip it open.
    Closed,
    /// Calls are refused at once until the open duration has passed.
    Open,
    /// A limited number of probe calls go through; their outcome closes or
    /// re-opens the breaker.
    HalfOpen,
    /// Set by hand: every call is refused until the breaker is reset.
    ForcedOpen,
    /// Set by hand: every call goes through and nothing is counted.
    Disabled,
    /// Set by hand: every call goes through and is counted, but the breaker
    /// never trips.
    MetricsOnly,
}

// === impl BreakerState ===

impl BreakerState {
    /// A short, stable, lowercase name, fit for metric labels and logs.
    ///
    /// ```
    /// assert_eq!(reflex_core::BreakerState::HalfOpen.as_str(), "half_open");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
            Self::MetricsOnly => "metrics_only",
        }
    }

    /// `true` for the states that refuse calls (`Open`, `ForcedOpen`).
    /// A HalfOpen breaker refuses only beyond its probes.
    pub fn refuses(self) -> bool {
        matches!(self, Self::Open | Self::ForcedOpen)
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a circuit breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// Too many failures in a row.
    ConsecutiveFailures,
    /// The failure rate over the window reached its threshold.
    FailureRate,
    /// The slow-call rate over the window reached its threshold.
    SlowCallRate,
    /// The open duration passed: time to probe.
    OpenDurationElapsed,
    /// Enough probes succeeded.
    ProbesSucceeded,
    /// A probe failed (or was slow).
    ProbeFailed,
    /// Probes were admitted but none reported within the half-open maximum
    /// wait: the breaker re-opened rather than stay stuck.
    HalfOpenTimeout,
    /// Changed by hand through a handle (force, disable, reset, …).
    Manual,
    /// Opened from outside (a witness's reflex, an operator) through
    /// `BreakerControl::trip`, as if a trip condition had held: the open
    /// duration runs, then half-open probes decide recovery. Unlike
    /// [`Manual`](Self::Manual) ForcedOpen, no one has to reset it.
    Tripped,
}

// === impl TransitionReason ===

impl TransitionReason {
    /// A short, stable, lowercase name, fit for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::FailureRate => "failure_rate",
            Self::SlowCallRate => "slow_call_rate",
            Self::OpenDurationElapsed => "open_duration_elapsed",
            Self::ProbesSucceeded => "probes_succeeded",
            Self::ProbeFailed => "probe_failed",
            Self::HalfOpenTimeout => "half_open_timeout",
            Self::Manual => "manual",
            Self::Tripped => "tripped",
        }
    }
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the retry layer retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryReason {
    /// The attempt ended in an error the policy retries.
    Error,
    /// The attempt's response was a failure the policy retries.
    Response,
    /// The response said when to retry (`Retry-After`), and the delay is
    /// what it said.
    RetryAfter,
    /// The attempt ran out of its per-attempt time.
    AttemptTimeout,
    /// A circuit breaker below refused the attempt, and the delay is the
    /// time until it probes.
    CircuitOpen,
}

// === impl RetryReason ===

impl RetryReason {
    /// A short, stable, lowercase name, fit for metric labels and logs.
    ///
    /// ```
    /// assert_eq!(reflex_core::RetryReason::RetryAfter.as_str(), "retry_after");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Response => "response",
            Self::RetryAfter => "retry_after",
            Self::AttemptTimeout => "attempt_timeout",
            Self::CircuitOpen => "circuit_open",
        }
    }
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hears the [`Signal`]s of the layers it was given to.
///
/// `emit` runs on the request path of whichever request caused the signal:
/// it must cost a few atomics at most, never a lock, an allocation or a wait.
/// Defer analysis to a task of your own.
///
/// Layers never emit while holding a lock of their own, so a sink may read
/// or steer the layers it hears from through their handles (a reflex that
/// forces a breaker open on a signal does not deadlock it).
///
/// # Examples
///
/// A sink that counts sheds:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use reflex_core::{Component, Signal, SignalSink};
///
/// #[derive(Debug, Default)]
/// struct CountSheds(AtomicU64);
///
/// impl SignalSink for CountSheds {
///     fn emit(&self, _component: &Component, signal: Signal) {
///         if let Signal::Shed { .. } = signal {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let sink = CountSheds::default();
/// sink.emit(&Component::new("db"), Signal::Shed { in_flight: 8, hard_limit: 8 });
/// assert_eq!(sink.0.load(Ordering::Relaxed), 1);
/// ```
pub trait SignalSink: Send + Sync + 'static {
    /// Hears one signal of `component`'s stack.
    fn emit(&self, component: &Component, signal: Signal);
}

impl<T: SignalSink + ?Sized> SignalSink for Arc<T> {
    fn emit(&self, component: &Component, signal: Signal) {
        (**self).emit(component, signal);
    }
}

/// Where a layer sends its signals: one [`SignalSink`], or nowhere.
///
/// Layers keep a `Sink` in their shared state; builders fill it from their
/// `.sink(..)` setter. The default sends nowhere, at the cost of one branch.
///
/// # Clone
///
/// Clones send to the same sink (a reference count, no copy of it).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use reflex_core::{signal::Recorder, Component, Signal, Sink};
///
/// let recorder = Arc::new(Recorder::default());
/// let sink = Sink::new(recorder.clone());
/// sink.emit(&Component::new("db"), Signal::HardLimitChanged { from: 4, to: 2 });
/// assert_eq!(recorder.signals().len(), 1);
///
/// Sink::none().emit(&Component::new("db"), Signal::HardLimitChanged { from: 4, to: 2 });
/// ```
#[derive(Clone, Default)]
pub struct Sink(Option<Arc<dyn SignalSink>>);

// === impl Sink ===

impl Sink {
    /// Sends signals to `sink`.
    pub fn new(sink: impl SignalSink) -> Self {
        Self(Some(Arc::new(sink)))
    }

    /// Sends signals nowhere.
    pub fn none() -> Self {
        Self(None)
    }

    /// `true` when signals go somewhere.
    pub fn is_active(&self) -> bool {
        self.0.is_some()
    }

    /// Sends `signal` of `component`'s stack to the sink, if any.
    #[inline]
    pub fn emit(&self, component: &Component, signal: Signal) {
        if let Some(sink) = &self.0 {
            sink.emit(component, signal);
        }
    }
}

impl From<Arc<dyn SignalSink>> for Sink {
    fn from(sink: Arc<dyn SignalSink>) -> Self {
        Self(Some(sink))
    }
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Sink")
            .field(&if self.is_active() { "active" } else { "none" })
            .finish()
    }
}

/// A sink that keeps the most recent signals in memory, for tests, examples
/// and debugging.
///
/// It takes a lock on every signal: do not put it in front of production
/// traffic; use a witness there. It keeps at most `capacity` signals and
/// forgets the oldest beyond that.
///
/// # Examples
///
/// ```
/// use reflex_core::{signal::Recorder, Component, Signal, SignalSink};
///
/// let recorder = Recorder::with_capacity(1);
/// let db = Component::new("db");
/// recorder.emit(&db, Signal::HardLimitChanged { from: 4, to: 2 });
/// recorder.emit(&db, Signal::HardLimitChanged { from: 2, to: 3 });
/// assert_eq!(
///     recorder.signals(),
///     vec![(db, Signal::HardLimitChanged { from: 2, to: 3 })],
/// );
/// ```
#[derive(Debug)]
pub struct Recorder {
    capacity: usize,
    signals: Mutex<VecDeque<(Component, Signal)>>,
}

// === impl Recorder ===

impl Recorder {
    /// A recorder that keeps at most `capacity` signals (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            signals: Mutex::new(VecDeque::new()),
        }
    }

    /// The signals kept, oldest first.
    pub fn signals(&self) -> Vec<(Component, Signal)> {
        let signals = self.signals.lock().unwrap_or_else(PoisonError::into_inner);
        signals.iter().cloned().collect()
    }

    /// Forgets every signal kept so far.
    pub fn clear(&self) {
        self.signals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Default for Recorder {
    /// A recorder that keeps the last 1024 signals.
    fn default() -> Self {
        Self::with_capacity(1024)
    }
}

impl SignalSink for Recorder {
    fn emit(&self, component: &Component, signal: Signal) {
        let mut signals = self.signals.lock().unwrap_or_else(PoisonError::into_inner);
        if signals.len() == self.capacity {
            signals.pop_front();
        }
        signals.push_back((component.clone(), signal));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_forgets_the_oldest_beyond_its_capacity() {
        let recorder = Recorder::with_capacity(3);
        let c = Component::new("c");
        for to in 0..10 {
            recorder.emit(&c, Signal::HardLimitChanged { from: 0, to });
        }
        let kept: Vec<_> = recorder
            .signals()
            .into_iter()
            .map(|(_, s)| match s {
                Signal::HardLimitChanged { to, .. } => to,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kept, vec![7, 8, 9]);
        recorder.clear();
        assert!(recorder.signals().is_empty());
    }

    #[test]
    fn a_sink_of_none_is_inactive_and_an_arc_sink_forwards() {
        assert!(!Sink::none().is_active());
        let recorder = Arc::new(Recorder::default());
        let as_dyn: Arc<dyn SignalSink> = recorder.clone();
        let sink = Sink::from(as_dyn);
        assert!(sink.is_active());
        sink.emit(
            &Component::new("x"),
            Signal::Shed {
                in_flight: 1,
                hard_limit: 1,
            },
        );
        assert_eq!(recorder.signals().len(), 1);
    }
}
