//! [`Witness`]: the handle every stack of a process reports to, and its
//! observation runtime.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use reflex_core::{
    BreakerControl, Component, ConfigError, ConfigErrorKind, ShedControl, Signal, SignalSink,
};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock::{Clock, Source, Stamp};
use crate::detect::{
    Cascade, ChainLink, Detector, Finding, LatencyRegression, Observation, Report,
};
use crate::events::{Event, Events, Ring};
use crate::histogram::Counts;
use crate::patterns::{CallCtx, Learner, pack};
use crate::reflex::{Action, Controls, Reflex};
use crate::registry::{REJECT_KINDS, Registry, breaker_state};
use crate::snapshot::{ComponentState, Health, Snapshot};

const LAYER: &str = "witness";

/// The most components a witness follows: a call chain's word packs the
/// component's index in 12 bits.
pub const MAX_COMPONENTS: usize = (1 << 12) - 1;

/// The most snapshots a witness keeps in its history: subscribers' channel
/// is sized to the history limit when the witness is built.
pub const MAX_HISTORY: usize = 1 << 16;

/// The shortest interval: tokio's timer counts milliseconds.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Configures a [`Witness`]; from [`Witness::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_witness::Witness;
///
/// let err = Witness::builder().interval(Duration::ZERO).build().unwrap_err();
/// assert_eq!(err.setting(), "interval");
/// ```
#[must_use = "a builder does nothing until `build` or `start` is called"]
pub struct WitnessBuilder {
    interval: Duration,
    history: usize,
    components: usize,
    reports: usize,
    chain: usize,
    cascade: Option<Cascade>,
    regression: Option<LatencyRegression>,
    detectors: Vec<Box<dyn Detector>>,
    reflexes: Vec<Box<dyn Reflex>>,
    /// `(settle_after, factor)`.
    patterns: Option<(u64, f64)>,
    clock: Clock,
}

impl fmt::Debug for WitnessBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WitnessBuilder")
            .field("interval", &self.interval)
            .field("history", &self.history)
            .field("components", &self.components)
            .field("reports", &self.reports)
            .field("chain", &self.chain)
            .field("cascade", &self.cascade)
            .field("regression", &self.regression)
            .field("detectors", &self.detectors.len())
            .field("reflexes", &self.reflexes.len())
            .field("patterns", &self.patterns)
            .field("clock", &self.clock)
            .finish()
    }
}

/// Why [`WitnessBuilder::start`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// There is no tokio runtime to run the observation task on.
    NoRuntime,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(err) => write!(f, "witness: {err}"),
            Self::NoRuntime => f.write_str("witness: no tokio runtime to start on"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(err) => Some(err),
            Self::NoRuntime => None,
        }
    }
}

impl From<ConfigError> for StartError {
    fn from(err: ConfigError) -> Self {
        Self::Config(err)
    }
}

// === impl WitnessBuilder ===

impl WitnessBuilder {
    /// How often the runtime folds what it heard into a snapshot: at least
    /// 1 ms (tokio's timer counts milliseconds), and any length above (one
    /// beyond about 30 years, tokio's longest sleep, is waited as that).
    /// Defaults to 1 s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How many non-empty snapshots are kept in the history (at least 1, at
    /// most [`MAX_HISTORY`]). Defaults to 64.
    pub fn history_limit(mut self, snapshots: usize) -> Self {
        self.history = snapshots;
        self
    }

    /// The most components the witness follows (at least 1, at most
    /// [`MAX_COMPONENTS`]): a layer built for one more is refused. Defaults
    /// to 256.
    pub fn max_components(mut self, components: usize) -> Self {
        self.components = components;
        self
    }

    /// How many reports are kept (at least 1), the oldest forgotten first.
    /// Defaults to 64.
    pub fn report_limit(mut self, reports: usize) -> Self {
        self.reports = reports;
        self
    }

