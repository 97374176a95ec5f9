//! Echoes: a failure of a call during which a call below it failed is the
//! echo of that failure, and counts as the component's own success unless
//! `count_echoes()`.
//!
//! The request is given a [`Frame`] as a witness layer would; the inner
//! service plays "auth" calling "db" below it, and db's call fails or not.

use std::time::Duration;

use reflex_breaker::{BreakerHandle, CircuitBreakBuilder, CircuitBreakLayer, KeyedBreakerHandle};
use reflex_core::origin::{self, Frame, Scoped};
use reflex_core::{BoxError, BreakerState, RejectKind, Rejected};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

/// How auth's request goes.
#[derive(Debug, Clone, Copy)]
enum Auth {
    /// Its call to db fails, and so does it: an echo.
    FailsBecauseDbFailed,
    /// Its call to db succeeds, and it fails on its own.
    FailsOnItsOwn,
    /// Its call to db fails, but it copes and succeeds.
    CopesWithDbFailing,
    Succeeds,
}

/// auth's handler: calls db below, then answers.
async fn auth(how: Auth) -> Result<u32, BoxError> {
    let db = Frame::start(1, 0);
    let db_failed = matches!(how, Auth::FailsBecauseDbFailed | Auth::CopesWithDbFailing);
    tokio::task::yield_now().await;
    origin::end_below(db.origin(), 0, db_failed);
    match how {
        Auth::FailsBecauseDbFailed | Auth::FailsOnItsOwn => Err("auth failed".into()),
        Auth::CopesWithDbFailing | Auth::Succeeds => Ok(7),
    }
}

/// Trips on 3 failures in a row.
fn builder() -> CircuitBreakBuilder {
    CircuitBreakLayer::builder()
        .component("auth")
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(10))
}

/// Sends one request through `svc` inside a request frame, as a witness
/// layer above the breaker would.
async fn request<S>(svc: &mut S, how: Auth) -> Result<u32, BoxError>
where
    S: Service<Auth, Response = u32, Error = BoxError>,
{
    let svc = svc.ready().await.expect("ready");
    let mut frame = Frame::start(0, 0);
    let future = frame.enter(|| svc.call(how));
    Scoped::new(frame, future).await
}

fn plain(
    builder: CircuitBreakBuilder,
) -> (
    impl Service<Auth, Response = u32, Error = BoxError>,
    BreakerHandle,
) {
    let layer = builder.build().expect("valid");
    let handle = layer.handle();
    (layer.layer(service_fn(auth)), handle)
}

/// As [`plain`], with one breaker per key: every request's key is "auth-1".
fn keyed(
    builder: CircuitBreakBuilder,
) -> (
    impl Service<Auth, Response = u32, Error = BoxError>,
    KeyedBreakerHandle<&'static str>,
) {
    let layer = builder
        .key(|_: &Auth| Some("auth-1"))
        .max_keys(8)
        .build()
        .expect("valid");
    let handle = layer.handle();
    (layer.layer(service_fn(auth)), handle)
}

#[tokio::test(start_paused = true)]
async fn echoes_of_a_failure_below_do_not_trip_the_breaker_while_as_many_own_failures_do() {
    let (mut svc, handle) = plain(builder());
    for _ in 0..10 {
        let err = request(&mut svc, Auth::FailsBecauseDbFailed)
            .await
            .unwrap_err();
        assert!(Rejected::find(&*err).is_none(), "the echo passes through");
    }
    let metrics = handle.metrics();
    assert_eq!(metrics.state, BreakerState::Closed);
    assert_eq!(metrics.consecutive_failures, 0, "an echo is no failure");

    for _ in 0..3 {
        request(&mut svc, Auth::FailsOnItsOwn).await.unwrap_err();
    }
    assert_eq!(
        handle.state(),
        BreakerState::Open,
        "its own failures trip it"
    );
}

#[tokio::test(start_paused = true)]
async fn a_victim_s_few_own_failures_among_many_echoes_make_no_failure_rate() {
    // A failure-rate breaker: half its last 20 calls, 10 at least.
    let (mut svc, handle) = plain(
        CircuitBreakLayer::builder()
            .component("auth")
            .failure_rate(0.5)
            .count_window(20)
            .minimum_calls(10)
            .open_duration(Duration::from_secs(10)),
    );
    // db is down: 99 echoes for each of auth's own failures (its usual
    // 1%), over many windows.
    for n in 0..2_000 {
        let how = if n % 100 == 0 {
            Auth::FailsOnItsOwn
        } else {
            Auth::FailsBecauseDbFailed
        };
        request(&mut svc, how).await.unwrap_err();
    }
    assert_eq!(
        handle.state(),
        BreakerState::Closed,
        "{:?}",
        handle.metrics()
    );
}

