//! What the exports' tests share: a witness over `reflex_tests`'s
//! traffic fixture (api calls db), one cycle of every outcome, the names
//! of the outcomes and breaker states, and the series an export is read
//! into.

use std::collections::BTreeMap;
use std::sync::Arc;

use reflex_core::{BoxError, BreakerState, Component, Control, RejectKind, Signal, SignalSink};
use reflex_tests::traffic::{self, Ask, Breaker, Shed, Stack};
use reflex_witness::{Clock, ComponentTotals, Detector, Finding, Observation, Witness};
use tower::ServiceExt;

/// Reports db in the second cycle.
struct Second;

impl Detector for Second {
    fn name(&self) -> &str {
        "second"
    }
    fn inspect(&mut self, seen: &Observation<'_>) -> Result<Vec<Finding>, BoxError> {
        Ok((seen.snapshot.cycle == 2)
            .then(|| Finding::new("second", vec!["db".to_owned()], "the second cycle"))
            .into_iter()
            .collect())
    }
}

/// A witness on tokio's clock that reports db in the second cycle, with
/// api and db on it, db's breaker in `breaker` and api's shed limit 48.
pub(crate) fn witness(breaker: BreakerState) -> (Witness, Stack) {
    let witness = Witness::builder()
        .clock(Clock::Tokio)
        .detector(Second)
        .build()
        .unwrap();
    let stack = traffic::stack(&witness);
    witness.control_breaker("db", Breaker(breaker));
    witness.control("api", Control::Shed(Arc::new(Shed::new(48))));
    (witness, stack)
}

/// Every outcome, signals of the other layers, then a cycle.
pub(crate) async fn cycle(witness: &Witness, stack: &Stack) {
    for ask in [
        Ask::Ok(2),
        Ask::Ok(30),
        Ask::Ok(400),
        Ask::Fail(3_000),
        Ask::NotFound,
        Ask::Refused(RejectKind::Shed),
        Ask::Refused(RejectKind::SlotBusy),
    ] {
        let _ = stack.api.clone().oneshot(ask).await;
    }
    let _ = stack.db.clone().oneshot(Ask::Ok(12_000)).await;
    // One cancelled: polled once (it starts), then dropped.
    let mut cancelled = Box::pin(stack.db.clone().oneshot(Ask::Ok(60_000)));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(cancelled.as_mut().poll(&mut cx).is_pending());
    drop(cancelled);
    let db = Component::new("db");
    witness.emit(
        &db,
        Signal::Shed {
            in_flight: 1,
            hard_limit: 1,
        },
    );
    witness.emit(&db, Signal::Coalesced { waiters: 2 });
    witness.emit(&db, Signal::SlotQueued { depth: 1 });
    // db's fleet link (reflex-redis) went down once and came back.
    witness.emit(&db, Signal::FleetLink { up: false });
    witness.emit(&db, Signal::FleetLink { up: true });
    witness.emit(
        &Component::new("api"),
        Signal::RetryBudgetExhausted { attempt: 2 },
    );
    witness.cycle_now();
}

/// `c`'s requests that ended, by outcome: each outcome's name and count.
pub(crate) fn outcomes(c: &ComponentTotals) -> [(&'static str, u64); 5] {
    [
        ("succeeded", c.succeeded),
        ("failed", c.failed),
        ("ignored", c.ignored),
        ("cancelled", c.cancelled),
        ("rejected", c.rejected_total()),
    ]
}

/// Every breaker state's name, as the exports write it: a series each.
pub(crate) const BREAKER_STATES: [&str; 6] = [
    "closed",
    "open",
    "half_open",
    "forced_open",
    "disabled",
    "metrics_only",
];

/// A series: its metric's name, and its labels (Prometheus) or attributes
/// (OpenTelemetry) by name.
pub(crate) type Series = (String, BTreeMap<String, String>);

/// The series of metric `name` with labels or attributes `attrs`.
pub(crate) fn series(name: &str, attrs: &[(&str, &str)]) -> Series {
    let attrs = attrs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    (name.to_owned(), attrs)
}