    /// How many failed calls a report's causal chain holds at most (at
    /// least 1): the earliest. Defaults to 32.
    pub fn chain_limit(mut self, links: usize) -> Self {
        self.chain = links;
        self
    }

    /// Reports a cascade when at least `components` components each have
    /// at least `failures` failed or refused calls within `window`.
    /// Defaults to 3 components, 5 failures, 10 s.
    pub fn cascade(mut self, components: usize, failures: usize, window: Duration) -> Self {
        self.cascade = Some(Cascade::new(components, failures, window));
        self
    }

    /// Turns the cascade detector off.
    pub fn no_cascade(mut self) -> Self {
        self.cascade = None;
        self
    }

    /// Reports a latency regression when a component's p50 over a cycle
    /// goes above `factor` (above 1) times its baseline, learned over
    /// `warmup` cycles of at least `min_requests` requests. Defaults to 2,
    /// 5 and 20.
    pub fn latency_regression(mut self, factor: f64, warmup: u32, min_requests: u64) -> Self {
        self.regression = Some(LatencyRegression::new(factor, warmup, min_requests));
        self
    }

    /// Turns the latency regression detector off.
    pub fn no_latency_regression(mut self) -> Self {
        self.regression = None;
        self
    }

    /// Adds a detector of your own, run each cycle after the built-in
    /// ones.
    pub fn detector(mut self, detector: impl Detector) -> Self {
        self.detectors.push(Box::new(detector));
        self
    }

    /// What request latencies are measured with. Defaults to
    /// [`Clock::Cpu`]; tests that pause tokio's clock use [`Clock::Tokio`].
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Learns call patterns: the chains of components a request goes
    /// through (a witness layer's service called while another's request
    /// runs, in the same task, is a link of its chain), each with its usual
    /// latency. Once `settle_after` chains were seen, a chain not seen
    /// before is reported; a chain slower than `factor` (above 1) times its
    /// usual latency is reported whenever. Each request then carries a
    /// task-local and its layer notes one word more. Defaults to off.
    pub fn call_patterns(mut self, settle_after: u64, factor: f64) -> Self {
        self.patterns = Some((settle_after, factor));
        self
    }

    /// Adds a reflex: each cycle, after the detectors, it may act on the
    /// layers whose controls the witness was given
    /// ([`Witness::control_breaker`], [`Witness::control_shed`]). None by
    /// default: a witness only observes unless told otherwise.
    pub fn reflex(mut self, reflex: impl Reflex) -> Self {
        self.reflexes.push(Box::new(reflex));
        self
    }

