//! Trip rules: the default failure rate applies only when no rule was
//! chosen; choosing any rule replaces it; rules chosen together all apply.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reflex_breaker::{CircuitBreakBuilder, CircuitBreakLayer};
use reflex_core::signal::Recorder;
use reflex_core::{BoxError, BreakerState, Signal, TransitionReason};
use tower::{Layer, Service, ServiceExt, service_fn};

/// Three failures in every five calls (60%), never more than two in a row:
/// failure, failure, success, failure, success, and again.
fn sixty_percent(call: usize) -> bool {
    matches!(call % 5, 0 | 1 | 3)
}

/// Runs `calls` calls through a breaker built by `builder` around a service
/// failing as `fails` says of each call it gets. Returns the breaker's state
/// and the reasons of its transitions.
async fn run(
    builder: CircuitBreakBuilder,
    calls: usize,
    fails: fn(usize) -> bool,
) -> (BreakerState, Vec<TransitionReason>) {
    let recorder = Arc::new(Recorder::default());
    let layer = builder
        .component("db")
        .open_duration(Duration::from_secs(3600))
        .sink(recorder.clone())
        .build()
        .expect("valid");
    let handle = layer.handle();
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let mut svc = layer.layer(service_fn(move |()| {
        let fail = fails(counter.fetch_add(1, Ordering::Relaxed));
        async move {
            if fail {
                Err::<(), BoxError>("down".into())
            } else {
                Ok(())
            }
        }
    }));
    for _ in 0..calls {
        let _ = svc.ready().await.unwrap().call(()).await;
    }
    let reasons = recorder
        .signals()
        .into_iter()
        .map(|(_, signal)| match signal {
            Signal::BreakerTransition { reason, .. } => reason,
            other => panic!("not a transition: {other:?}"),
        })
        .collect();
    (handle.state(), reasons)
}

#[tokio::test]
async fn a_breaker_given_only_consecutive_failures_does_not_trip_on_a_sixty_percent_failure_rate() {
    let builder = CircuitBreakLayer::builder().consecutive_failures(3);
    let (state, reasons) = run(builder, 500, sixty_percent).await;
    assert_eq!(state, BreakerState::Closed);
    assert!(
        reasons.is_empty(),
        "the default failure rate is replaced, not added: {reasons:?}"
    );
}

#[tokio::test]
async fn consecutive_failures_and_a_failure_rate_chosen_together_both_apply() {
    // The rate trips on the 60%, once 20 calls are in the window.
    let both = || {
        CircuitBreakLayer::builder()
            .consecutive_failures(3)
            .failure_rate(0.5)
    };
    let (state, reasons) = run(both(), 500, sixty_percent).await;
    assert_eq!(state, BreakerState::Open);
    assert_eq!(reasons, [TransitionReason::FailureRate]);
    // And three failures in a row trip it before the window fills.
    let (state, reasons) = run(both(), 3, |_| true).await;
    assert_eq!(state, BreakerState::Open);
    assert_eq!(reasons, [TransitionReason::ConsecutiveFailures]);
}

#[tokio::test]
async fn with_no_rule_chosen_the_default_failure_rate_trips() {
    let (state, reasons) = run(CircuitBreakLayer::builder(), 500, sixty_percent).await;
    assert_eq!(state, BreakerState::Open);
    assert_eq!(reasons, [TransitionReason::FailureRate]);
    // 19 calls, all failing: below the default minimum of 20 calls.
    let (state, _) = run(CircuitBreakLayer::builder(), 19, |_| true).await;
    assert_eq!(state, BreakerState::Closed);
}

#[tokio::test]
async fn a_breaker_given_only_a_slow_call_rate_does_not_trip_on_fast_failures() {
    let builder = CircuitBreakLayer::builder().slow_calls(0.5, Duration::from_secs(1));
    let (state, reasons) = run(builder, 500, |_| true).await;
    assert_eq!(state, BreakerState::Closed);
    assert!(reasons.is_empty(), "{reasons:?}");
}

#[tokio::test]
async fn a_failure_rate_chosen_alone_does_not_trip_on_failures_in_a_row_below_its_minimum() {
    let builder = CircuitBreakLayer::builder()
        .failure_rate(0.5)
        .minimum_calls(50);
    let (state, _) = run(builder, 49, |_| true).await;
    assert_eq!(state, BreakerState::Closed);
    let builder = CircuitBreakLayer::builder()
        .failure_rate(0.5)
        .minimum_calls(50);
    let (state, reasons) = run(builder, 50, |_| true).await;
    assert_eq!(state, BreakerState::Open);
    assert_eq!(reasons, [TransitionReason::FailureRate]);
}
