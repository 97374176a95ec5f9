//! [`Backend`]: where a breaker's state lives.

use std::time::Duration;

use reflex_core::{BreakerState, Outcome};

use crate::error::ManualStateError;
use crate::metrics::BreakerMetrics;

/// Where a breaker's state lives, and what decides admission.
///
/// [`MemoryBackend`](crate::MemoryBackend), the default, keeps it in this
/// process, lock-free on the Closed path. A backend shared between replicas
/// (Redis, later) implements the same trait: its methods are synchronous
/// because they run on every request, so such a backend decides from a local
/// view and reconciles with the shared store off the request path.
///
/// The layer calls [`admit`](Self::admit) once per request, then exactly
/// one of [`record`](Self::record) (the call finished) or
/// [`abandon`](Self::abandon) (its future was dropped first) with the
/// ticket `admit` gave.
pub trait Backend: Send + Sync + 'static {
    /// Admits a call, or refuses it.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] when the breaker is open, forced open, or half-open
    /// with every probe taken; a [`Refusal::throttled`] when its throttle
    /// refused the call.
    fn admit(&self) -> Result<Ticket, Refusal>;

    /// The call admitted with `ticket` finished: `outcome`, after `elapsed`
    /// (measured only when [`needs_latency`](Self::needs_latency) says so).
    fn record(&self, ticket: Ticket, outcome: Outcome, elapsed: Option<Duration>);

    /// The call admitted with `ticket` was dropped before it finished: it
    /// counts for nothing, but gives back its probe slot if it had one.
    fn abandon(&self, ticket: Ticket);

    /// `true` when [`record`](Self::record) wants the call's latency (a
    /// slow-call rate is configured); otherwise the layer reads no clock.
    fn needs_latency(&self) -> bool;

    /// The state now.
    fn state(&self) -> BreakerState;

    /// Counts and rates now.
    fn metrics(&self) -> BreakerMetrics;

    /// Sets the state by hand: `Closed` (a reset: counts cleared, open
    /// duration back to its base), `ForcedOpen`, `Disabled` or
    /// `MetricsOnly`. `Open` and `HalfOpen` are the breaker's own to enter.
    ///
    /// # Errors
    ///
    /// When asked for `Open` or `HalfOpen`; the state is left as it was.
    fn set_state(&self, state: BreakerState) -> Result<(), ManualStateError>;

    /// Opens a Closed breaker now, as if a trip condition had held (its
    /// open duration, then probes), with
    /// [`TransitionReason::Tripped`](reflex_core::TransitionReason::Tripped).
    /// Any other state is left as it is.
    fn trip(&self);

    /// Throttles a Closed breaker's admissions with multiplier `k`, or
    /// stops (`None`); see [`BreakerHandle::throttle`](crate::BreakerHandle::throttle).
    /// `k` is finite and at least 1: the handle refuses any other.
    fn set_throttle(&self, k: Option<f64>);
}

/// What [`Backend::admit`] gives an admitted call, to hand back with its
/// outcome. One word, so admission returns in registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// `generation << 2 | kind`.
    bits: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketKind {
    /// Admitted while Closed or MetricsOnly: counted.
    Counted = 0,
    /// Admitted as a half-open probe: holds a probe slot.
    Probe = 1,
    /// Admitted while Disabled: counted nowhere.
    Uncounted = 2,
}

// === impl Ticket ===

impl Ticket {
    /// A ticket for a backend of your own: `generation` is yours to use, for
    /// example to ignore outcomes of calls admitted before a transition.
    pub fn new(generation: u32, probe: bool) -> Self {
        Self::with(
            generation,
            if probe {
                TicketKind::Probe
            } else {
                TicketKind::Counted
            },
        )
    }

    pub(crate) fn with(generation: u32, kind: TicketKind) -> Self {
        Self {
            bits: u64::from(generation) << 2 | kind as u64,
        }
    }

    pub(crate) fn kind(self) -> TicketKind {
        match self.bits & 3 {
            0 => TicketKind::Counted,
            1 => TicketKind::Probe,
            _ => TicketKind::Uncounted,
        }
    }

    /// The generation the ticket was issued in.
    pub fn generation(self) -> u32 {
        (self.bits >> 2) as u32
    }

    /// `true` when the call is a half-open probe.
    pub fn is_probe(self) -> bool {
        self.kind() == TicketKind::Probe
    }
}

/// Why [`Backend::admit`] refused a call: the breaker is open (or forced
/// open, or half-open with every probe out), or its throttle refused it.
/// Two words, so admission returns in registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Nanoseconds until the breaker probes again; `u64::MAX`: unknown.
    retry_after_nanos: u64,
    throttled: bool,
}

// === impl Refusal ===

impl Refusal {
    /// A refusal because the breaker is open, telling the caller when to
    /// try again, if known. A `retry_after` is kept to the nanosecond up to
    /// `u64::MAX − 1` ns (about 584 years) and saturates there.
    pub fn new(retry_after: Option<Duration>) -> Self {
        Self {
            retry_after_nanos: retry_after.map_or(u64::MAX, |after| {
                // u64::MAX itself means "unknown".
                u64::try_from(after.as_nanos())
                    .map_or(u64::MAX - 1, |nanos| nanos.min(u64::MAX - 1))
            }),
            throttled: false,
        }
    }

    /// A refusal by the breaker's throttle: the layer answers it with
    /// [`RejectKind::Throttled`](reflex_core::RejectKind::Throttled)
    /// instead of `CircuitOpen`. `retry_after` as for [`new`](Self::new).
    pub fn throttled(retry_after: Option<Duration>) -> Self {
        Self {
            throttled: true,
            ..Self::new(retry_after)
        }
    }

    /// Time left until the breaker probes again, when it knows.
    pub fn retry_after(self) -> Option<Duration> {
        (self.retry_after_nanos != u64::MAX).then(|| Duration::from_nanos(self.retry_after_nanos))
    }

    /// `true` when the throttle refused the call, not an open breaker.
    pub fn is_throttled(self) -> bool {
        self.throttled
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_keeps_a_known_retry_after_however_long() {
        for (after, kept) in [
            (Duration::ZERO, Duration::ZERO),
            (Duration::from_secs(30), Duration::from_secs(30)),
            // u64::MAX ns is the "unknown" mark: one nanosecond less.
            (
                Duration::from_nanos(u64::MAX),
                Duration::from_nanos(u64::MAX - 1),
            ),
            (
                Duration::from_nanos(u64::MAX - 1),
                Duration::from_nanos(u64::MAX - 1),
            ),
            (Duration::MAX, Duration::from_nanos(u64::MAX - 1)),
        ] {
            assert_eq!(
                Refusal::new(Some(after)).retry_after(),
                Some(kept),
                "{after:?}"
            );
        }
        assert_eq!(Refusal::new(None).retry_after(), None);
    }

    #[test]
    fn a_throttled_refusal_says_so_and_keeps_its_retry_after() {
        let refusal = Refusal::throttled(Some(Duration::from_millis(250)));
        assert!(refusal.is_throttled());
        assert_eq!(refusal.retry_after(), Some(Duration::from_millis(250)));
        assert!(!Refusal::new(None).is_throttled());
    }

    #[test]
    fn admission_returns_in_two_words() {
        assert!(std::mem::size_of::<Result<Ticket, Refusal>>() <= 16);
    }
}
