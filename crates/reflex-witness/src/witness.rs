//! [`Witness`]: the handle every stack of a process reports to.

use std::fmt;
use std::sync::Arc;

use reflex_core::origin::Frame;
use reflex_core::{
    BreakerControl, BreakerState, Component, Control, ShedControl, Signal, SignalSink,
};
use tokio::sync::broadcast;

use crate::episode::Episode;
use crate::hooks::{Cycle, CycleHook};
use crate::patterns::{CallCtx, pack};
use crate::registry::Cell;
use crate::report::Report;
use crate::runtime::Inner;
use crate::sink::WitnessSink;
use crate::snapshot::{Health, Snapshot};
use crate::totals::Totals;

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
/// let layer = witness.layer("db").build()?;
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
    /// The cell of component `index`.
    pub(crate) fn cell(&self, index: usize) -> &Cell {
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
        if self.inner.analysis.learns_patterns() {
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

    /// Gives the witness's reflexes `component`'s layer to steer: its
    /// breaker ([`Control::Breaker`]) or its shed limit
    /// ([`Control::Shed`]), as a built layer hands it out
    /// ([`Handled::control`](reflex_core::Handled::control)). A control
    /// given for a component before is replaced by one of its kind. The
    /// preset gives each layer's control this way.
    ///
    /// The witness keeps the control, and so the layer's state, as long as
    /// it lives: give that layer [`sink`](Self::sink) as its sink, not a
    /// `Witness` clone, or the two keep each other alive.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use reflex_core::{BreakerControl, BreakerState, ConfigError, Control};
    /// use reflex_witness::Witness;
    ///
    /// struct AlwaysClosed;
    ///
    /// impl BreakerControl for AlwaysClosed {
    ///     fn state(&self) -> BreakerState { BreakerState::Closed }
    ///     fn force_open(&self) {}
    ///     fn reset(&self) {}
    ///     fn trip(&self) {}
    ///     fn throttle(&self, _: Option<f64>) -> Result<(), ConfigError> { Ok(()) }
    /// }
    ///
    /// let witness = Witness::builder().build()?;
    /// let _db = witness.layer("db").build()?;
    /// witness.control("db", Control::Breaker(Arc::new(AlwaysClosed)));
    /// // The breaker's state is read from its control in every snapshot.
    /// let snapshot = witness.cycle_now();
    /// assert_eq!(snapshot.component("db").unwrap().breaker.as_deref(), Some("closed"));
    /// # Ok::<_, ConfigError>(())
    /// ```
    pub fn control(&self, component: impl Into<Component>, control: Control) {
        let name = component.into().as_str().to_owned();
        self.inner.controls().add(name, control);
    }

    /// Gives the witness's reflexes `component`'s breaker to steer (a
    /// `BreakerHandle` of reflex-breaker, or any [`BreakerControl`]): a
    /// typed [`control`](Self::control).
    pub fn control_breaker(&self, component: impl Into<Component>, control: impl BreakerControl) {
        self.control(component, Control::Breaker(Arc::new(control)));
    }

    /// Gives the witness's reflexes `component`'s shed layer to steer (a
    /// `ShedHandle` of reflex-shed, or any [`ShedControl`]): a typed
    /// [`control`](Self::control).
    pub fn control_shed(&self, component: impl Into<Component>, control: impl ShedControl) {
        self.control(component, Control::Shed(Arc::new(control)));
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
            patterns_learned: self.inner.analysis.patterns_learned(),
            open_breakers: latest
                .components
                .iter()
                .filter(|c| {
                    BreakerState::ALL
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

    /// What the witness counted since it started, every cycle added up:
    /// the counters a metrics export wants (Prometheus, OpenTelemetry),
    /// read here without touching the request path. Updated once per
    /// cycle; the same `Arc` until the next.
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_witness::Witness;
    ///
    /// let witness = Witness::builder().build()?;
    /// let _db = witness.layer("db").build()?;
    /// assert_eq!(witness.totals().cycles, 0);
    /// witness.cycle_now();
    /// let totals = witness.totals();
    /// assert_eq!(totals.cycles, 1);
    /// assert_eq!(totals.component("db").unwrap().succeeded, 0);
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn totals(&self) -> Arc<Totals> {
        Arc::clone(&self.inner.state().totals)
    }

    /// Runs `hook` at the end of every cycle (quiet ones included), with
    /// the cycle's snapshot and the totals, until the returned guard is
    /// dropped: for an export that records what each cycle added (the
    /// OpenTelemetry histogram of reflex-telemetry does).
    ///
    /// A hook runs on the thread of the cycle (the runtime's task, or a
    /// caller of [`cycle_now`](Self::cycle_now)), after the snapshot and
    /// the totals are published, with no lock of the witness held: it may
    /// read the witness, but must be quick and must not run a cycle
    /// itself. A hook that panics sets [`last_error`](Self::last_error);
    /// the others and the next cycles run. Two cycles run at once (a
    /// `cycle_now` beside the runtime's) may call hooks out of order:
    /// [`Totals::cycles`] tells which is the newer.
    ///
    /// The witness holds the hook: a hook that holds a `Witness` clone
    /// keeps it alive until its guard is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use reflex_witness::Witness;
    ///
    /// let witness = Witness::builder().build()?;
    /// let seen = Arc::new(AtomicU64::new(0));
    /// let hook = witness.on_cycle({
    ///     let seen = Arc::clone(&seen);
    ///     move |cycle| seen.store(cycle.totals.cycles, Ordering::Relaxed)
    /// });
    /// witness.cycle_now();
    /// assert_eq!(seen.load(Ordering::Relaxed), 1);
    /// drop(hook);
    /// witness.cycle_now();
    /// assert_eq!(seen.load(Ordering::Relaxed), 1);
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn on_cycle(&self, hook: impl Fn(&Cycle<'_>) + Send + Sync + 'static) -> CycleHook {
        let hooks = self.inner.state().hooks.clone();
        hooks.add(Arc::new(hook))
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

    /// The episodes of the judgement, oldest first: every open one, and the
    /// last closed ones (as many as the report limit). An episode opens
    /// with its report and ends when its roots are back within their
    /// baselines; its `actions` keep what the reflexes did and undid.
    ///
    /// # Examples
    ///
    /// ```
    /// use reflex_witness::Witness;
    ///
    /// let witness = Witness::builder().build()?;
    /// witness.cycle_now();
    /// assert!(witness.episodes().iter().all(|e| !e.is_open()));
    /// # Ok::<_, reflex_core::ConfigError>(())
    /// ```
    pub fn episodes(&self) -> Vec<Episode> {
        self.inner.analysis.episodes()
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
        self.inner.registry.hear(component, signal);
    }
}

impl Witness {
    /// A sink for the layers' signals that does not keep the witness
    /// alive: give it to a layer whose handle you also give the witness
    /// ([`control`](Self::control)). The witness keeps the
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
        WitnessSink::new(&self.inner)
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
