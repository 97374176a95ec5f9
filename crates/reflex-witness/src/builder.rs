//! [`WitnessBuilder`]: a witness's settings, checked when it is built.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reflex_core::{ConfigError, ConfigErrorKind};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::analyse::Analysis;
use crate::clock::{Clock, Source};
use crate::controls::Controls;
use crate::detector::Detector;
use crate::error::StartError;
use crate::events::{Events, Ring};
use crate::hooks::Hooks;
use crate::judge::Judge;
use crate::judgement::Judgement;
use crate::limits::{CALLS, EVENTS, LAYER, MAX_COMPONENTS, MAX_HISTORY, MIN_INTERVAL};
use crate::patterns::Learner;
use crate::reflex::Reflex;
use crate::registry::Registry;
use crate::runtime::{Inner, State, run};
use crate::snapshot::Snapshot;
use crate::witness::Witness;

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
    judgement: Option<Judgement>,
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
            .field("judgement", &self.judgement)
            .field("detectors", &self.detectors.len())
            .field("reflexes", &self.reflexes.len())
            .field("patterns", &self.patterns)
            .field("clock", &self.clock)
            .finish()
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

    /// How components are judged: each one's own error rate and self time
    /// against a baseline learned on healthy cycles, with a minimum volume
    /// and a statistical margin; an episode (one report) opens where an
    /// anomaly starts and closes once it is back within its baseline. See
    /// [`Judgement`] for the margins. Defaults to `Judgement::default()`.
    pub fn judgement(mut self, judgement: Judgement) -> Self {
        self.judgement = Some(judgement);
        self
    }

    /// Turns the judgement off: no episode, no report but call patterns'
    /// and your detectors'.
    pub fn no_judgement(mut self) -> Self {
        self.judgement = None;
        self
    }

    /// Adds a detector of your own, run each cycle after the judgement
    /// and the call patterns.
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
    /// usual latency is reported whenever. Each request's layer then notes
    /// one word more (the chain is linked by the request's frame, which
    /// every request has). Defaults to off.
    pub fn call_patterns(mut self, settle_after: u64, factor: f64) -> Self {
        self.patterns = Some((settle_after, factor));
        self
    }

    /// Adds a reflex: each cycle, after the detectors, it may act on the
    /// layers whose controls the witness was given ([`Witness::control`]).
    /// None by default: a witness only observes unless told otherwise.
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
    /// or above [`MAX_COMPONENTS`], the report or chain limit is zero, a
    /// factor is not a finite number above 1, or a setting of the
    /// [`Judgement`] is out of its range (its setting is named
    /// `judgement.<setter>`).
    pub fn build(self) -> Result<Witness, ConfigError> {
        let zero = |setting, reason| {
            Err(ConfigError::new(
                LAYER,
                setting,
                ConfigErrorKind::Zero,
                reason,
            ))
        };
        let at_most = |setting, max: usize| {
            Err(ConfigError::new(
                LAYER,
                setting,
                ConfigErrorKind::OutOfRange,
                format!("must be at most {max}"),
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
            return at_most("history_limit", MAX_HISTORY);
        }
        if self.components == 0 {
            return zero("max_components", "at least one component must fit");
        }
        if self.components > MAX_COMPONENTS {
            return at_most("max_components", MAX_COMPONENTS);
        }
        if self.reports == 0 {
            return zero("report_limit", "at least one report must fit");
        }
        if self.chain == 0 {
            return zero("chain_limit", "a chain holds at least one link");
        }
        if let Some(judgement) = &self.judgement {
            judgement.check()?;
        }
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
        let detectors = self.detectors;
        let reflexes = self.reflexes;
        let (tx, _) = broadcast::channel(self.history.max(16));
        Ok(Witness {
            inner: Arc::new(Inner {
                registry: Registry::new(self.components),
                clock: Source::new(self.clock),
                events: Events::new(EVENTS),
                calls: Ring::new(CALLS),
                cycles: AtomicU64::new(0),
                analysis: Analysis::new(
                    self.patterns
                        .map(|(settle_after, factor)| Learner::new(settle_after, factor)),
                    self.judgement
                        .map(|judgement| Judge::new(judgement, self.chain, self.reports)),
                    detectors,
                    reflexes,
                    self.chain,
                ),
                controls: Mutex::new(Controls::default()),
                report_limit: self.reports,
                base: Instant::now(),
                interval: self.interval,
                history_limit: self.history,
                state: Mutex::new(State {
                    latest: Arc::new(Snapshot::empty()),
                    history: VecDeque::new(),
                    reports: VecDeque::new(),
                    actions: 0,
                    last_error: None,
                    totals: Arc::default(),
                    hooks: Hooks::new(),
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

impl Witness {
    /// Starts configuring a witness.
    pub fn builder() -> WitnessBuilder {
        WitnessBuilder {
            interval: Duration::from_secs(1),
            history: 64,
            components: 256,
            reports: 64,
            chain: 32,
            judgement: Some(Judgement::default()),
            detectors: Vec::new(),
            reflexes: Vec::new(),
            patterns: None,
            clock: Clock::default(),
        }
    }
}
