//! [`MemoryBackend`]: a breaker's state in this process.

use std::fmt;
use std::time::Duration;

use reflex_core::{BreakerState, Outcome, Signal, TransitionReason};
use tokio::time::Instant;

use crate::backend::{Backend, ManualStateError, Metrics, Refusal, Ticket, TicketKind};
use crate::config::BreakerConfig;
use crate::loom::{AtomicU32, AtomicU64, Mutex, Ordering};
use crate::throttle::{self, Throttle};
use crate::window::{Sample, Totals, Windows};

// The state word: what admission decides on, in one atomic.
//
//  63          33 32          18 17           3 2    0
// [  generation  | probe wins   | probes out   | code ]
const CODE_BITS: u32 = 3;
const COUNT_BITS: u32 = 15;
const PROBES_SHIFT: u32 = CODE_BITS;
const WINS_SHIFT: u32 = CODE_BITS + COUNT_BITS;
const GEN_SHIFT: u32 = CODE_BITS + 2 * COUNT_BITS;
const CODE_MASK: u64 = (1 << CODE_BITS) - 1;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const GEN_MASK: u64 = (1 << (64 - GEN_SHIFT)) - 1;
const ONE_PROBE: u64 = 1 << PROBES_SHIFT;
const ONE_WIN: u64 = 1 << WINS_SHIFT;

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const FORCED_OPEN: u64 = 3;
const DISABLED: u64 = 4;
const METRICS_ONLY: u64 = 5;

fn code(word: u64) -> u64 {
    word & CODE_MASK
}

fn probes(word: u64) -> u32 {
    (word >> PROBES_SHIFT & COUNT_MASK) as u32
}

fn wins(word: u64) -> u32 {
    (word >> WINS_SHIFT & COUNT_MASK) as u32
}

fn generation(word: u64) -> u32 {
    (word >> GEN_SHIFT) as u32
}

fn pack(code: u64, generation: u32, probes: u32) -> u64 {
    code | u64::from(probes) << PROBES_SHIFT | (u64::from(generation) & GEN_MASK) << GEN_SHIFT
}

fn next_generation(word: u64) -> u32 {
    ((u64::from(generation(word)) + 1) & GEN_MASK) as u32
}

