//! The witness: what the layer records, what signals add, and the runtime's
//! snapshots, history, subscription and end.

use std::time::Duration;

use reflex_core::{
    BoxError, BreakerState, Classified, Component, ConfigErrorKind, Handled, LayerBuilder, Outcome,
    RejectKind, Rejected, Signal, SignalSink, Sink, TransitionReason,
};
use reflex_witness::{Clock, ObserveWitnessLayer, StartError, Witness};
use tokio_test::assert_pending;
use tower::{Layer, ServiceExt, service_fn};

#[derive(Debug, Clone, Copy)]
enum Answer {
    Ok,
    Fail,
    NotFound,
    Refused(RejectKind),
}

async fn answer(a: Answer) -> Result<&'static str, BoxError> {
    match a {
        Answer::Ok => Ok("ok"),
        Answer::Fail => Err("down".into()),
        Answer::NotFound => Ok("not found"),
        Answer::Refused(kind) => Err(Rejected::new(kind, Component::new("below")).into()),
    }
}

#[tokio::test]
async fn every_request_ends_once_as_success_failure_ignored_rejected_or_cancelled() {
    let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
    // "not found" counts for nothing.
    let classify = |r: Result<&&str, &BoxError>| match r {
        Ok(&"not found") => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    let layer = witness.layer("api").classifier(classify).build().unwrap();
    let svc = layer.layer(service_fn(answer));
    for a in [
        Answer::Ok,
        Answer::Ok,
        Answer::Fail,
        Answer::NotFound,
        Answer::Refused(RejectKind::Shed),
        Answer::Refused(RejectKind::CircuitOpen),
        Answer::Refused(RejectKind::CircuitOpen),
    ] {
        let _ = svc.clone().oneshot(a).await;
    }
    // One dropped before its end.
    let slow = layer.layer(service_fn(|_: Answer| {
        std::future::pending::<Result<&str, BoxError>>()
    }));
    let mut dropped = tokio_test::task::spawn(slow.oneshot(Answer::Ok));
    assert_pending!(dropped.poll());
    assert_eq!(witness.cycle_now().component("api").unwrap().in_flight, 1);
    drop(dropped);

    let state = witness.cycle_now().component("api").unwrap().clone();
    assert_eq!(state.in_flight, 0);
    assert_eq!(
        (
            state.succeeded,
            state.failed,
            state.ignored,
            state.cancelled
        ),
        (0, 0, 0, 1),
        "the first cycle took the others"
    );
    let first = &witness.history()[0];
    let state = first.component("api").unwrap();
    assert_eq!(state.requests, 8);
    assert_eq!((state.succeeded, state.failed, state.ignored), (2, 1, 1));
    assert_eq!(state.error_rate, 1.0 / 3.0);
    assert_eq!(
        state.rejected,
        vec![("shed".to_owned(), 1), ("circuit_open".to_owned(), 2)]
    );
}

#[tokio::test(start_paused = true)]
async fn latency_percentiles_match_known_inputs() {
    let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
    let svc = witness
        .layer("db")
        .build()
        .unwrap()
        .layer(service_fn(|ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, BoxError>(ms)
        }));
    for ms in 1..=100 {
        svc.clone().oneshot(ms).await.unwrap();
    }
    let snapshot = witness.cycle_now();
    let db = snapshot.component("db").unwrap();
    for (got, expected) in [(db.p50_ms, 50.0), (db.p90_ms, 90.0), (db.p99_ms, 99.0)] {
        let got = got.unwrap();
        assert!(
            (got - expected).abs() <= expected / 16.0,
            "{got} vs {expected}"
        );
    }
}

