//! `BreakerHandle::throttle`: client-side adaptive throttling of a Closed
//! breaker, `p = max(0, (requests − k × accepts) / (requests + 1))`.
//!
//! Paused clock. The inner service answers at once, succeeding or failing
//! as the test says, and counts the calls that reach it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reflex_breaker::{BreakerHandle, CircuitBreakBuilder, CircuitBreakLayer};
use reflex_core::{BoxError, BreakerControl, ConfigErrorKind, RejectKind, Rejected};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

/// A breaker guarding "db" whose own rules never trip in these tests, so
/// that only the throttle refuses.
fn never_trips() -> CircuitBreakBuilder {
    CircuitBreakLayer::builder()
        .component("db")
        .consecutive_failures(u32::MAX)
}

/// A breaker around a service that fails the calls `fails(n)` says (`n`:
/// the calls that reached it before), and counts the calls that reach it.
fn breaker(
    builder: CircuitBreakBuilder,
    fails: impl Fn(u64) -> bool + Clone + Send + 'static,
) -> (
    impl Service<(), Response = (), Error = BoxError>,
    BreakerHandle,
    Arc<AtomicU64>,
) {
    let layer = builder.build().expect("valid");
    let handle = layer.handle();
    let reached = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&reached);
    let svc = layer.layer(service_fn(move |()| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let failed = fails(n);
        async move {
            if failed {
                Err::<(), BoxError>("db down".into())
            } else {
                Ok(())
            }
        }
    }));
    (svc, handle, reached)
}

/// What became of a call.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Ok,
    Failed,
    Throttled,
}

async fn call(svc: &mut impl Service<(), Response = (), Error = BoxError>) -> Ended {
    match svc.ready().await.expect("ready").call(()).await {
        Ok(()) => Ended::Ok,
        Err(err) => match Rejected::find(&*err) {
            None => Ended::Failed,
            Some(rejected) => {
                assert_eq!(rejected.kind(), RejectKind::Throttled, "{rejected}");
                assert_eq!(rejected.component().as_str(), "db");
                assert_eq!(rejected.retry_after(), Some(Duration::from_millis(250)));
                Ended::Throttled
            }
        },
    }
}

/// `true` for the calls of a steady `ratio` of failures, spread evenly
/// (the first call succeeds unless the ratio is 1).
fn spread(ratio: f64) -> impl Fn(u64) -> bool + Clone + Send + 'static {
    move |n| ((n + 1) as f64 * ratio).floor() > (n as f64 * ratio).floor()
}

/// Runs `calls` calls one millisecond apart (the throttle's window, two
/// seconds, holds about 2 000 of them and slides), each at the
/// probability the handle reports just before it, and checks that the
/// number throttled is the sum of those probabilities, within six standard
/// deviations (and a few calls). Returns how many were throttled.
async fn throttled_as_the_formula_says(ratio: f64, k: f64, calls: u32) -> u64 {
    let (mut svc, handle, reached) = breaker(never_trips(), spread(ratio));
    handle.throttle(Some(k)).expect("a valid k");
    let (mut expected, mut variance, mut throttled) = (0.0, 0.0, 0u64);
    for _ in 0..calls {
        let p = handle.metrics().throttle_probability.expect("throttling");
        expected += p;
        variance += p * (1.0 - p);
        if call(&mut svc).await == Ended::Throttled {
            throttled += 1;
        }
        advance(Duration::from_millis(1)).await;
    }
    let bound = variance.sqrt().mul_add(6.0, 6.0);
    assert!(
        (throttled as f64 - expected).abs() <= bound,
        "{:.0}% failures, k = {k}: {throttled} throttled, the formula says {expected:.1} ± {bound:.1}",
        ratio * 100.0
    );
    let metrics = handle.metrics();
    assert_eq!(metrics.throttled_total, throttled);
    assert_eq!(
        reached.load(Ordering::Relaxed) + throttled,
        u64::from(calls)
    );
    throttled
}

