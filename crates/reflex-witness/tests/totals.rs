//! The totals: every cycle's counts added up, per component, with the
//! fixed-bucket duration histogram, the last cycle's gauges, and the
//! reports by kind; and the cycle hooks that hand them to an export.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reflex_core::{
    BoxError, BreakerState, Component, RejectKind, RetryReason, ShedControl, Signal, SignalSink,
};
use reflex_tests::traffic::{self, Ask, Breaker, Shed, Stack};
use reflex_witness::{
    ComponentState, DURATION_BOUNDS, DetectionKind, Detector, Finding, Observation, Snapshot,
    Totals, Witness,
};
use tower::{Layer, ServiceExt, service_fn};

/// A witness on tokio's clock, with no runtime.
fn witness() -> Witness {
    Witness::builder()
        .clock(reflex_witness::Clock::Tokio)
        .build()
        .unwrap()
}

/// Reports `db` as a finding in every cycle whose number is even.
struct EvenCycles;

impl Detector for EvenCycles {
    fn name(&self) -> &str {
        "even"
    }

    fn inspect(&mut self, seen: &Observation<'_>) -> Result<Vec<Finding>, BoxError> {
        Ok(if seen.snapshot.cycle % 2 == 0 {
            vec![Finding::new("even", vec!["db".to_owned()], "an even cycle")]
        } else {
            Vec::new()
        })
    }
}

/// The sum of a per-cycle count over the snapshots.
fn sum(snapshots: &[Arc<Snapshot>], name: &str, count: impl Fn(&ComponentState) -> u64) -> u64 {
    snapshots
        .iter()
        .filter_map(|s| s.component(name))
        .map(count)
        .sum()
}

/// A count of one cycle's component state.
type Count = fn(&ComponentState) -> u64;

/// Every counter of `name` in `totals` is the sum of its cycles'.
fn assert_adds_up(totals: &Totals, snapshots: &[Arc<Snapshot>], name: &str) {
    let t = totals.component(name).unwrap();
    let counters: [(&str, u64, Count); 9] = [
        ("succeeded", t.succeeded, |c| c.succeeded),
        ("failed", t.failed, |c| c.failed),
        ("own_failed", t.own_failed, |c| c.own_failed),
        ("ignored", t.ignored, |c| c.ignored),
        ("cancelled", t.cancelled, |c| c.cancelled),
        ("shed", t.shed, |c| c.shed),
        ("retries", t.retries, |c| c.retries),
        ("retry_budget_exhausted", t.retry_budget_exhausted, |c| {
            c.retry_budget_exhausted
        }),
        ("coalesced", t.coalesced, |c| c.coalesced),
    ];
    for (what, total, count) in counters {
        assert_eq!(total, sum(snapshots, name, count), "{name}: {what}");
    }
    for kind in &t.rejected {
        let per_cycle = sum(snapshots, name, |c| {
            c.rejected
                .iter()
                .filter(|(k, _)| k == kind.kind)
                .map(|(_, n)| *n)
                .sum()
        });
        assert_eq!(kind.count, per_cycle, "{name}: rejected {}", kind.kind);
    }
    assert_eq!(
        t.duration.count(),
        sum(snapshots, name, |c| c.succeeded + c.failed),
        "{name}: durations"
    );
    let last = snapshots.last().unwrap().component(name).unwrap();
    assert_eq!(t.in_flight, last.in_flight, "{name}: in flight");
    assert_eq!(
        t.breaker.map(BreakerState::as_str),
        last.breaker.as_deref(),
        "{name}: breaker"
    );
    assert_eq!(t.shed_limit, last.shed_limit, "{name}: shed limit");
    assert_eq!(t.slot_queue_depth, last.slot_queue_depth as u64);
}