#[tokio::test]
async fn signals_of_other_layers_land_in_their_component() {
    let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
    let db = Component::new("db");
    witness.emit(
        &db,
        Signal::Shed {
            in_flight: 8,
            hard_limit: 8,
        },
    );
    witness.emit(
        &db,
        Signal::Shed {
            in_flight: 8,
            hard_limit: 8,
        },
    );
    witness.emit(
        &db,
        Signal::BreakerTransition {
            from: BreakerState::Closed,
            to: BreakerState::Open,
            reason: TransitionReason::FailureRate,
        },
    );
    // Two requests join slot queues (of any slot: depth counts all), one
    // leaves.
    witness.emit(&db, Signal::SlotQueued { depth: 3 });
    witness.emit(&db, Signal::SlotQueued { depth: 1 });
    witness.emit(&db, Signal::SlotAbandoned);
    witness.emit(&db, Signal::Coalesced { waiters: 2 });
    witness.emit(
        &Component::new("auth"),
        Signal::RetryAttempt {
            attempt: 2,
            delay: Duration::from_millis(10),
            reason: reflex_core::RetryReason::Error,
        },
    );
    let snapshot = witness.cycle_now();
    let state = snapshot.component("db").unwrap();
    assert_eq!(
        (state.shed, state.coalesced, state.slot_queue_depth),
        (2, 1, 1)
    );
    assert_eq!(state.breaker.as_deref(), Some("open"));
    assert_eq!(snapshot.component("auth").unwrap().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn the_runtime_publishes_each_non_empty_cycle_and_keeps_a_bounded_history() {
    let witness = Witness::builder()
        .clock(Clock::Tokio)
        .interval(Duration::from_secs(1))
        .history_limit(3)
        .start()
        .unwrap();
    assert!(witness.is_running());
    let mut rx = witness.subscribe();
    let svc = witness
        .layer("api")
        .build()
        .unwrap()
        .layer(service_fn(answer));
    for round in 1..=5u64 {
        for _ in 0..round {
            svc.clone().oneshot(Answer::Ok).await.unwrap();
        }
        let snapshot = rx.recv().await.unwrap();
        assert_eq!(snapshot.component("api").unwrap().requests, round);
    }
    // Quiet cycles are not kept.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let history = witness.history();
    assert_eq!(history.len(), 3);
    let requests: Vec<_> = history
        .iter()
        .map(|s| s.component("api").unwrap().requests)
        .collect();
    assert_eq!(requests, vec![3, 4, 5]);
    assert!(witness.latest_snapshot().cycle >= 9, "one cycle a second");
    assert!(witness.latest_snapshot().is_quiet());
    assert_eq!(witness.last_error(), None);
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_stops_the_runtime() {
    let witness = Witness::builder().clock(Clock::Tokio).start().unwrap();
    let mut rx = witness.subscribe();
    drop(witness);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(matches!(
        rx.recv().await,
        Err(tokio::sync::broadcast::error::RecvError::Closed)
    ));
}

#[test]
fn starting_outside_a_runtime_and_bad_settings_are_typed_errors() {
    assert!(matches!(
        Witness::builder().clock(Clock::Tokio).start(),
        Err(StartError::NoRuntime)
    ));
    for (builder, setting) in [
        (
            Witness::builder()
                .clock(Clock::Tokio)
                .interval(Duration::ZERO),
            "interval",
        ),
        (
            Witness::builder().clock(Clock::Tokio).history_limit(0),
            "history_limit",
        ),
        (
            Witness::builder().clock(Clock::Tokio).max_components(0),
            "max_components",
        ),
    ] {
        let err = builder.build().unwrap_err();
        assert_eq!(
            (err.setting(), err.kind()),
            (setting, ConfigErrorKind::Zero)
        );
    }
}

#[test]
fn more_components_than_a_chain_word_can_name_is_refused() {
    let err = Witness::builder()
        .max_components(reflex_witness::MAX_COMPONENTS + 1)
        .build()
        .unwrap_err();
    assert_eq!(
        (err.setting(), err.kind()),
        ("max_components", ConfigErrorKind::OutOfRange)
    );
    assert!(
        Witness::builder()
            .max_components(reflex_witness::MAX_COMPONENTS)
            .build()
            .is_ok()
    );
}

/// A witness on tokio's clock that follows two components at most.
fn two_components_at_most() -> Witness {
    Witness::builder()
        .clock(Clock::Tokio)
        .max_components(2)
        .build()
        .unwrap()
}

#[test]
fn components_beyond_the_bound_are_refused_and_signals_of_them_ignored() {
    let witness = two_components_at_most();
    witness.layer("a").build().unwrap();
    witness.layer("b").build().unwrap();
    assert!(witness.layer("a").build().is_ok(), "a known one is not new");
    let err = witness.layer("c").build().unwrap_err();
    assert_eq!(err.setting(), "max_components");
    witness.emit(&Component::new("d"), Signal::SlotBusy);
    assert_eq!(witness.cycle_now().components.len(), 2);
}

/// What a preset does with every layer: the generic steps of
/// `LayerBuilder` and `Classified`, then the layer's handle.
#[tokio::test]
async fn the_builder_takes_the_stack_classifier_through_the_contract_and_its_handle_is_the_witness()
{
    let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
    // The stack says a 404 is a failure.
    let classify = |r: Result<&u32, &BoxError>| match r {
        Ok(404) | Err(_) => Outcome::Failure,
        Ok(_) => Outcome::Success,
    };
    let builder = Classified::classified_by(ObserveWitnessLayer::builder(&witness), classify);
    let builder = LayerBuilder::component(builder, Component::new("api"));
    let layer = LayerBuilder::build(LayerBuilder::sink(builder, Sink::none())).unwrap();
    let svc = layer.layer(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    svc.clone().oneshot(200).await.unwrap();
    svc.oneshot(404).await.unwrap();
    assert!(layer.control().is_none(), "the witness steers nothing here");
    let snapshot = layer.handle().cycle_now();
    let api = snapshot.component("api").unwrap();
    assert_eq!((api.succeeded, api.failed), (1, 1));
    assert_eq!(
        witness.latest_snapshot().cycle,
        1,
        "the handle is the witness"
    );
}

#[test]
fn snapshots_serialize_to_json() {
    let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
    witness.layer("db").build().unwrap();
    let db = Component::new("db");
    witness.emit(&db, Signal::SlotQueued { depth: 1 });
    witness.emit(
        &db,
        Signal::KeyedBreakerTransition {
            from: BreakerState::Closed,
            to: BreakerState::Open,
            reason: TransitionReason::ConsecutiveFailures,
        },
    );
    let json = serde_json::to_value(&*witness.cycle_now()).unwrap();
    assert_eq!(json["cycle"], 1);
    let db = &json["components"][0];
    assert_eq!(db["component"], "db");
    assert_eq!(db["slot_queue_depth"], 1);
    assert_eq!(db["breaker_keys_opened"], 1);
    assert_eq!(db["breaker"], serde_json::Value::Null);
}

// === slot queue depth and keyed breakers ===

#[test]
fn the_slot_queue_depth_counts_each_leave_and_never_reads_below_zero() {
    let witness = Witness::builder().clock(Clock::Tokio).build().unwrap();
    let jobs = Component::new("jobs");
    let depth = || {
        witness
            .cycle_now()
            .component("jobs")
            .unwrap()
            .slot_queue_depth
    };
    // One slot's queue at depth 2, another's at depth 1: three wait.
    for depth in [1, 2, 1] {
        witness.emit(&jobs, Signal::SlotQueued { depth });
    }
    assert_eq!(depth(), 3);
    witness.emit(&jobs, Signal::SlotStarted { waited: true });
    witness.emit(&jobs, Signal::SlotReplaced { was_running: false });
    witness.emit(&jobs, Signal::SlotAbandoned);
    assert_eq!(depth(), 0);
    // Neither starting at once nor a running request replaced left a queue.
    witness.emit(&jobs, Signal::SlotStarted { waited: false });
    witness.emit(&jobs, Signal::SlotReplaced { was_running: true });
    assert_eq!(depth(), 0);
    // A leave heard before its join (two threads' signals crossing) reads
    // as zero, and the join that follows brings it back to zero, not one.
    witness.emit(&jobs, Signal::SlotAbandoned);
    assert_eq!(depth(), 0);
    witness.emit(&jobs, Signal::SlotQueued { depth: 1 });
    assert_eq!(depth(), 0);
    witness.emit(&jobs, Signal::SlotQueued { depth: 1 });
    assert_eq!(depth(), 1);
}

#[test]
fn keyed_breaker_transitions_take_no_place_and_leave_the_components_breaker_alone() {
    let witness = two_components_at_most();
    witness.layer("hosts").build().unwrap();
    let hosts = Component::new("hosts");
    witness.emit(
        &hosts,
        Signal::BreakerTransition {
            from: BreakerState::Closed,
            to: BreakerState::HalfOpen,
            reason: TransitionReason::Manual,
        },
    );
    let keyed = |from, to| Signal::KeyedBreakerTransition {
        from,
        to,
        reason: TransitionReason::ConsecutiveFailures,
    };
    // 300 keys trip, and 100 of them probe and re-open; one is then forced
    // open, which is no new trip; keys of a component the witness does not
    // follow are not counted, and take no place.
    for _ in 0..300 {
        witness.emit(&hosts, keyed(BreakerState::Closed, BreakerState::Open));
        witness.emit(
            &Component::new("elsewhere"),
            keyed(BreakerState::Closed, BreakerState::Open),
        );
    }
    for _ in 0..100 {
        witness.emit(&hosts, keyed(BreakerState::Open, BreakerState::HalfOpen));
        witness.emit(&hosts, keyed(BreakerState::HalfOpen, BreakerState::Open));
    }
    witness.emit(&hosts, keyed(BreakerState::Open, BreakerState::ForcedOpen));

    let snapshot = witness.cycle_now();
    assert_eq!(snapshot.components.len(), 1, "no key became a component");
    let state = snapshot.component("hosts").unwrap();
    assert_eq!(state.breaker.as_deref(), Some("half_open"), "its own state");
    assert_eq!(state.breaker_keys_opened, 400);
    assert!(!snapshot.is_quiet(), "keys tripping is news");
    assert_eq!(
        witness
            .cycle_now()
            .component("hosts")
            .unwrap()
            .breaker_keys_opened,
        0,
        "counted per cycle"
    );
    assert!(
        witness.layer("api").build().is_ok(),
        "room for a real component"
    );
    assert!(witness.layer("db").build().is_err(), "the bound holds");
}
