//! The observation runtime: one cycle per interval folds what every
//! component saw into a snapshot, runs the detectors and the reflexes, and
//! publishes the result.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock::Source;
use crate::detect::{Detector, Report};
use crate::events::{Event, Events, Ring};
use crate::histogram::Counts;
use crate::patterns::Learner;
use crate::reflex::{Controls, Reflex};
use crate::registry::{REJECT_KINDS, Registry, breaker_state};
use crate::snapshot::{CallEdge, ComponentState, Snapshot};

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
    pub(crate) learner: Option<Mutex<Learner>>,
    /// The judgement of own errors and self time (off: `None`).
    pub(crate) judge: Option<Mutex<crate::episode::Judge>>,
    pub(crate) detectors: Mutex<Vec<Box<dyn Detector>>>,
    pub(crate) reflexes: Mutex<Vec<Box<dyn Reflex>>>,
    pub(crate) controls: Mutex<Controls>,
    pub(crate) report_limit: usize,
    pub(crate) chain_limit: usize,
    pub(crate) base: Instant,
    pub(crate) interval: Duration,
    pub(crate) history_limit: usize,
    pub(crate) state: Mutex<State>,
    pub(crate) tx: broadcast::Sender<Arc<Snapshot>>,
    pub(crate) task: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct State {
    pub(crate) latest: Arc<Snapshot>,
    pub(crate) history: VecDeque<Arc<Snapshot>>,
    pub(crate) reports: VecDeque<Arc<Report>>,
    pub(crate) actions: usize,
    pub(crate) last_error: Option<String>,
}

/// Failed and refused calls kept for causal chains.
pub(crate) const EVENTS: usize = 1024;
/// Finished calls kept between two cycles for the pattern learner.
pub(crate) const CALLS: usize = 1 << 16;

impl Inner {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn task(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.task.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds what every component saw since the last cycle into a
    /// snapshot; keeps and broadcasts it when anything happened.
    pub(crate) fn cycle(&self) -> Arc<Snapshot> {
        let elapsed = self.base.elapsed();
        let controls = self.controls.lock().unwrap_or_else(PoisonError::into_inner);
        let mut first_failures = Vec::new();
        let components: Vec<ComponentState> = self
            .registry
            .cells()
            .iter()
            .enumerate()
            .filter_map(|(index, cell)| {
                let name = cell.name.get()?.clone();
                let take =
                    |counter: &std::sync::atomic::AtomicU64| counter.swap(0, Ordering::Relaxed);
                let mut latency = Counts::new();
                cell.latency.take(&mut latency);
                let succeeded = latency.total();
                // Self times: those recorded apart (requests that waited on
                // calls below, own failures), and the latencies of the
                // successes that waited on nothing.
                let mut self_time = Counts::new();
                cell.self_time.take(&mut self_time);
                let mut waited = Counts::new();
                cell.waited_latency.take(&mut waited);
                self_time.add_less(&latency, &waited);
                let mut failures = Counts::new();
                cell.failed_latency.take(&mut failures);
                let failed = failures.total();
                latency.add(&failures);
                let propagated_failed = take(&cell.propagated).min(failed);
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
                first_failures.extend(cell.first.take().into_iter().map(|(at_ms, kind)| Event {
                    at_ms,
                    component: index,
                    kind,
                }));
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
                    own_failed: failed - propagated_failed,
                    propagated_failed,
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
                    self_p50_ms: self_time.quantile(0.5).map(ms),
                    self_p90_ms: self_time.quantile(0.9).map(ms),
                    self_p99_ms: self_time.quantile(0.99).map(ms),
                    rejected,
                    shed: take(&cell.shed),
                    retries: take(&cell.retries),
                    coalesced: take(&cell.coalesced),
                    breaker: controls
                        .breaker(name.as_str())
                        .map(|breaker| breaker.state())
                        .or_else(|| breaker_state(cell.breaker.load(Ordering::Relaxed)))
                        .map(|s| s.as_str().to_owned()),
                    breaker_keys_opened: take(&cell.keys_opened),
                    slot_queue_depth: cell.slot_queue_depth(),
                })
            })
            .collect();
        drop(controls);
        let calls = self
            .registry
            .edges
            .take()
            .into_iter()
            .filter_map(|edge| {
                let name = |index: usize| {
                    self.registry
                        .cells()
                        .get(index)
                        .and_then(|cell| cell.name.get())
                        .map(|name| name.as_str().to_owned())
                };
                Some(CallEdge {
                    caller: name(edge.caller)?,
                    callee: name(edge.callee)?,
                    calls: edge.calls,
                    failed: edge.failed,
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
            calls,
        };
        let (reports, error) = self.detect(&snapshot, &first_failures, now_ms);
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
