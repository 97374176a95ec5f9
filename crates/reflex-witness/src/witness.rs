//! [`Witness`]: the handle every stack of a process reports to, and its
//! observation runtime.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use reflex_core::{Component, ConfigError, ConfigErrorKind, Signal, SignalSink};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::histogram::Counts;
use crate::registry::{REJECT_KINDS, Registry, breaker_state};
use crate::snapshot::{ComponentState, Snapshot};

const LAYER: &str = "witness";

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
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` or `start` is called"]
pub struct WitnessBuilder {
    interval: Duration,
    history: usize,
    components: usize,
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
    /// How often the runtime folds what it heard into a snapshot (above
    /// zero). Defaults to 1 s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How many non-empty snapshots are kept in the history (at least 1).
    /// Defaults to 64.
    pub fn history_limit(mut self, snapshots: usize) -> Self {
        self.history = snapshots;
        self
    }

    /// The most components the witness follows (at least 1): a layer
    /// built for one more is refused. Defaults to 256.
    pub fn max_components(mut self, components: usize) -> Self {
        self.components = components;
        self
    }

    /// Builds a witness with no runtime: snapshots are taken when
    /// [`Witness::cycle_now`] is called.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the interval is zero, or the history limit
    /// or the component bound is zero.
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
        if self.history == 0 {
            return zero("history_limit", "at least one snapshot must fit");
        }
        if self.components == 0 {
            return zero("max_components", "at least one component must fit");
        }
        let (tx, _) = broadcast::channel(self.history.max(16));
        Ok(Witness {
            inner: Arc::new(Inner {
                registry: Registry::new(self.components),
                base: Instant::now(),
                interval: self.interval,
                history_limit: self.history,
                state: Mutex::new(State {
                    cycle: 0,
                    latest: Arc::new(Snapshot::empty()),
                    history: VecDeque::new(),
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
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.cycle();
    }
}

/// What the witness shares with its runtime.
struct Inner {
    registry: Registry,
    base: Instant,
    interval: Duration,
    history_limit: usize,
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Snapshot>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    cycle: u64,
    latest: Arc<Snapshot>,
    history: VecDeque<Arc<Snapshot>>,
    last_error: Option<String>,
}

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
                let (succeeded, failed) = (take(&cell.succeeded), take(&cell.failed));
                let rejected = REJECT_KINDS
                    .iter()
                    .map(|k| k.as_str())
                    .chain(["other"])
                    .zip(cell.rejected.iter())
                    .filter_map(|(kind, count)| {
                        let n = take(count);
                        (n > 0).then(|| (kind.to_owned(), n))
                    })
                    .collect();
                let started = take(&cell.started);
                Some(ComponentState {
                    component: name.as_str().to_owned(),
                    in_flight: cell.in_flight.load(Ordering::Relaxed).max(0).unsigned_abs(),
                    requests: started,
                    throughput: started as f64 / self.interval.as_secs_f64(),
                    succeeded,
                    failed,
                    ignored: take(&cell.ignored),
                    cancelled: take(&cell.cancelled),
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
                    slot_queue_depth: cell.slot_depth.load(Ordering::Relaxed),
                })
            })
            .collect();
        let mut state = self.state();
        state.cycle += 1;
        let snapshot = Arc::new(Snapshot {
            cycle: state.cycle,
            observed_at_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            components,
        });
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
    /// seen before is registered (once, under a lock).
    fn emit(&self, component: &Component, signal: Signal) {
        let registry = &self.inner.registry;
        if let Some(index) = registry
            .find(component)
            .or_else(|| registry.register(component))
        {
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