    /// Builds a witness with no runtime: snapshots are taken when
    /// [`Witness::cycle_now`] is called.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the interval is below 1 ms, the history
    /// limit is zero or above [`MAX_HISTORY`], the component bound is zero
    /// or above [`MAX_COMPONENTS`], the report or chain limit is zero, or a
    /// detector's factor is not a finite number above 1.
    pub fn build(self) -> Result<Witness, ConfigError> {
        let zero = |setting, reason| {
            Err(ConfigError::new(
                LAYER,
                setting,
                ConfigErrorKind::Zero,
                reason,
            ))
        };
        if self.interval.is_zero() {
            return zero("interval", "must be above zero");
        }
        if self.interval < MIN_INTERVAL {
            return Err(ConfigError::new(
                LAYER,
                "interval",
                ConfigErrorKind::OutOfRange,
                "must be at least 1 ms (tokio's timer counts milliseconds)",
            ));
        }
        if self.history == 0 {
            return zero("history_limit", "at least one snapshot must fit");
        }
        if self.history > MAX_HISTORY {
            return Err(ConfigError::new(
                LAYER,
                "history_limit",
                ConfigErrorKind::OutOfRange,
                format!("must be at most {MAX_HISTORY}"),
            ));
        }
        if self.components == 0 {
            return zero("max_components", "at least one component must fit");
        }
        if self.components > MAX_COMPONENTS {
            return Err(ConfigError::new(
                LAYER,
                "max_components",
                ConfigErrorKind::OutOfRange,
                format!("must be at most {MAX_COMPONENTS}"),
            ));
        }
        if self.reports == 0 {
            return zero("report_limit", "at least one report must fit");
        }
        if self.chain == 0 {
            return zero("chain_limit", "a chain holds at least one link");
        }
        if let Some(regression) = &self.regression {
            if !(regression.factor().is_finite() && regression.factor() > 1.0) {
                return Err(ConfigError::new(
                    LAYER,
                    "latency_regression",
                    ConfigErrorKind::OutOfRange,
                    format!(
                        "factor must be a finite number above 1, got {}",
                        regression.factor()
                    ),
                ));
            }
        }
        let mut detectors: Vec<Box<dyn Detector>> = Vec::new();
        detectors.extend(self.cascade.map(|d| Box::new(d) as Box<dyn Detector>));
        detectors.extend(self.regression.map(|d| Box::new(d) as Box<dyn Detector>));
        if let Some((settle_after, factor)) = self.patterns {
            if settle_after == 0 {
                return zero("call_patterns", "learning needs at least one chain");
            }
            if !(factor.is_finite() && factor > 1.0) {
                return Err(ConfigError::new(
                    LAYER,
                    "call_patterns",
                    ConfigErrorKind::OutOfRange,
                    format!("factor must be a finite number above 1, got {factor}"),
                ));
            }
        }
        detectors.extend(self.detectors);
        let reflexes = self.reflexes;
        let (tx, _) = broadcast::channel(self.history.max(16));
        Ok(Witness {
            inner: Arc::new(Inner {
                registry: Registry::new(self.components),
                clock: Source::new(self.clock),
                events: Events::new(EVENTS),
                calls: Ring::new(CALLS),
                next_root: AtomicU64::new(1),
                cycles: AtomicU64::new(0),
                learner: self
                    .patterns
                    .map(|(settle_after, factor)| Mutex::new(Learner::new(settle_after, factor))),
                detectors: Mutex::new(detectors),
                reflexes: Mutex::new(reflexes),
                controls: Mutex::new(Controls::default()),
                report_limit: self.reports,
                chain_limit: self.chain,
                base: Instant::now(),
                interval: self.interval,
                history_limit: self.history,
                state: Mutex::new(State {
                    latest: Arc::new(Snapshot::empty()),
                    history: VecDeque::new(),
                    reports: VecDeque::new(),
                    actions: 0,
                    last_error: None,
                }),
                tx,
                task: Mutex::new(None),
            }),
        })
    }

    /// Builds a witness and starts its runtime on the current tokio
    /// runtime: one cycle per interval. The task stops when the last
    /// handle to the witness is dropped.
    ///
    /// # Errors
    ///
    /// [`StartError::Config`] as [`build`](Self::build);
    /// [`StartError::NoRuntime`] outside a tokio runtime.
    pub fn start(self) -> Result<Witness, StartError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let witness = self.build()?;
        let weak = Arc::downgrade(&witness.inner);
        let interval = witness.inner.interval;
        let task = runtime.spawn(run(weak, interval));
        *witness.inner.task() = Some(task);
        Ok(witness)
    }
}

async fn run(inner: Weak<Inner>, interval: Duration) {
    // `sleep` caps a wait at about 30 years, and every deadline here is
    // `checked_add`ed: no interval overflows the clock. (`interval_at`
    // adds the period to the deadline unchecked.)
    let mut due = Instant::now().checked_add(interval);
    loop {
        let wait = due.map_or(interval, |due| {
            due.saturating_duration_since(Instant::now())
        });
        tokio::time::sleep(wait).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.cycle();
        drop(inner);
        // One interval after this cycle was due; after a late cycle, one
        // interval from now (missed cycles are not made up).
        let now = Instant::now();
        due = due
            .and_then(|due| due.checked_add(interval))
            .filter(|next| *next > now)
            .or_else(|| now.checked_add(interval));
    }
}

