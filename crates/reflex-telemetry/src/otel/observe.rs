//! The observable instruments: counters and gauges whose callbacks read
//! the latest totals when the SDK collects.

use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Meter};
use reflex_core::BreakerState;
use reflex_witness::{ComponentTotals, Totals};

use super::COMPONENT;
use crate::outcomes::outcomes;

/// The totals the callbacks read: the latest a cycle handed over, until
/// the registration ends (`None`).
#[derive(Default)]
pub(super) struct Latest(Mutex<Option<Arc<Totals>>>);

impl Latest {
    pub(super) fn get(&self) -> Option<Arc<Totals>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps `totals` unless newer ones are kept (two cycles run at once)
    /// or the registration ended.
    pub(super) fn offer(&self, totals: &Arc<Totals>) {
        let mut latest = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = latest.as_mut() {
            if totals.cycles >= kept.cycles {
                *kept = Arc::clone(totals);
            }
        }
    }

    pub(super) fn start(&self, totals: Arc<Totals>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(totals);
    }

    pub(super) fn end(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

fn component(c: &ComponentTotals) -> KeyValue {
    KeyValue::new(COMPONENT, c.component.clone())
}

/// A callback observing, for each component of the latest totals, what
/// `observe` finds.
fn per_component<T>(
    latest: &Arc<Latest>,
    observe: impl Fn(&dyn AsyncInstrument<T>, &ComponentTotals) + Send + Sync + 'static,
) -> impl Fn(&dyn AsyncInstrument<T>) + Send + Sync + 'static {
    let latest = Arc::clone(latest);
    move |instrument| {
        if let Some(totals) = latest.get() {
            for c in &totals.components {
                observe(instrument, c);
            }
        }
    }
}

/// A counter of one number of each component.
struct Counter {
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    count: fn(&ComponentTotals) -> u64,
}

/// Builds every observable instrument on `meter`, its callback reading
/// `latest`.
pub(super) fn instruments(meter: &Meter, latest: &Arc<Latest>) {
    meter
        .u64_observable_counter("reflex.requests")
        .with_unit("{request}")
        .with_description("Requests that ended, by outcome.")
        .with_callback(per_component(latest, |instrument, c| {
            for (outcome, count) in outcomes(c) {
                let attributes = [component(c), KeyValue::new("reflex.outcome", outcome)];
                instrument.observe(count, &attributes);
            }
        }))
        .build();
    meter
        .u64_observable_counter("reflex.rejections")
        .with_unit("{request}")
        .with_description("Requests refused by a layer of the stack, by kind.")
        .with_callback(per_component(latest, |instrument, c| {
            for kind in &c.rejected {
                let attributes = [
                    component(c),
                    KeyValue::new("reflex.rejection.kind", kind.kind),
                ];
                instrument.observe(kind.count, &attributes);
            }
        }))
        .build();
    let counter = |name, unit, description, count| Counter {
        name,
        unit,
        description,
        count,
    };
    let counters = [
        counter(
            "reflex.own_failures",
            "{request}",
            "Failed requests of the component's own (none of their calls below failed).",
            |c| c.own_failed,
        ),
        counter(
            "reflex.sheds",
            "{request}",
            "Requests the shed layer refused.",
            |c| c.shed,
        ),
        counter("reflex.retries", "{retry}", "Retries made.", |c| c.retries),
        counter(
            "reflex.retry.budget_exhausted",
            "{retry}",
            "Retries the retry budget refused.",
            |c| c.retry_budget_exhausted,
        ),
        counter(
            "reflex.coalesced",
            "{request}",
            "Requests answered by an identical request's call or the dedup cache.",
            |c| c.coalesced,
        ),
    ];
    for Counter {
        name,
        unit,
        description,
        count,
    } in counters
    {
        meter
            .u64_observable_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(per_component(latest, move |instrument, c| {
                instrument.observe(count(c), &[component(c)]);
            }))
            .build();
    }
    gauges(meter, latest);
    let latest = Arc::clone(latest);
    meter
        .u64_observable_counter("reflex.reports")
        .with_unit("{report}")
        .with_description("Witness reports written, by kind.")
        .with_callback(move |instrument| {
            if let Some(totals) = latest.get() {
                for kind in &totals.reports {
                    instrument.observe(
                        kind.count,
                        &[KeyValue::new("reflex.report.kind", kind.kind)],
                    );
                }
            }
        })
        .build();
}

/// The gauges: levels as of the witness's last cycle.
fn gauges(meter: &Meter, latest: &Arc<Latest>) {
    let level = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    meter
        .i64_observable_up_down_counter("reflex.active_requests")
        .with_unit("{request}")
        .with_description("Requests in flight at the witness's last cycle.")
        .with_callback(per_component(latest, move |instrument, c| {
            instrument.observe(level(c.in_flight), &[component(c)]);
        }))
        .build();
    meter
        .i64_observable_up_down_counter("reflex.slot.pending_requests")
        .with_unit("{request}")
        .with_description(
            "Requests waiting in the component's slot queues at the witness's last cycle.",
        )
        .with_callback(per_component(latest, move |instrument, c| {
            instrument.observe(level(c.slot_queue_depth), &[component(c)]);
        }))
        .build();
    meter
        .u64_observable_gauge("reflex.shed.limit")
        .with_unit("{request}")
        .with_description("The shed layer's hard limit at the witness's last cycle.")
        .with_callback(per_component(latest, |instrument, c| {
            if let Some(limit) = c.shed_limit {
                instrument.observe(limit, &[component(c)]);
            }
        }))
        .build();
    meter
        .u64_observable_gauge("reflex.breaker.state")
        .with_unit("1")
        .with_description(
            "The breaker's state at the witness's last cycle: 1 for the current state, 0 for the others.",
        )
        .with_callback(per_component(latest, |instrument, c| {
            let Some(now) = c.breaker else { return };
            for &state in BreakerState::ALL {
                let attributes = [
                    component(c),
                    KeyValue::new("reflex.breaker.state", state.as_str()),
                ];
                instrument.observe(u64::from(state == now), &attributes);
            }
        }))
        .build();
}
