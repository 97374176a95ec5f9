//! `BreakerHandle::trip`: opening a breaker from outside, as if its own rule
//! had tripped, so that its half-open probes decide recovery.
//!
//! Paused clock; the inner service is a tower-test mock answered by hand.

use std::sync::Arc;
use std::time::Duration;

use reflex_breaker::{BreakerHandle, CircuitBreakBuilder, CircuitBreakLayer};
use reflex_core::signal::Recorder;
use reflex_core::{
    BoxError, BreakerControl, BreakerState, RejectKind, Rejected, Signal, TransitionReason,
};
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::{Layer, Service};
use tower_test::mock;

use BreakerState::{Closed, Disabled, ForcedOpen, HalfOpen, MetricsOnly, Open};
use TransitionReason::{Manual, OpenDurationElapsed, ProbeFailed, ProbesSucceeded, Tripped};

const OPEN_FOR: Duration = Duration::from_secs(10);

/// A breaker guarding "db" that would trip on 5 failures in a row and
/// stays open [`OPEN_FOR`].
fn builder() -> CircuitBreakBuilder {
    CircuitBreakLayer::builder()
        .component("db")
        .consecutive_failures(5)
        .open_duration(OPEN_FOR)
}

type Svc = reflex_breaker::CircuitBreak<mock::Mock<u32, u32>>;

struct Harness {
    svc: mock::Spawn<Svc>,
    inner: mock::Handle<u32, u32>,
    breaker: BreakerHandle,
    recorder: Arc<Recorder>,
}

impl Harness {
    fn new(builder: CircuitBreakBuilder) -> Self {
        let recorder = Arc::new(Recorder::default());
        let layer = builder.sink(Arc::clone(&recorder)).build().expect("valid");
        let breaker = layer.handle();
        let (svc, inner) = mock::spawn_layer(layer);
        Self {
            svc,
            inner,
            breaker,
            recorder,
        }
    }

    /// A call the inner service, if reached, answers with `answer`.
    fn call(&mut self, answer: Result<u32, BoxError>) -> Result<u32, BoxError> {
        assert_ready_ok!(self.svc.poll_ready());
        let mut response = tokio_test::task::spawn(self.svc.call(0));
        if let std::task::Poll::Ready(refused) = response.poll() {
            assert_pending!(self.inner.poll_request(), "refused: not reached");
            return refused;
        }
        let (_, reply) = assert_ready!(self.inner.poll_request()).expect("reached");
        match answer {
            Ok(value) => reply.send_response(value),
            Err(err) => reply.send_error(err),
        }
        assert_ready!(response.poll())
    }

    /// A call that must be refused as open: its rejection.
    fn refused(&mut self) -> Rejected {
        let err = self.call(Ok(7)).expect_err("refused");
        let rejected = Rejected::find(&*err).expect("a rejection").clone();
        assert_eq!(rejected.kind(), RejectKind::CircuitOpen);
        rejected
    }

    fn transitions(&self) -> Vec<(BreakerState, BreakerState, TransitionReason)> {
        self.recorder
            .signals()
            .into_iter()
            .map(|(_, signal)| match signal {
                Signal::BreakerTransition { from, to, reason } => (from, to, reason),
                other => panic!("not a transition: {other:?}"),
            })
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn trip_from_closed_opens_and_a_successful_probe_after_the_open_duration_closes_it() {
    let mut h = Harness::new(builder());
    assert_eq!(h.call(Ok(7)).unwrap(), 7);
    h.breaker.trip();
    assert_eq!(h.breaker.state(), Open);
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
    assert_eq!(h.call(Ok(7)).unwrap(), 7);
    assert_eq!(h.breaker.state(), Closed);
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
    let mut h = Harness::new(builder().open_backoff(2.0, Duration::from_secs(60)));
    h.breaker.trip();
    advance(OPEN_FOR).await;
    let err = h.call(Err("still down".into())).unwrap_err();
    assert!(Rejected::find(&*err).is_none(), "the probe reached db");
    assert_eq!(h.breaker.state(), Open);
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
    let mut h = Harness::new(builder());
    for (set, state) in [
        (BreakerHandle::force_open as fn(&BreakerHandle), ForcedOpen),
        (BreakerHandle::disable, Disabled),
        (BreakerHandle::metrics_only, MetricsOnly),
    ] {
        set(&h.breaker);
        let transitions = h.breaker.metrics().transitions_total;
        h.breaker.trip();
        assert_eq!(h.breaker.state(), state);
        assert_eq!(h.breaker.metrics().transitions_total, transitions);
    }
    // Still the operator's to end: a forced-open breaker is never probed.
    h.breaker.force_open();
    h.breaker.trip();
    advance(OPEN_FOR * 100).await;
    let err = h.call(Ok(7)).unwrap_err();
    assert_eq!(Rejected::find(&*err).unwrap().retry_after(), None);
    assert_eq!(h.breaker.state(), ForcedOpen);
    assert!(
        h.transitions()
            .iter()
            .all(|(_, _, reason)| *reason == Manual)
    );
}

#[tokio::test(start_paused = true)]
async fn trip_leaves_an_open_or_half_open_breaker_as_it_is() {
    let mut h = Harness::new(builder());
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
    assert_ready_ok!(h.svc.poll_ready());
    let mut probe = tokio_test::task::spawn(h.svc.call(0));
    assert_pending!(probe.poll());
    assert_eq!(h.breaker.state(), HalfOpen);
    h.breaker.trip();
    assert_eq!(h.breaker.state(), HalfOpen, "the probe decides");
    let (_, reply) = assert_ready!(h.inner.poll_request()).unwrap();
    reply.send_response(7);
    assert_ready_ok!(probe.poll());
    assert_eq!(h.breaker.state(), Closed);
    assert_eq!(h.transitions().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn trip_through_breaker_control_is_the_handles() {
    let h = Harness::new(builder());
    let control: Arc<dyn BreakerControl> = Arc::new(h.breaker.clone());
    control.trip();
    assert_eq!(control.state(), Open);
    assert_eq!(h.transitions(), [(Closed, Open, Tripped)]);
}

#[tokio::test(start_paused = true)]
async fn trip_opens_one_keyed_breaker_only_and_reports_it_as_keyed() {
    let recorder = Arc::new(Recorder::default());
    let layer = builder()
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