/// What the witness shares with its runtime.
struct Inner {
    registry: Registry,
    clock: Source,
    events: Events,
    /// Finished calls of tracked chains, for the pattern learner.
    calls: Ring,
    next_root: AtomicU64,
    /// Cycles run so far: each cycle takes its number here, so two cycles
    /// run at once (the runtime's and a `cycle_now`) never share one.
    cycles: AtomicU64,
    learner: Option<Mutex<Learner>>,
    detectors: Mutex<Vec<Box<dyn Detector>>>,
    reflexes: Mutex<Vec<Box<dyn Reflex>>>,
    controls: Mutex<Controls>,
    report_limit: usize,
    chain_limit: usize,
    base: Instant,
    interval: Duration,
    history_limit: usize,
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Snapshot>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    latest: Arc<Snapshot>,
    history: VecDeque<Arc<Snapshot>>,
    reports: VecDeque<Arc<Report>>,
    actions: usize,
    last_error: Option<String>,
}

/// Failed and refused calls kept for causal chains.
const EVENTS: usize = 1024;
/// Finished calls kept between two cycles for the pattern learner.
const CALLS: usize = 1 << 16;

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn task(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.task.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds what every component saw since the last cycle into a
    /// snapshot; keeps and broadcasts it when anything happened.
    fn cycle(&self) -> Arc<Snapshot> {
        let elapsed = self.base.elapsed();
        let components: Vec<ComponentState> = self
            .registry
            .cells()
            .iter()
            .filter_map(|cell| {
                let name = cell.name.get()?.clone();
                let take =
                    |counter: &std::sync::atomic::AtomicU64| counter.swap(0, Ordering::Relaxed);
                let mut latency = Counts::new();
                cell.latency.take(&mut latency);
                let succeeded = latency.total();
                let mut failures = Counts::new();
                cell.failed_latency.take(&mut failures);
                let failed = failures.total();
                latency.add(&failures);
                let rejected: Vec<(String, u64)> = REJECT_KINDS
                    .iter()
                    .map(|k| k.as_str())
                    .chain(["other"])
                    .zip(cell.rejected.iter())
                    .filter_map(|(kind, count)| {
                        let n = take(count);
                        (n > 0).then(|| (kind.to_owned(), n))
                    })
                    .collect();
                let in_flight = cell.in_flight.load(Ordering::Relaxed);
                let before = cell.in_flight_before.swap(in_flight, Ordering::Relaxed);
                let (ignored, cancelled) = (take(&cell.ignored), take(&cell.cancelled));
                let refused: u64 = rejected.iter().map(|(_, n)| n).sum();
                let ended = [succeeded, failed, ignored, cancelled, refused]
                    .into_iter()
                    .fold(0u64, u64::saturating_add);
                let started = u64::try_from(
                    i64::try_from(ended)
                        .unwrap_or(i64::MAX)
                        .saturating_add(in_flight)
                        .saturating_sub(before)
                        .max(0),
                )
                .unwrap_or(0);
                Some(ComponentState {
                    component: name.as_str().to_owned(),
                    in_flight: in_flight.max(0).unsigned_abs(),
                    requests: started,
                    throughput: started as f64 / self.interval.as_secs_f64(),
                    succeeded,
                    failed,
                    ignored,
                    cancelled,
                    error_rate: if succeeded + failed == 0 {
                        0.0
                    } else {
                        failed as f64 / (succeeded + failed) as f64
                    },
                    p50_ms: latency.quantile(0.5).map(ms),
                    p90_ms: latency.quantile(0.9).map(ms),
                    p99_ms: latency.quantile(0.99).map(ms),
                    rejected,
                    shed: take(&cell.shed),
                    retries: take(&cell.retries),
                    coalesced: take(&cell.coalesced),
                    breaker: breaker_state(cell.breaker.load(Ordering::Relaxed))
                        .map(|s| s.as_str().to_owned()),
                    breaker_keys_opened: take(&cell.keys_opened),
                    slot_queue_depth: cell.slot_queue_depth(),
                })
            })
            .collect();
        let now_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let cycle = self.cycles.fetch_add(1, Ordering::Relaxed) + 1;
        let mut snapshot = Snapshot {
            cycle,
            observed_at_ms: now_ms,
            components,
            reports: Vec::new(),
            actions: Vec::new(),
        };
        let (reports, error) = self.detect(&snapshot, now_ms);
        snapshot.reports = reports;
        for action in self.react(&snapshot) {
            if let Some(report) = action.report.and_then(|i| snapshot.reports.get_mut(i)) {
                report.actions.push(action.what.clone());
            }
            snapshot.actions.push(action.what);
        }
        let snapshot = Arc::new(snapshot);
        let mut state = self.state();
        state.actions += snapshot.actions.len();
        if let Some(error) = error {
            state.last_error = Some(error);
        }
        for report in &snapshot.reports {
            if state.reports.len() == self.report_limit {
                state.reports.pop_front();
            }
            state.reports.push_back(Arc::new(report.clone()));
        }
        state.latest = Arc::clone(&snapshot);
        if !snapshot.is_quiet() {
            if state.history.len() == self.history_limit {
                state.history.pop_front();
            }
            state.history.push_back(Arc::clone(&snapshot));
            drop(state);
            // Nobody listening is not an error.
            let _ = self.tx.send(Arc::clone(&snapshot));
        }
        snapshot
    }
}

