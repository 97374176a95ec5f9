//! [`MemoryBackend`]: a breaker's state in this process. Its state word
//! ([`word`]), how it admits ([`admission`]), records outcomes
//! ([`outcome`]) and changes state ([`transition`]) each have a file.

mod admission;
mod outcome;
mod transition;
mod word;

#[cfg(all(test, not(loom)))]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reflex_core::{BreakerState, Outcome, TransitionReason};
use tokio::time::Instant;

use self::word::{
    CLOSED, DISABLED, FORCED_OPEN, HALF_OPEN, METRICS_ONLY, OPEN, code, generation, pack, probes,
    saturate, state_of,
};
use crate::backend::{Backend, Refusal, Ticket, TicketKind};
use crate::config::BreakerConfig;
use crate::error::ManualStateError;
use crate::logs::KeyField;
use crate::loom::{AtomicU32, AtomicU64, Mutex, Ordering};
use crate::metrics::BreakerMetrics;
use crate::throttle::{On, Throttle};
use crate::window::Windows;

/// A breaker's state, in this process: the default [`Backend`].
///
/// The Closed path is lock-free: admission is one atomic load of the state
/// word and one of the throttle's switch, and recording a success one
/// `fetch_add` on a count window's cursor (plus a clock read for a time
/// window or a slow-call rate, and for the throttle's window while it is
/// on). Transitions (rare) take a small lock so the open deadline and the
/// window are set before the new state is seen. Half-open probes are
/// counted in the state word itself, so exactly the configured number get
/// through.
///
/// # Examples
///
/// ```
/// use reflex_breaker::{CircuitBreakLayer, MemoryBackend};
/// use reflex_core::BreakerState;
///
/// // What `build()` does: the state in this process.
/// let layer = CircuitBreakLayer::builder().build_with_backend(MemoryBackend::new)?;
/// assert_eq!(layer.handle().state(), BreakerState::Closed);
/// # Ok::<_, reflex_core::ConfigError>(())
/// ```
pub struct MemoryBackend {
    config: BreakerConfig,
    word: AtomicU64,
    /// Next to the word: both are read by every admission.
    throttle: Throttle,
    window: Option<Windows>,
    consecutive: AtomicU32,
    /// Nanoseconds since `base` when an open breaker may probe.
    open_until: AtomicU64,
    /// Nanoseconds since `base` of the last half-open progress: entering
    /// half-open, or a probe reporting without deciding.
    half_open_progress: AtomicU64,
    /// Opens since the breaker last closed: grows the open duration.
    opens_in_row: AtomicU32,
    rejected_total: AtomicU64,
    transitions_total: AtomicU64,
    base: Instant,
    transition: Mutex<()>,
    /// Whose transitions these are: the component's breaker, or one of a
    /// keyed layer's.
    scope: Scope,
}

/// Whose state a [`MemoryBackend`] keeps, which decides the signal its
/// transitions are reported as.
pub(crate) enum Scope {
    /// The component's breaker: [`Signal::BreakerTransition`](reflex_core::Signal::BreakerTransition).
    Component,
    /// One breaker of a keyed layer:
    /// [`Signal::KeyedBreakerTransition`](reflex_core::Signal::KeyedBreakerTransition),
    /// under the layer's component.
    Keyed {
        /// A field of the `tracing` events; `None` for the layer's default
        /// breaker.
        key: Option<Box<dyn fmt::Display + Send + Sync>>,
        /// The layer's count of closes, bumped when this breaker closes
        /// (a probe succeeded, or a reset): a closed breaker may be evicted,
        /// so the layer looks for one again.
        closes: Arc<std::sync::atomic::AtomicU64>,
    },
}

// === impl MemoryBackend ===

impl MemoryBackend {
    /// A Closed breaker with `config`.
    pub fn new(config: BreakerConfig) -> Self {
        Self::with_scope(config, Scope::Component)
    }

    /// A Closed breaker with `config`, reporting as `scope`.
    pub(crate) fn with_scope(config: BreakerConfig, scope: Scope) -> Self {
        let window = config.has_window().then(|| Windows::new(config.window()));
        Self {
            config,
            word: AtomicU64::new(pack(CLOSED, 0, 0)),
            throttle: Throttle::new(),
            window,
            consecutive: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            half_open_progress: AtomicU64::new(0),
            opens_in_row: AtomicU32::new(0),
            rejected_total: AtomicU64::new(0),
            transitions_total: AtomicU64::new(0),
            base: Instant::now(),
            transition: Mutex::new(()),
            scope,
        }
    }