#[tokio::test(start_paused = true)]
async fn throttle_refuses_as_the_formula_says_at_any_failure_ratio() {
    const CALLS: u32 = 6_000;
    for k in [1.0, 1.5, 2.0, 4.0] {
        // No failure: nothing is ever refused.
        assert_eq!(throttled_as_the_formula_says(0.0, k, CALLS).await, 0);
        // Every call failing: all but a trickle are refused.
        let all = throttled_as_the_formula_says(1.0, k, CALLS).await;
        assert!(all > u64::from(CALLS) * 95 / 100, "k = {k}: {all}");
    }
    // More than 1/k succeed: after the first calls, nothing is refused.
    assert!(throttled_as_the_formula_says(0.25, 2.0, CALLS).await < 5);
    assert!(throttled_as_the_formula_says(0.6, 4.0, CALLS).await < 5);
    // Fewer than 1/k succeed: about 1 − k × a of the calls are refused,
    // a steady share, however long it lasts (the refusals do not feed the
    // rule).
    for (failures, k, share) in [(0.25, 1.0, 0.25), (0.6, 2.0, 0.2), (0.25, 1.31, 0.0175)] {
        let refused = throttled_as_the_formula_says(failures, k, CALLS).await;
        let expected = share * f64::from(CALLS);
        assert!(
            (refused as f64 - expected).abs() <= expected.mul_add(0.25, 20.0),
            "k = {k}, {failures}: {refused} refused, about {expected:.0} expected"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn throttle_admits_every_call_while_none_fails() {
    let (mut svc, handle, reached) = breaker(never_trips(), |_| false);
    handle.throttle(Some(1.0)).unwrap();
    for _ in 0..10_000 {
        assert_eq!(call(&mut svc).await, Ended::Ok);
        advance(Duration::from_micros(100)).await;
    }
    assert_eq!(reached.load(Ordering::Relaxed), 10_000);
    assert_eq!(handle.metrics().throttled_total, 0);
    assert_eq!(handle.metrics().throttle_probability, Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn throttle_none_turns_it_off() {
    let (mut svc, handle, reached) = breaker(never_trips(), |_| true);
    handle.throttle(Some(2.0)).unwrap();
    for _ in 0..100 {
        call(&mut svc).await;
    }
    // Every call failing, p = r / (r + 1) after r admitted: about
    // √(2 × 100) = 14 of 100 get through, a random number (the draws are
    // seeded per thread). 50 would take 1 275 tries on average, so "over
    // half refused" cannot fail by chance, where "over 80" did (20 or
    // more got through in a run of CI).
    let throttled = handle.metrics().throttled_total;
    assert!(throttled > 50, "{throttled}");
    handle.throttle(None).unwrap();
    assert_eq!(handle.metrics().throttle, None);
    assert_eq!(handle.metrics().throttle_probability, None);
    let before = reached.load(Ordering::Relaxed);
    for _ in 0..100 {
        assert_eq!(call(&mut svc).await, Ended::Failed, "every call reaches db");
    }
    assert_eq!(reached.load(Ordering::Relaxed), before + 100);
    assert_eq!(handle.metrics().throttled_total, throttled);
}

#[tokio::test(start_paused = true)]
async fn throttled_calls_do_not_count_as_failures() {
    // Trips on 3 failures in a row, or half of 10 calls failing.
    let builder = CircuitBreakLayer::builder()
        .component("db")
        .consecutive_failures(3)
        .failure_rate(0.5)
        .count_window(10)
        .minimum_calls(10);
    let (mut svc, handle, _) = breaker(builder, |n| n % 3 == 2);
    handle.throttle(Some(1.0)).unwrap();
    let (mut failed, mut throttled) = (0, 0);
    for _ in 0..1_000 {
        match call(&mut svc).await {
            Ended::Failed => failed += 1,
            Ended::Throttled => throttled += 1,
            Ended::Ok => {}
        }
    }
    // k = 1 with a third failing: about a third refused.
    assert!((250..420).contains(&throttled), "{throttled} throttled");
    assert!(failed > 0);
    let metrics = handle.metrics();
    assert_eq!(metrics.state, reflex_core::BreakerState::Closed);
    assert_eq!(metrics.calls, 10, "the window holds admitted calls only");
    assert!(metrics.failures <= 4, "a third of admitted calls fail");
    assert!(metrics.consecutive_failures <= 1);
    assert_eq!(metrics.rejected_total, 0, "throttled apart from open");
}

#[tokio::test(start_paused = true)]
async fn throttle_refuses_k_below_one_or_not_finite_and_keeps_its_setting() {
    let (_, handle, _) = breaker(never_trips(), |_| false);
    handle.throttle(Some(3.0)).unwrap();
    for k in [0.999, 0.0, -2.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = handle.throttle(Some(k)).expect_err("refused");
        assert_eq!(err.kind(), ConfigErrorKind::OutOfRange, "{k}");
        assert_eq!(err.setting(), "throttle");
        assert_eq!(handle.metrics().throttle, Some(3.0), "left as it was");
    }
    handle
        .throttle(Some(f64::MAX))
        .expect("finite and at least 1");
    let control: &dyn BreakerControl = &handle;
    assert!(control.throttle(Some(0.5)).is_err());
    control.throttle(None).unwrap();
    assert_eq!(handle.metrics().throttle, None);
}

#[tokio::test(start_paused = true)]
async fn only_a_closed_breaker_throttles_and_the_setting_outlasts_a_trip() {
    let (mut svc, handle, _) = breaker(never_trips().open_duration(Duration::from_secs(1)), |n| {
        n < 50
    });
    handle.throttle(Some(2.0)).unwrap();
    for _ in 0..50 {
        call(&mut svc).await;
    }
    assert!(handle.metrics().throttle_probability.unwrap() > 0.5);
    // Set by hand: every call through, none throttled.
    handle.metrics_only();
    let throttled = handle.metrics().throttled_total;
    for _ in 0..50 {
        assert_ne!(call(&mut svc).await, Ended::Throttled);
    }
    assert_eq!(handle.metrics().throttled_total, throttled);
    // Tripped, then closed again by a probe: still throttling, on a window
    // that has moved on.
    handle.reset();
    handle.trip();
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(
        Rejected::find(&*err).unwrap().kind(),
        RejectKind::CircuitOpen
    );
    advance(Duration::from_secs(3)).await;
    assert_eq!(call(&mut svc).await, Ended::Ok, "the probe");
    assert_eq!(handle.metrics().throttle, Some(2.0));
    assert_eq!(handle.metrics().throttle_probability, Some(0.0));
}