impl Inner {
    /// Runs the detectors over `snapshot`; their reports, and the error of
    /// the last one that failed.
    fn detect(&self, snapshot: &Snapshot, now_ms: u64) -> (Vec<Report>, Option<String>) {
        let names: Vec<&str> = self
            .registry
            .cells()
            .iter()
            .map(|cell| cell.name.get().map_or("", |c| c.as_str()))
            .collect();
        let events: Vec<ChainLink> = self
            .events
            .since(0)
            .into_iter()
            .map(|event| ChainLink {
                at_ms: event.at_ms,
                component: names.get(event.component).copied().unwrap_or("").to_owned(),
                what: match event.kind {
                    0 => "failed".to_owned(),
                    kind => format!(
                        "rejected: {}",
                        REJECT_KINDS
                            .get(usize::from(kind) - 1)
                            .map_or("other", |k| k.as_str())
                    ),
                },
            })
            .collect();
        let observation = Observation {
            snapshot,
            events: &events,
            now_ms,
        };
        let to_report = |detector: &str, finding: Finding| Report {
            cycle: snapshot.cycle,
            at_ms: now_ms,
            detector: detector.to_owned(),
            trigger: finding.trigger,
            components: snapshot
                .components
                .iter()
                .filter(|c| finding.components.contains(&c.component))
                .cloned()
                .collect(),
            causal_chain: events
                .iter()
                .filter(|link| finding.components.contains(&link.component))
                .take(self.chain_limit)
                .cloned()
                .collect(),
            decision: finding.decision,
            actions: Vec::new(),
        };
        let mut reports = Vec::new();
        let mut error = None;
        if let Some(learner) = &self.learner {
            let mut learner = learner.lock().unwrap_or_else(PoisonError::into_inner);
            let (words, next) = self.calls.since(learner.cursor);
            learner.cursor = next;
            for finding in learner.learn(snapshot.cycle, words, &names) {
                reports.push(to_report("call_patterns", finding));
            }
        }
        let mut detectors = self
            .detectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for detector in detectors.iter_mut() {
            let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                detector.inspect(&observation)
            }));
            match found {
                Ok(Ok(findings)) => {
                    for finding in findings {
                        reports.push(to_report(detector.name(), finding));
                    }
                }
                Ok(Err(err)) => error = Some(format!("{}: {err}", detector.name())),
                Err(_) => error = Some(format!("{}: panicked", detector.name())),
            }
        }
        (reports, error)
    }

    /// Runs the reflexes over this cycle; the actions they took.
    fn react(&self, snapshot: &Snapshot) -> Vec<Action> {
        let controls = self.controls.lock().unwrap_or_else(PoisonError::into_inner);
        let mut reflexes = self.reflexes.lock().unwrap_or_else(PoisonError::into_inner);
        reflexes
            .iter_mut()
            .flat_map(|reflex| reflex.react(snapshot, &controls))
            .collect()
    }

    /// Notes a failed (`kind` 0) or refused call of component `index`.
    fn note(&self, index: usize, kind: u8) {
        self.events.push(Event {
            at_ms: u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX),
            component: index,
            kind,
        });
    }
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.task().take() {
            task.abort();
        }
    }
}

