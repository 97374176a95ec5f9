//! The observation runtime: what a witness shares with its task, and the
//! cycle that folds what every component saw into a snapshot, runs the
//! analysis over it, and publishes the result.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::analyse::Analysis;
use crate::clock::Source;
use crate::controls::Controls;
use crate::durations::DurationHistogram;
use crate::events::{Event, Events, Ring};
use crate::fold::{Folded, fold};
use crate::hooks::{Cycle, Hooks};
use crate::registry::Registry;
use crate::report::Report;
use crate::snapshot::Snapshot;
use crate::totals::Totals;
use crate::trace;

pub(crate) async fn run(inner: Weak<Inner>, interval: Duration) {
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

/// What the witness shares with its runtime. On cache lines of its own:
/// the handle's reference count, written by every request that clones it,
/// never shares a line with the fields every request reads.
#[repr(align(64))]
pub(crate) struct Inner {
    pub(crate) registry: Registry,
    pub(crate) clock: Source,
    pub(crate) events: Events,
    /// Finished calls of tracked chains, for the pattern learner.
    pub(crate) calls: Ring,
    /// Cycles run so far: each cycle takes its number here, so two cycles
    /// run at once (the runtime's and a `cycle_now`) never share one.
    pub(crate) cycles: AtomicU64,
    pub(crate) analysis: Analysis,
    pub(crate) controls: Mutex<Controls>,
    pub(crate) report_limit: usize,
    pub(crate) base: Instant,
    pub(crate) interval: Duration,
    pub(crate) history_limit: usize,
    pub(crate) state: Mutex<State>,
    pub(crate) tx: broadcast::Sender<Arc<Snapshot>>,
    pub(crate) task: Mutex<Option<JoinHandle<()>>>,
}

/// What the cycles keep for the handle to read.
pub(crate) struct State {
    pub(crate) latest: Arc<Snapshot>,
    pub(crate) history: VecDeque<Arc<Snapshot>>,
    pub(crate) reports: VecDeque<Arc<Report>>,
    pub(crate) actions: usize,
    pub(crate) last_error: Option<String>,
    /// Every cycle added up.
    pub(crate) totals: Arc<Totals>,
    /// Run after each cycle ([`Witness::on_cycle`](crate::Witness::on_cycle)).
    /// Here rather than beside the other fields of [`Inner`], which every
    /// request reads: their layout stays as it was.
    pub(crate) hooks: Hooks,
}

// === impl Inner ===

impl Inner {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn task(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.task.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn controls(&self) -> MutexGuard<'_, Controls> {
        self.controls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds what every component saw since the last cycle into a
    /// snapshot; keeps and broadcasts it when anything happened.
    pub(crate) fn cycle(&self) -> Arc<Snapshot> {
        let elapsed = self.base.elapsed();
        let Folded {
            components,
            durations,
            calls,
            first_failures,
        } = fold(&self.registry, &self.controls(), self.interval);
        let now_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let cycle = self.cycles.fetch_add(1, Ordering::Relaxed) + 1;
        let mut snapshot = Snapshot {
            cycle,
            observed_at_ms: now_ms,
            components,
            reports: Vec::new(),
            actions: Vec::new(),
            calls,
        };
        let names: Vec<&str> = self
            .registry
            .cells()
            .iter()
            .map(|cell| cell.name.get().map_or("", |c| c.as_str()))
            .collect();
        let (reports, error) = self.analysis.detect(
            &snapshot,
            &first_failures,
            &names,
            &self.calls,
            &self.events,
            now_ms,
        );
        snapshot.reports = reports;
        let actions = self.analysis.react(&snapshot, &self.controls());
        for action in actions {
            if let Some(report) = action.report.and_then(|i| snapshot.reports.get_mut(i)) {
                report.actions.push(action.what.clone());
            }
            snapshot.actions.push(action.what);
        }
        self.publish(Arc::new(snapshot), &durations, error)
    }

    /// Keeps `snapshot` as the latest, its reports, and (when anything
    /// happened) in the history and to the subscribers; adds it to the
    /// totals (with its components' `durations`), logs its reports and
    /// runs the cycle hooks.
    fn publish(
        &self,
        snapshot: Arc<Snapshot>,
        durations: &[DurationHistogram],
        error: Option<String>,
    ) -> Arc<Snapshot> {
        let (totals, hooks) = {
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
            }
            // Copied only while a reader holds the last totals.
            Arc::make_mut(&mut state.totals).add(&snapshot, durations);
            (Arc::clone(&state.totals), state.hooks.clone())
        };
        if !snapshot.is_quiet() {
            // Nobody listening is not an error.
            let _ = self.tx.send(Arc::clone(&snapshot));
        }
        for report in &snapshot.reports {
            trace::report(report);
        }
        let cycle = Cycle {
            snapshot: &snapshot,
            totals: &totals,
        };
        if let Some(error) = hooks.run(&cycle) {
            self.state().last_error = Some(error);
        }
        snapshot
    }

    /// Notes a failed or refused call of component `index` at `at_ms`
    /// (its event `code`): in the component's first failures of the cycle,
    /// and in the ring of recent ones.
    pub(crate) fn note(&self, index: usize, at_ms: u64, code: u8) {
        self.registry.cell(index).first.note(at_ms, code);
        self.events.push(Event {
            at_ms,
            component: index,
            kind: code,
        });
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.task().take() {
            task.abort();
        }
    }
}