#[tokio::test(start_paused = true)]
async fn the_totals_add_up_every_cycle_of_every_component_with_each_outcome() {
    let witness = Witness::builder()
        .clock(reflex_witness::Clock::Tokio)
        .detector(EvenCycles)
        .build()
        .unwrap();
    let Stack { db, api } = traffic::stack(&witness);
    witness.control_breaker("db", Breaker(BreakerState::HalfOpen));
    let limit = Arc::new(Shed::new(64));
    witness.control("api", reflex_core::Control::Shed(limit.clone()));
    let signal = |name: &str, signal| witness.emit(&Component::new(name), signal);

    let mut snapshots = Vec::new();
    for cycle in 1..=4u64 {
        for ask in [
            Ask::Ok(2),
            Ask::Ok(30),
            Ask::Ok(400),
            Ask::Fail(3_000),
            Ask::NotFound,
            Ask::Refused(RejectKind::Shed),
            Ask::Refused(RejectKind::CircuitOpen),
        ] {
            let _ = api.clone().oneshot(ask).await;
        }
        // db alone: a slow success and a refusal of its own stack.
        let _ = db.clone().oneshot(Ask::Ok(12_000)).await;
        let _ = db.clone().oneshot(Ask::Refused(RejectKind::SlotBusy)).await;
        // One cancelled.
        let mut dropped = tokio_test::task::spawn(db.clone().oneshot(Ask::Ok(60_000)));
        assert!(dropped.poll().is_pending());
        drop(dropped);
        // And in the last cycle, one in flight across it.
        let held = (cycle == 4).then(|| {
            let mut held = tokio_test::task::spawn(db.clone().oneshot(Ask::Ok(60_000)));
            assert!(held.poll().is_pending());
            held
        });
        signal(
            "db",
            Signal::Shed {
                in_flight: 1,
                hard_limit: 1,
            },
        );
        signal("db", Signal::Coalesced { waiters: 2 });
        signal(
            "api",
            Signal::RetryAttempt {
                attempt: 2,
                delay: Duration::ZERO,
                reason: RetryReason::Error,
            },
        );
        signal("api", Signal::RetryBudgetExhausted { attempt: 3 });
        signal("db", Signal::SlotQueued { depth: 1 });
        if cycle == 3 {
            // A component met late.
            signal("cache", Signal::Coalesced { waiters: 2 });
            limit.set_hard_limit(32).unwrap();
        }
        snapshots.push(witness.cycle_now());
        drop(held);
    }

    let totals = witness.totals();
    assert_eq!(totals.cycles, 4);
    let names: Vec<&str> = totals
        .components
        .iter()
        .map(|c| c.component.as_str())
        .collect();
    assert_eq!(names, ["db", "api", "cache"]);
    for name in names {
        assert_adds_up(&totals, &snapshots, name);
    }

    // db, by hand: per cycle 3 successes through api and one alone, a
    // failure, an ignored, a cancelled, and three refusals (nothing below
    // db failed: they count as its stack's).
    let db = totals.component("db").unwrap();
    assert_eq!((db.succeeded, db.failed, db.own_failed), (16, 4, 4));
    assert_eq!((db.ignored, db.cancelled), (4, 4));
    assert_eq!(db.rejected_of("shed"), 4);
    assert_eq!(db.rejected_of("circuit_open"), 4);
    assert_eq!(db.rejected_of("slot_busy"), 4);
    assert_eq!(db.rejected_of("replaced"), 0);
    assert_eq!(db.rejected_total(), 12);
    assert_eq!(db.ended(), 16 + 4 + 4 + 4 + 12);
    assert_eq!((db.shed, db.coalesced, db.slot_queue_depth), (4, 4, 4));
    assert_eq!(db.in_flight, 1);
    assert_eq!(db.breaker, Some(BreakerState::HalfOpen));
    assert_eq!(db.shed_limit, None);
    // 2 ms, 30 ms, 400 ms, 3 s (the failure) and 12 s, four times each.
    assert_eq!(db.duration.bounds(), &DURATION_BOUNDS);
    assert_eq!(
        db.duration.counts(),
        [4, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 4]
    );
    assert_eq!(
        db.duration.cumulative(),
        [4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12, 16, 16, 16, 20]
    );
    let truth = 4.0 * (0.002 + 0.030 + 0.4 + 3.0 + 12.0);
    assert!(
        (db.duration.sum() - truth).abs() <= truth / 32.0,
        "{} vs {truth}",
        db.duration.sum()
    );

    // api: every db failure and refusal is an echo of db's.
    let api = totals.component("api").unwrap();
    assert_eq!((api.succeeded, api.failed, api.own_failed), (12, 12, 0));
    assert_eq!(api.rejected_total(), 0);
    assert_eq!((api.retries, api.retry_budget_exhausted), (4, 4));
    assert_eq!(api.shed_limit, Some(32), "the last cycle's limit");
    assert_eq!(api.breaker, None);
    assert_eq!(totals.component("cache").unwrap().coalesced, 1);

    // Cycles 2 and 4 wrote a report each.
    assert_eq!(totals.reports_of("custom"), 2);
    assert_eq!(totals.reports_of("own_error_rate"), 0);
    assert_eq!(totals.reports.len(), 6, "every kind, zero included");
}