/// What the stack saw, shared by every stack of a process: layers record
/// into it ([`ObserveWitnessLayer`](crate::ObserveWitnessLayer)) and report
/// their signals to it (it is a [`SignalSink`]); its runtime folds all of
/// it into snapshots, one per interval.
///
/// # Clone
///
/// Clones are the same witness. The runtime stops when the last clone is
/// dropped.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use reflex_witness::Witness;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let witness = Witness::builder().interval(Duration::from_secs(1)).start()?;
/// let layer = witness.layer("db")?;
/// assert_eq!(witness.latest_snapshot().cycle, 0);
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Witness {
    inner: Arc<Inner>,
}

// === impl Witness ===

impl Witness {
    /// Starts configuring a witness.
    pub fn builder() -> WitnessBuilder {
        WitnessBuilder {
            interval: Duration::from_secs(1),
            history: 64,
            components: 256,
            reports: 64,
            chain: 32,
            cascade: Some(Cascade::new(3, 5, Duration::from_secs(10))),
            regression: Some(LatencyRegression::new(2.0, 5, 20)),
            detectors: Vec::new(),
            reflexes: Vec::new(),
            patterns: None,
            clock: Clock::default(),
        }
    }

    /// A layer that records the requests of `component`'s stack into this
    /// witness.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the witness already follows as many
    /// components as its bound allows.
    pub fn layer(
        &self,
        component: impl Into<Component>,
    ) -> Result<crate::ObserveWitnessLayer, ConfigError> {
        let component = component.into();
        let index = self.inner.registry.register(&component).ok_or_else(|| {
            ConfigError::new(
                LAYER,
                "max_components",
                ConfigErrorKind::OutOfRange,
                format!(
                    "the witness follows {} components already",
                    self.inner.registry.capacity()
                ),
            )
        })?;
        Ok(crate::ObserveWitnessLayer::new(self.clone(), index))
    }

    pub(crate) fn cell(&self, index: usize) -> &crate::registry::Cell {
        self.inner.registry.cell(index)
    }

    /// Now, by the witness's clock.
    #[inline]
    pub(crate) fn now(&self) -> Stamp {
        self.inner.clock.now()
    }

    /// Nanoseconds since `start`, by the witness's clock.
    #[inline]
    pub(crate) fn elapsed_nanos(&self, start: Stamp) -> u64 {
        self.inner.clock.elapsed_nanos(start)
    }

    /// `true` when the witness learns call patterns.
    pub(crate) fn tracks_patterns(&self) -> bool {
        self.inner.learner.is_some()
    }

    /// A new chain's root id.
    pub(crate) fn next_root(&self) -> u64 {
        self.inner.next_root.fetch_add(1, Ordering::Relaxed)
    }

    /// Notes a finished call of a tracked chain.
    pub(crate) fn record_call(&self, ctx: CallCtx, index: usize, latency_ns: u64) {
        self.inner.calls.push(pack(ctx, index, latency_ns));
    }

    /// Notes a failed call (`kind` 0) or one refused with the rejection
    /// kind of index `kind - 1`, for causal chains.
    pub(crate) fn note(&self, index: usize, kind: u8) {
        self.inner.note(index, kind);
    }