fn saturate(count: u64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn state_of(code: u64) -> BreakerState {
    match code {
        CLOSED => BreakerState::Closed,
        OPEN => BreakerState::Open,
        HALF_OPEN => BreakerState::HalfOpen,
        FORCED_OPEN => BreakerState::ForcedOpen,
        DISABLED => BreakerState::Disabled,
        _ => BreakerState::MetricsOnly,
    }
}

/// A breaker's state, in this process: the default [`Backend`].
///
/// The Closed path is lock-free: admission is one atomic load of the state
/// word and one of the throttle's switch, and recording a success one
/// `fetch_add` on a count window's cursor (plus a clock read for a time
/// window or a slow-call rate, and for the throttle's window while it is
/// on). Transitions
/// (rare) take a small lock so the open deadline and the window are set
/// before the new state is seen. Half-open probes are counted in the state
/// word itself, so exactly the configured number get through.
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
    /// The component's breaker: [`Signal::BreakerTransition`].
    Component,
    /// One breaker of a keyed layer: [`Signal::KeyedBreakerTransition`],
    /// under the layer's component. The key, when there is one (the default
    /// breaker has none), is a field of the `tracing` event.
    Keyed(Option<Box<dyn fmt::Display + Send + Sync>>),
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

    #[cold]
    fn refuse(&self, retry_after: Option<Duration>) -> Refusal {
        self.rejected_total.fetch_add(1, Ordering::Relaxed);
        Refusal::new(retry_after)
    }

    /// Moves from the state `from` (its code and generation) to `to`, unless
    /// another transition got there first. Returns the new word.
    #[cold]
    fn transition(&self, from: u64, to: u64, reason: TransitionReason, now: u64) -> Option<u64> {
        let serialised = self.transition.lock().unwrap_or_else(|e| e.into_inner());
        let mut current = self.word.load(Ordering::Acquire);
        if code(current) != code(from) || generation(current) != generation(from) {
            return None;
        }
        match to {
            OPEN => {
                // Under the lock: no other writer but a reset, also under it.
                let opens = self.opens_in_row.load(Ordering::Relaxed).saturating_add(1);
                self.opens_in_row.store(opens, Ordering::Relaxed);
                let open_for = self.config.open_duration_after(opens);
                let until = now.saturating_add(nanos(open_for));
                self.open_until.store(until, Ordering::Release);
            }
            HALF_OPEN => self.half_open_progress.store(now, Ordering::Release),
            CLOSED => {
                self.opens_in_row.store(0, Ordering::Relaxed);
                self.clear_counts();
            }
            DISABLED => self.clear_counts(),
            _ => {}
        }
        // Leaving Open for HalfOpen, the caller is the first probe.
        let first_probes =
            u32::from(to == HALF_OPEN && reason == TransitionReason::OpenDurationElapsed);
        let next = pack(to, next_generation(current), first_probes);
        // Only probe counts change the word outside this lock, and they
        // keep code and generation: retry until our swap lands.
        while let Err(actual) =
            self.word
                .compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire)
        {
            current = actual;
        }
        self.transitions_total.fetch_add(1, Ordering::Relaxed);
        // The sink and tracing are user code: never under the lock (a sink
        // may steer this very breaker through its handle).
        drop(serialised);
        self.report(code(from), to, reason);
        Some(next)
    }

    fn clear_counts(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        if let Some(window) = &self.window {
            window.clear();
        }
    }

    fn report(&self, from: u64, to: u64, reason: TransitionReason) {
        let (from, to) = (state_of(from), state_of(to));
        let component = self.config.component();
        let signal = match &self.scope {
            Scope::Component => {
                if to.refuses() {
                    tracing::warn!(%component, %from, %to, %reason, "circuit breaker opened");
                } else {
                    tracing::info!(%component, %from, %to, %reason, "circuit breaker changed state");
                }
                Signal::BreakerTransition { from, to, reason }
            }
            Scope::Keyed(key) => {
                // No key: the layer's default breaker.
                let key = key.as_deref().map(tracing::field::display);
                if to.refuses() {
                    tracing::warn!(%component, key, %from, %to, %reason, "keyed circuit breaker opened");
                } else {
                    tracing::info!(%component, key, %from, %to, %reason, "keyed circuit breaker changed state");
                }
                Signal::KeyedBreakerTransition { from, to, reason }
            }
        };
        self.config.sink().emit(component, signal);
    }

    #[cold]
    fn admit_open(&self, word: u64) -> Option<Result<Ticket, Refusal>> {
        let now = self.now();
        let until = self.open_until.load(Ordering::Acquire);
        if now < until {
            return Some(Err(self.refuse(Some(Duration::from_nanos(until - now)))));
        }
        let next = self.transition(word, HALF_OPEN, TransitionReason::OpenDurationElapsed, now)?;
        Some(Ok(Ticket::with(generation(next), TicketKind::Probe)))
    }

    #[cold]
    fn admit_half_open(&self, word: u64) -> Option<Result<Ticket, Refusal>> {
        if probes(word) < self.config.probes() {
            return self
                .word
                .compare_exchange_weak(word, word + ONE_PROBE, Ordering::AcqRel, Ordering::Acquire)
                .ok()
                .map(|_| Ok(Ticket::with(generation(word), TicketKind::Probe)));
        }
        // Every probe is out. If none has reported for too long, re-open
        // rather than stay stuck on probes that will never report.
        let now = self.now();
        let waited = now.saturating_sub(self.half_open_progress.load(Ordering::Acquire));
        let max_wait = nanos(self.config.half_open_max_wait());
        if waited >= max_wait {
            self.transition(word, OPEN, TransitionReason::HalfOpenTimeout, now);
            return None;
        }
        // The longest this call would have to wait for a decision.
        Some(Err(
            self.refuse(Some(Duration::from_nanos(max_wait - waited)))
        ))
    }

    /// After a failure or a slow call while Closed, or a success that
    /// brought a count window up to its minimum: does it trip? `totals` are
    /// the window's, when the caller already has them.
    #[cold]
    fn maybe_trip(&self, word: u64, consecutive: u32, totals: Option<Totals>) {
        let mut now = None;
        let mut clock = || *now.get_or_insert_with(|| self.now());
        let reason = if self
            .config
            .consecutive_failures()
            .is_some_and(|limit| consecutive >= limit)
        {
            TransitionReason::ConsecutiveFailures
        } else if let Some(reason) = self.window.as_ref().and_then(|window| {
            let totals = totals.unwrap_or_else(|| window.totals(&mut clock));
            self.rate_trip(totals)
        }) {
            reason
        } else {
            return;
        };
        let now = clock();
        self.transition(word, OPEN, reason, now);
    }

    fn rate_trip(&self, totals: Totals) -> Option<TransitionReason> {
        if totals.calls < u64::from(self.config.minimum_calls()) {
            return None;
        }
        if let (Some(threshold), Some(rate)) = (self.config.failure_rate(), totals.failure_rate()) {
            if rate >= threshold {
                return Some(TransitionReason::FailureRate);
            }
        }
        if let (Some((threshold, _)), Some(rate)) = (self.config.slow_call(), totals.slow_rate()) {
            if rate >= threshold {
                return Some(TransitionReason::SlowCallRate);
            }
        }
        None
    }

    #[inline]
    fn record_counted(&self, ticket: Ticket, failed: bool, slow: bool) {
        if !(failed || slow) && self.window.is_none() {
            // A plain success with no window only ends a run of failures.
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.reset_run(ticket);
            }
            return;
        }
        self.record_in_window(ticket, failed, slow);
    }

    /// A success ends a run of failures, unless it was admitted before a
    /// transition (its outcome belongs to a state that is gone).
    #[cold]
    fn reset_run(&self, ticket: Ticket) {
        if generation(self.word.load(Ordering::Acquire)) == ticket.generation() {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }

    fn record_in_window(&self, ticket: Ticket, failed: bool, slow: bool) {
        let word = self.word.load(Ordering::Acquire);
        if generation(word) != ticket.generation() {
            // Admitted before a transition: its outcome belongs to a state
            // that is gone.
            return;
        }
        let consecutive = if failed {
            // Saturating: a MetricsOnly breaker counts failures in a row
            // without ever tripping, and must not wrap back to zero.
            self.consecutive
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |run| {
                    run.checked_add(1)
                })
                .map_or(u32::MAX, |run| run + 1)
        } else {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            0
        };
        let changed = self
            .window
            .as_ref()
            .and_then(|window| window.record(Sample::new(failed, slow), || self.now()));
        if code(word) != CLOSED {
            return;
        }
        if failed || slow {
            self.maybe_trip(word, consecutive, changed);
        } else if changed
            .is_some_and(|totals| totals.calls == u64::from(self.config.minimum_calls()))
        {
            // A success can trip a rate only by bringing the window up to
            // its minimum number of calls: otherwise it lowers the rates or
            // leaves them be. (A time window re-checks at its next failure.)
            self.maybe_trip(word, consecutive, changed);
        }
    }

    #[cold]
    fn record_probe(&self, ticket: Ticket, outcome: Outcome, slow: bool) {
        loop {
            let word = self.word.load(Ordering::Acquire);
            if code(word) != HALF_OPEN || generation(word) != ticket.generation() {
                // A probe of a half-open spell that is over.
                return;
            }
            match outcome {
                // Ignored counts for nothing, slow or not.
                Outcome::Ignored => {
                    if self.release_probe(word, 0) {
                        self.half_open_progress.store(self.now(), Ordering::Release);
                        return;
                    }
                }
                Outcome::Failure => {
                    self.transition(word, OPEN, TransitionReason::ProbeFailed, self.now());
                    return;
                }
                _ if slow => {
                    self.transition(word, OPEN, TransitionReason::ProbeFailed, self.now());
                    return;
                }
                Outcome::Success if wins(word) + 1 >= self.config.probe_successes() => {
                    self.transition(word, CLOSED, TransitionReason::ProbesSucceeded, self.now());
                    return;
                }
                Outcome::Success => {
                    if self.release_probe(word, ONE_WIN) {
                        self.half_open_progress.store(self.now(), Ordering::Release);
                        return;
                    }
                }
            }
        }
    }

    /// Counts a finished call in the throttle's window: a success is a
    /// request accepted, a failure one not; an ignored call is neither.
    #[cold]
    fn record_throttled(&self, outcome: Outcome) {
        match outcome {
            Outcome::Success => self.throttle.record(true, self.now()),
            Outcome::Failure => self.throttle.record(false, self.now()),
            Outcome::Ignored => {}
        }
    }

    /// Gives back the probe slot `word` counts for this call, adding `win`.
    fn release_probe(&self, word: u64, win: u64) -> bool {
        debug_assert!(probes(word) > 0);
        self.word
            .compare_exchange_weak(
                word,
                word - ONE_PROBE + win,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Admits a call while Closed, unless the throttle refuses it.
    #[inline]
    fn admit_closed(&self, word: u64) -> Result<Ticket, Refusal> {
        if self.throttle.is_on() && self.throttle.refuses(self.now()) {
            return Err(Refusal::throttled(Some(throttle::RETRY_AFTER)));
        }
        Ok(Ticket::with(generation(word), TicketKind::Counted))
    }

    #[cold]
    fn admit_slow(&self) -> Result<Ticket, Refusal> {
        loop {
            let word = self.word.load(Ordering::Acquire);
            let decided = match code(word) {
                CLOSED => Some(self.admit_closed(word)),
                METRICS_ONLY => Some(Ok(Ticket::with(generation(word), TicketKind::Counted))),
                DISABLED => Some(Ok(Ticket::with(generation(word), TicketKind::Uncounted))),
                FORCED_OPEN => Some(Err(self.refuse(None))),
                OPEN => self.admit_open(word),
                _ => self.admit_half_open(word),
            };
            if let Some(decided) = decided {
                return decided;
            }
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
        let slow = match (self.config.slow_call(), elapsed) {
            (Some((_, threshold)), Some(elapsed)) => elapsed >= threshold,
            _ => false,
        };
        if self.throttle.is_on() && ticket.kind() != TicketKind::Uncounted {
            self.record_throttled(outcome);
        }
        match ticket.kind() {
            TicketKind::Uncounted => {}
            TicketKind::Counted => match outcome {
                Outcome::Ignored => {}
                Outcome::Success => self.record_counted(ticket, false, slow),
                Outcome::Failure => self.record_counted(ticket, true, slow),
            },
            TicketKind::Probe => self.record_probe(ticket, outcome, slow),
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

    fn metrics(&self) -> Metrics {
        let word = self.word.load(Ordering::Acquire);
        let totals = self
            .window
            .as_ref()
            .map(|window| window.totals(|| self.now()))
            .unwrap_or_default();
        Metrics {
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
            throttle: self.throttle.k(),
            throttle_probability: self.throttle.probability_at(self.now()),
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
        let component = self.config.component();
        let key = match &self.scope {
            Scope::Component => None,
            Scope::Keyed(key) => key.as_deref().map(tracing::field::display),
        };
        match k {
            Some(k) => tracing::info!(%component, key, k, "circuit breaker throttling"),
            None => tracing::info!(%component, key, "circuit breaker no longer throttling"),
        }
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

#[cfg(all(test, not(loom)))]
mod tests {
    use reflex_core::{Component, Sink};

    use super::*;
    use crate::config::Window;

    fn backend(open_backoff: Option<(f64, Duration)>) -> MemoryBackend {
        MemoryBackend::new(BreakerConfig {
            component: Component::new("db"),
            sink: Sink::none(),
            consecutive_failures: Some(1),
            failure_rate: None,
            slow_call: None,
            window: Window::Count { calls: 1 },
            minimum_calls: 1,
            open_duration: Duration::from_nanos(1),
            open_backoff,
            probes: 1,
            probe_successes: 1,
            half_open_max_wait: Duration::from_secs(3600),
            count_echoes: false,
        })
    }

    fn fail(backend: &MemoryBackend) {
        let ticket = backend.admit().expect("admitted");
        backend.record(ticket, Outcome::Failure, None);
    }

    #[test]
    fn opens_in_a_row_saturate_instead_of_wrapping_back_to_the_base_open_duration() {
        let cap = Duration::from_secs(3600);
        let backend = backend(Some((2.0, cap)));
        backend.opens_in_row.store(u32::MAX - 1, Ordering::Relaxed);
        fail(&backend);
        assert_eq!(backend.state(), BreakerState::Open);
        for _ in 0..2 {
            // Its open time over (by hand, not by waiting an hour): a probe,
            // which fails.
            backend.open_until.store(0, Ordering::Release);
            fail(&backend);
            assert_eq!(backend.state(), BreakerState::Open);
            let refused = backend.admit().expect_err("open");
            let open_for = refused.retry_after().unwrap();
            assert!(open_for > cap / 2, "back to the base: {open_for:?}");
        }
    }

    #[test]
    fn failures_in_a_row_saturate_instead_of_wrapping_to_zero() {
        let backend = backend(None);
        backend.set_state(BreakerState::MetricsOnly).unwrap();
        backend.consecutive.store(u32::MAX - 1, Ordering::Relaxed);
        for _ in 0..3 {
            fail(&backend);
        }
        assert_eq!(backend.metrics().consecutive_failures, u32::MAX);
        assert_eq!(backend.state(), BreakerState::MetricsOnly);
    }
}