    /// `true` when forgetting this breaker loses nothing a new one would
    /// not rebuild: Closed, or Open with its open duration over. Half-open
    /// breakers and the states set by hand are kept.
    pub(crate) fn evictable(&self) -> bool {
        match code(self.word.load(Ordering::Acquire)) {
            CLOSED => true,
            OPEN => self.now() >= self.open_until.load(Ordering::Acquire),
            _ => false,
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn now(&self) -> u64 {
        u64::try_from(
            Instant::now()
                .saturating_duration_since(self.base)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX)
    }

    /// For a keyed layer's breaker, its key as a `tracing` field (`None`
    /// within: the layer's default breaker); `None` for a component's.
    fn key(&self) -> Option<KeyField<'_>> {
        match &self.scope {
            Scope::Component => None,
            Scope::Keyed { key, .. } => Some(key.as_deref().map(tracing::field::display)),
        }
    }
}

impl Backend for MemoryBackend {
    #[inline]
    fn admit(&self) -> Result<Ticket, Refusal> {
        // The Closed path first, as one predictable branch.
        let word = self.word.load(Ordering::Acquire);
        if code(word) == CLOSED {
            return self.admit_closed(word);
        }
        self.admit_slow()
    }

    #[inline]
    fn record(&self, ticket: Ticket, outcome: Outcome, elapsed: Option<Duration>) {
        let kind = ticket.kind();
        if kind == TicketKind::Uncounted {
            return;
        }
        let slow = match (self.config.slow_call(), elapsed) {
            (Some((_, threshold)), Some(elapsed)) => elapsed >= threshold,
            _ => false,
        };
        if let Some(throttle) = self.throttle.on() {
            self.record_throttled(throttle, outcome);
        }
        match (kind, outcome) {
            (TicketKind::Probe, outcome) => self.record_probe(ticket, outcome, slow),
            (_, Outcome::Success) => self.record_counted(ticket, false, slow),
            (_, Outcome::Failure) => self.record_counted(ticket, true, slow),
            (_, Outcome::Ignored) => {}
        }
    }

    fn abandon(&self, ticket: Ticket) {
        if ticket.kind() != TicketKind::Probe {
            return;
        }
        loop {
            let word = self.word.load(Ordering::Acquire);
            if code(word) != HALF_OPEN || generation(word) != ticket.generation() {
                return;
            }
            if self.release_probe(word, 0) {
                // A dropped probe reported, in its way: the wait starts over.
                self.half_open_progress.store(self.now(), Ordering::Release);
                return;
            }
        }
    }

    fn needs_latency(&self) -> bool {
        self.config.needs_latency()
    }

    fn state(&self) -> BreakerState {
        state_of(code(self.word.load(Ordering::Acquire)))
    }

    fn metrics(&self) -> BreakerMetrics {
        let word = self.word.load(Ordering::Acquire);
        let totals = self
            .window
            .as_ref()
            .map(|window| window.totals(|| self.now()))
            .unwrap_or_default();
        let throttle = self.throttle.on();
        BreakerMetrics {
            state: state_of(code(word)),
            calls: saturate(totals.calls),
            failures: saturate(totals.failures),
            slow_calls: saturate(totals.slow),
            failure_rate: totals.failure_rate(),
            slow_call_rate: totals.slow_rate(),
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            probes_in_flight: if code(word) == HALF_OPEN {
                probes(word)
            } else {
                0
            },
            rejected_total: self.rejected_total.load(Ordering::Relaxed),
            throttle: throttle.map(On::k),
            throttle_probability: throttle.map(|on| on.probability_at(self.now())),
            throttled_total: self.throttle.throttled_total(),
            transitions_total: self.transitions_total.load(Ordering::Relaxed),
        }
    }

    fn set_state(&self, state: BreakerState) -> Result<(), ManualStateError> {
        let to = match state {
            BreakerState::Closed => CLOSED,
            BreakerState::ForcedOpen => FORCED_OPEN,
            BreakerState::Disabled => DISABLED,
            BreakerState::MetricsOnly => METRICS_ONLY,
            other => return Err(ManualStateError(other)),
        };
        let now = self.now();
        loop {
            let word = self.word.load(Ordering::Acquire);
            if self
                .transition(word, to, TransitionReason::Manual, now)
                .is_some()
            {
                return Ok(());
            }
        }
    }

    fn trip(&self) {
        let now = self.now();
        loop {
            let word = self.word.load(Ordering::Acquire);
            if code(word) != CLOSED {
                // Open or half-open: already refusing or probing. Set by
                // hand: the operator's.
                return;
            }
            if self
                .transition(word, OPEN, TransitionReason::Tripped, now)
                .is_some()
            {
                return;
            }
        }
    }

    fn set_throttle(&self, k: Option<f64>) {
        let before = self.throttle.set(k);
        if before == k {
            return;
        }
        self.config
            .logs
            .throttle(self.config.component(), self.key(), k);
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("component", self.config.component())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}
