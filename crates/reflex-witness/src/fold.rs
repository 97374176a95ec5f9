//! Folding: what every component's cell counted since the last cycle,
//! taken (counters swapped to zero) into the cycle's [`ComponentState`]s
//! and [`CallEdge`]s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::controls::Controls;
use crate::durations::DurationHistogram;
use crate::events::{Event, REJECT_KINDS};
use crate::histogram::Counts;
use crate::registry::{Cell, Registry, breaker_state};
use crate::snapshot::CallEdge;
use crate::state::ComponentState;

/// What a cycle took from the registry.
pub(crate) struct Folded {
    /// Every registered component's state over the cycle.
    pub(crate) components: Vec<ComponentState>,
    /// The durations of each component's requests that ended in the
    /// cycle (succeeded or failed), in `components`' order.
    pub(crate) durations: Vec<DurationHistogram>,
    /// The calls between components over the cycle.
    pub(crate) calls: Vec<CallEdge>,
    /// Each component's first failed or refused calls of the cycle.
    pub(crate) first_failures: Vec<Event>,
}

/// Takes what every component counted since the last cycle, `interval`
/// long; the breakers' states are read from `controls` where the witness
/// was given one.
pub(crate) fn fold(registry: &Registry, controls: &Controls, interval: Duration) -> Folded {
    let mut first_failures = Vec::new();
    let (components, durations) = registry
        .cells()
        .iter()
        .enumerate()
        .filter_map(|(index, cell)| {
            let folded = fold_cell(cell, controls, interval)?;
            first_failures.extend(cell.first.take().into_iter().map(|(at_ms, kind)| Event {
                at_ms,
                component: index,
                kind,
            }));
            Some((folded.state, folded.durations))
        })
        .unzip();
    let name = |index: usize| {
        registry
            .cells()
            .get(index)
            .and_then(|cell| cell.name.get())
            .map(|name| name.as_str().to_owned())
    };
    let calls = registry
        .edges
        .take()
        .into_iter()
        .filter_map(|edge| {
            Some(CallEdge {
                caller: name(edge.caller)?,
                callee: name(edge.callee)?,
                calls: edge.calls,
                failed: edge.failed,
            })
        })
        .collect();
    Folded {
        components,
        durations,
        calls,
        first_failures,
    }
}

/// One component's cycle.
struct FoldedCell {
    state: ComponentState,
    durations: DurationHistogram,
}

/// One component's state over the cycle; `None` for a cell not named yet.
fn fold_cell(cell: &Cell, controls: &Controls, interval: Duration) -> Option<FoldedCell> {
    let name = cell.name.get()?.clone();
    let take = |counter: &AtomicU64| counter.swap(0, Ordering::Relaxed);
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
    let mut durations = DurationHistogram::default();
    durations.add_counts(&latency);
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
    let state = ComponentState {
        component: name.as_str().to_owned(),
        in_flight: in_flight.max(0).unsigned_abs(),
        requests: started,
        throughput: started as f64 / interval.as_secs_f64(),
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
        retry_budget_exhausted: u64::from(cell.budget_exhausted.swap(0, Ordering::Relaxed)),
        coalesced: take(&cell.coalesced),
        breaker: controls
            .breaker(name.as_str())
            .map(|breaker| breaker.state())
            .or_else(|| breaker_state(cell.breaker.load(Ordering::Relaxed)))
            .map(|s| s.as_str().to_owned()),
        breaker_keys_opened: take(&cell.keys_opened),
        slot_queue_depth: cell.slot_queue_depth(),
        fleet_link_up: match cell.fleet_link.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        },
        fleet_link_downs: u64::from(cell.fleet_link_downs.swap(0, Ordering::Relaxed)),
        shed_limit: controls
            .shed(name.as_str())
            .map(|shed| u64::try_from(shed.hard_limit()).unwrap_or(u64::MAX)),
    };
    Some(FoldedCell { state, durations })
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}