#[tokio::test(start_paused = true)]
async fn an_echo_counts_as_the_component_s_own_success() {
    let (mut svc, handle) = plain(builder());
    request(&mut svc, Auth::FailsOnItsOwn).await.unwrap_err();
    request(&mut svc, Auth::FailsOnItsOwn).await.unwrap_err();
    request(&mut svc, Auth::FailsBecauseDbFailed)
        .await
        .unwrap_err();
    assert_eq!(
        handle.metrics().consecutive_failures,
        0,
        "its own part worked: the run of own failures is broken"
    );
    // A success despite a failure below is a success.
    request(&mut svc, Auth::CopesWithDbFailing).await.unwrap();
    assert_eq!(handle.metrics().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn count_echoes_counts_them_as_failures() {
    let (mut svc, handle) = plain(builder().count_echoes());
    for _ in 0..3 {
        request(&mut svc, Auth::FailsBecauseDbFailed)
            .await
            .unwrap_err();
    }
    assert_eq!(handle.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn an_echo_during_a_probe_is_a_successful_probe_of_the_component_s_own_work() {
    let (mut svc, handle) = plain(builder());
    handle.trip();
    advance(Duration::from_secs(10)).await;
    request(&mut svc, Auth::FailsBecauseDbFailed)
        .await
        .unwrap_err();
    assert_eq!(handle.state(), BreakerState::Closed, "not re-opened by db");
}

#[tokio::test(start_paused = true)]
async fn a_failure_below_before_the_call_started_makes_no_echo() {
    let (mut svc, handle) = plain(builder());
    let mut frame = Frame::start(0, 0);
    let svc = svc.ready().await.unwrap();
    let future = frame.enter(|| {
        // An earlier call of the same request failed, before this one.
        let earlier = Frame::start(1, 0);
        origin::end_below(earlier.origin(), 0, true);
        svc.call(Auth::FailsOnItsOwn)
    });
    Scoped::new(frame, future).await.unwrap_err();
    assert_eq!(handle.metrics().consecutive_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_that_ends_in_another_request_than_it_started_in_makes_no_echo() {
    let (mut svc, handle) = plain(builder());
    let svc = svc.ready().await.unwrap();
    // Started where no call below has failed (as behind a buffer whose
    // worker has no frame)…
    let mut started_in = Frame::start(0, 0);
    let future = started_in.enter(|| svc.call(Auth::FailsOnItsOwn));
    // …and polled to its end in a request that has a failed call below.
    let mut polled_in = Frame::start(0, 0);
    polled_in.enter(|| {
        let earlier = Frame::start(1, 0);
        origin::end_below(earlier.origin(), 0, true);
    });
    Scoped::new(polled_in, future).await.unwrap_err();
    assert_eq!(handle.metrics().consecutive_failures, 1, "its own failure");
}

#[tokio::test(start_paused = true)]
async fn the_keyed_breaker_ignores_echoes_too() {
    let (mut svc, handle) = keyed(builder());
    for _ in 0..10 {
        request(&mut svc, Auth::FailsBecauseDbFailed)
            .await
            .unwrap_err();
    }
    let breaker = handle.get(&"auth-1").expect("kept");
    assert_eq!(breaker.state(), BreakerState::Closed);
    for _ in 0..3 {
        request(&mut svc, Auth::FailsOnItsOwn).await.unwrap_err();
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    let err = request(&mut svc, Auth::Succeeds).await.unwrap_err();
    assert_eq!(
        Rejected::find(&*err).unwrap().kind(),
        RejectKind::CircuitOpen
    );
}

#[tokio::test(start_paused = true)]
async fn the_keyed_breaker_counts_echoes_when_asked() {
    let (mut svc, handle) = keyed(builder().count_echoes());
    for _ in 0..3 {
        request(&mut svc, Auth::FailsBecauseDbFailed)
            .await
            .unwrap_err();
    }
    assert_eq!(handle.get(&"auth-1").unwrap().state(), BreakerState::Open);
}
