//! [`Witness`]: the handle every stack of a process reports to.

use std::fmt;
use std::sync::{Arc, PoisonError, Weak};

use reflex_core::origin::Frame;
use reflex_core::{
    BreakerControl, Component, ConfigError, ConfigErrorKind, ShedControl, Signal, SignalSink,
};
use tokio::sync::broadcast;

use crate::builder::LAYER;
use crate::detect::Report;
use crate::patterns::{CallCtx, pack};
use crate::runtime::Inner;
use crate::snapshot::{Health, Snapshot};

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
    pub(crate) inner: Arc<Inner>,
}

// === impl Witness ===

impl Witness {
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

    /// Nanoseconds since the witness was built, by its clock.
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        self.inner.clock.now_ns()
    }

    /// The place of the edge from component `caller` to `callee`.
    #[inline]
    pub(crate) fn edge(&self, caller: usize, callee: usize) -> Option<u32> {
        self.inner.registry.edges.find(caller, callee)
    }

    /// Counts a call on the edge at `at`.
    #[inline]
    pub(crate) fn count_edge(&self, at: u32, failed: bool) {
        self.inner.registry.edges.count(at, failed);
    }

    /// Notes a finished call of a chain, when the witness learns patterns.
    #[inline]
    pub(crate) fn record_call(&self, frame: &Frame, index: usize, latency_ns: u64, failed: bool) {
        if self.inner.learner.is_some() {
            let ctx = CallCtx {
                root: frame.root(),
                depth: frame.depth(),
            };
            self.inner.calls.push(pack(ctx, index, latency_ns, failed));
        }
    }

    /// Notes a failed or refused call of component `index` at `now_ns`
    /// (its event `code`), for causal chains.
    pub(crate) fn note(&self, index: usize, now_ns: u64, code: u8) {
        self.inner.note(index, now_ns / 1_000_000, code);
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
        self.inner.hear(component, signal);
    }
}

impl Inner {
    fn hear(&self, component: &Component, signal: Signal) {
        let registry = &self.registry;
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

impl Witness {
    /// A sink for the layers' signals that does not keep the witness
    /// alive: give it to a layer whose handle you also give the witness
    /// ([`control_breaker`](Self::control_breaker),
    /// [`control_shed`](Self::control_shed)). The witness keeps the
    /// handle, the handle keeps its sink: a `Witness` clone as that sink
    /// would keep the witness (and its runtime) alive after its last
    /// handle is dropped. The preset uses this one.
    ///
    /// ```
    /// use reflex_witness::Witness;
    ///
    /// let witness = Witness::builder().build()?;
    /// let sink = witness.sink();
    /// drop(witness);
    /// // Signals to a witness that is gone are dropped.
    /// reflex_core::SignalSink::emit(&sink, &"db".into(), reflex_core::Signal::SlotBusy);
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn sink(&self) -> WitnessSink {
        WitnessSink {
            inner: Arc::downgrade(&self.inner),
        }
    }
}

/// A [`SignalSink`] into a [`Witness`] that does not keep it alive; from
/// [`Witness::sink`].
#[derive(Clone)]
pub struct WitnessSink {
    inner: Weak<Inner>,
}

impl SignalSink for WitnessSink {
    /// As [`Witness`]'s; nothing once the witness is gone.
    fn emit(&self, component: &Component, signal: Signal) {
        if let Some(inner) = self.inner.upgrade() {
            inner.hear(component, signal);
        }
    }
}

impl fmt::Debug for WitnessSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WitnessSink")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish()
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
