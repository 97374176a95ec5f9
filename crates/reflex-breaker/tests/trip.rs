//! `BreakerHandle::trip`: opening a breaker from outside, as if its own rule
//! had tripped, so that its half-open probes decide recovery.
//!
//! Paused clock; the inner service is a tower-test mock answered by hand
//! (`common::Harness`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use reflex_breaker::BreakerHandle;
use reflex_core::signal::Recorder;
use reflex_core::{
    BoxError, BreakerControl, BreakerState, RejectKind, Rejected, Signal, TransitionReason,
};
use tokio::time::advance;
use tower::{Layer, Service};

use BreakerState::{Closed, Disabled, ForcedOpen, HalfOpen, MetricsOnly, Open};
use TransitionReason::{Manual, OpenDurationElapsed, ProbeFailed, ProbesSucceeded, Tripped};
use common::{Harness, OPEN_FOR, consecutive, ok};

#[tokio::test(start_paused = true)]
async fn trip_from_closed_opens_and_a_successful_probe_after_the_open_duration_closes_it() {
    let mut h = Harness::new(consecutive(5));
    h.succeed();
    h.breaker.trip();
    assert_eq!(h.state(), Open);
    assert_eq!(
        h.refused().retry_after(),
        Some(OPEN_FOR),
        "open for its configured open duration"
    );

    advance(OPEN_FOR - Duration::from_millis(1)).await;
    h.refused();
    advance(Duration::from_millis(1)).await;
    // The next call is the probe; its success closes the breaker, without
    // anyone resetting it.
    h.succeed();
    assert_eq!(h.state(), Closed);
    assert_eq!(
        h.transitions(),
        [
            (Closed, Open, Tripped),
            (Open, HalfOpen, OpenDurationElapsed),
            (HalfOpen, Closed, ProbesSucceeded),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_after_a_trip_reopens_for_the_grown_open_duration() {
    let mut h = Harness::new(consecutive(5).open_backoff(2.0, Duration::from_secs(60)));
    h.breaker.trip();
    advance(OPEN_FOR).await;
    h.fail(); // the probe reached db, which is still down
    assert_eq!(h.state(), Open);
    assert_eq!(
        h.refused().retry_after(),
        Some(2 * OPEN_FOR),
        "a re-open in a row grows, as after any trip"
    );
    assert_eq!(
        h.transitions(),
        [
            (Closed, Open, Tripped),
            (Open, HalfOpen, OpenDurationElapsed),
            (HalfOpen, Open, ProbeFailed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn trip_leaves_a_state_set_by_hand_as_it_is() {
    let mut h = Harness::new(consecutive(5));
    for (set, state) in [
        (BreakerHandle::force_open as fn(&BreakerHandle), ForcedOpen),
        (BreakerHandle::disable, Disabled),
        (BreakerHandle::metrics_only, MetricsOnly),
    ] {
        set(&h.breaker);
        let transitions = h.metrics().transitions_total;
        h.breaker.trip();
        assert_eq!(h.state(), state);
        assert_eq!(h.metrics().transitions_total, transitions);
    }
    // Still the operator's to end: a forced-open breaker is never probed.
    h.breaker.force_open();
    h.breaker.trip();
    advance(OPEN_FOR * 100).await;
    assert_eq!(h.refused().retry_after(), None);
    assert_eq!(h.state(), ForcedOpen);
    assert!(
        h.transitions()
            .iter()
            .all(|(_, _, reason)| *reason == Manual)
    );
}

#[tokio::test(start_paused = true)]
async fn trip_leaves_an_open_or_half_open_breaker_as_it_is() {
    let mut h = Harness::new(consecutive(5));
    h.breaker.trip();
    advance(OPEN_FOR / 2).await;
    h.breaker.trip();
    assert_eq!(
        h.refused().retry_after(),
        Some(OPEN_FOR / 2),
        "the open deadline did not move"
    );

    advance(OPEN_FOR / 2).await;
    // The probe, left waiting in db.
    let probe = h.start();
    assert_eq!(h.state(), HalfOpen);
    h.breaker.trip();
    assert_eq!(h.state(), HalfOpen, "the probe decides");
    assert_eq!(probe.finish(ok()).unwrap(), 7);
    assert_eq!(h.state(), Closed);
    assert_eq!(h.transitions().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn trip_through_breaker_control_is_the_handles() {
    let h = Harness::new(consecutive(5));
    let control: Arc<dyn BreakerControl> = Arc::new(h.breaker.clone());
    control.trip();
    assert_eq!(control.state(), Open);
    assert_eq!(h.transitions(), [(Closed, Open, Tripped)]);
}

#[tokio::test(start_paused = true)]
async fn trip_opens_one_keyed_breaker_only_and_reports_it_as_keyed() {
    let recorder = Arc::new(Recorder::default());
    let layer = consecutive(5)
        .sink(Arc::clone(&recorder))
        .key(|host: &&'static str| Some(*host))
        .max_keys(16)
        .build()
        .expect("valid");
    let handle = layer.handle();
    let mut svc = layer.layer(tower::service_fn(|host: &'static str| async move {
        Ok::<_, BoxError>(host)
    }));
    for host in ["a", "b"] {
        tower::ServiceExt::ready(&mut svc).await.unwrap();
        svc.call(host).await.unwrap();
    }
    handle.get(&"a").unwrap().trip();
    assert_eq!(handle.get(&"a").unwrap().state(), Open);
    assert_eq!(handle.get(&"b").unwrap().state(), Closed);
    let err = svc.call("a").await.unwrap_err();
    assert_eq!(
        Rejected::find(&*err).unwrap().kind(),
        RejectKind::CircuitOpen
    );
    assert_eq!(svc.call("b").await.unwrap(), "b");
    assert_eq!(
        recorder
            .signals()
            .into_iter()
            .map(|(_, signal)| signal)
            .collect::<Vec<_>>(),
        [Signal::KeyedBreakerTransition {
            from: Closed,
            to: Open,
            reason: Tripped
        }]
    );
}