    /// Gives the witness's reflexes `component`'s breaker to steer (a
    /// `BreakerHandle` of reflex-breaker, or any [`BreakerControl`]).
    pub fn control_breaker(&self, component: impl Into<Component>, control: impl BreakerControl) {
        let name = component.into().as_str().to_owned();
        self.inner
            .controls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add_breaker(name, Arc::new(control));
    }

    /// Gives the witness's reflexes `component`'s shed layer to steer (a
    /// `ShedHandle` of reflex-shed, or any [`ShedControl`]).
    pub fn control_shed(&self, component: impl Into<Component>, control: impl ShedControl) {
        let name = component.into().as_str().to_owned();
        self.inner
            .controls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add_shed(name, Arc::new(control));
    }

    /// The reports kept, oldest first, at most the report limit.
    pub fn reports(&self) -> Vec<Arc<Report>> {
        self.inner.state().reports.iter().cloned().collect()
    }

    /// A summary: components followed, patterns learned, open breakers,
    /// reports and actions so far.
    pub fn health(&self) -> Health {
        let latest = self.latest_snapshot();
        let state = self.inner.state();
        Health {
            components: self.inner.registry.cells().len(),
            patterns_learned: self.inner.learner.as_ref().map_or(0, |l| {
                l.lock().unwrap_or_else(PoisonError::into_inner).learned()
            }),
            open_breakers: latest
                .components
                .iter()
                .filter(|c| {
                    crate::registry::STATES
                        .iter()
                        .any(|s| s.refuses() && c.breaker.as_deref() == Some(s.as_str()))
                })
                .map(|c| c.component.clone())
                .collect(),
            reports: state.reports.len(),
            actions: state.actions,
        }
    }

    /// Runs one cycle now: folds what was seen since the last one into a
    /// snapshot, and returns it. The runtime calls this once per interval;
    /// call it yourself on a witness built without one.
    pub fn cycle_now(&self) -> Arc<Snapshot> {
        self.inner.cycle()
    }

    /// The newest snapshot (cycle 0, empty, before the first cycle).
    pub fn latest_snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.inner.state().latest)
    }

    /// The last non-empty snapshots, oldest first, at most the history
    /// limit.
    pub fn history(&self) -> Vec<Arc<Snapshot>> {
        self.inner.state().history.iter().cloned().collect()
    }

    /// Every non-empty snapshot from now on. A receiver that falls behind
    /// by more than the history limit loses the oldest ones (it is told
    /// how many).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Snapshot>> {
        self.inner.tx.subscribe()
    }

    /// The last error of a cycle, if any.
    pub fn last_error(&self) -> Option<String> {
        self.inner.state().last_error.clone()
    }

    /// `true` while the runtime's task runs (`start`ed and not ended).
    pub fn is_running(&self) -> bool {
        self.inner
            .task()
            .as_ref()
            .is_some_and(|task| !task.is_finished())
    }
}

impl SignalSink for Witness {
    /// Folds `signal` into `component`'s counters: a lookup among the
    /// components without a lock, and an atomic or two. A component never
    /// seen before is registered (once, under a lock), except by a
    /// `KeyedBreakerTransition`, which is counted only for a component the
    /// witness already follows.
    fn emit(&self, component: &Component, signal: Signal) {
        let registry = &self.inner.registry;
        // One key's breaker speaks for a key (a host, a tenant), not for a
        // component: it never takes a place among the components.
        let may_register = !matches!(signal, Signal::KeyedBreakerTransition { .. });
        // A full registry refuses new components without its lock: a sink
        // never locks on the signal path once the witness is full.
        if let Some(index) = registry.find(component).or_else(|| {
            (may_register && !registry.is_full()).then(|| registry.register(component))?
        }) {
            registry.cell(index).hear(signal);
        }
    }
}

impl fmt::Debug for Witness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Witness")
            .field("interval", &self.inner.interval)
            .field("components", &self.inner.registry.cells().len())
            .field("running", &self.is_running())
            .finish()
    }
}