#[tokio::test]
async fn totals_are_one_value_per_cycle_and_a_reader_keeps_the_one_it_read() {
    let witness = witness();
    let svc = witness
        .layer("db")
        .build()
        .unwrap()
        .layer(service_fn(|()| async { Ok::<_, BoxError>(()) }));
    svc.clone().oneshot(()).await.unwrap();
    witness.cycle_now();
    let first = witness.totals();
    assert!(
        Arc::ptr_eq(&first, &witness.totals()),
        "the same until a cycle"
    );
    svc.oneshot(()).await.unwrap();
    witness.cycle_now();
    assert_eq!(first.component("db").unwrap().succeeded, 1);
    assert_eq!(witness.totals().component("db").unwrap().succeeded, 2);
}

#[tokio::test]
async fn hooks_see_every_cycle_until_dropped_and_a_panicking_one_stops_no_other() {
    let witness = witness();
    let _db = witness.layer("db").build().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let counting = witness.on_cycle({
        let seen = Arc::clone(&seen);
        let reader = witness.clone();
        move |cycle| {
            // A hook may read the witness: no lock of it is held. (Counted
            // only when it sees its own cycle's totals: an assertion here
            // would be caught as a hook's panic.)
            if Arc::ptr_eq(cycle.totals, &reader.totals())
                && cycle.snapshot.cycle == cycle.totals.cycles
            {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let panicking = witness.on_cycle(|_| panic!("a hook panics (on purpose)"));
    witness.cycle_now();
    witness.cycle_now();
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    assert_eq!(
        witness.last_error().as_deref(),
        Some("a cycle hook panicked")
    );
    drop((counting, panicking));
    witness.cycle_now();
    assert_eq!(seen.load(Ordering::SeqCst), 2, "dropped: no longer called");
}

#[test]
fn each_detection_kind_is_named_as_it_is_serialized() {
    let kinds = [
        DetectionKind::OwnErrorRate,
        DetectionKind::OwnLatencyP50,
        DetectionKind::OwnLatencyP99,
        DetectionKind::NewCallPattern { chain: Vec::new() },
        DetectionKind::SlowCallPattern {
            chain: Vec::new(),
            observed_ms: 1.0,
            usual_ms: 1.0,
        },
        DetectionKind::Custom("mine".to_owned()),
    ];
    let totals = Totals::default();
    for (kind, counted) in kinds.iter().zip(&totals.reports) {
        let json = serde_json::to_value(kind).unwrap();
        let tag = json
            .as_str()
            .map(str::to_owned)
            .or_else(|| json.as_object().and_then(|o| o.keys().next().cloned()))
            .unwrap();
        assert_eq!(kind.as_str(), tag);
        assert_eq!(counted.kind, tag, "the totals list every kind in order");
    }
}
