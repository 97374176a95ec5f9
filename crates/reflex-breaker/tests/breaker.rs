//! Public behaviour of `CircuitBreakLayer`.
//!
//! Every test runs on a paused tokio clock and drives the breaker through a
//! tower-test mock whose calls it answers by hand (`common::Harness`), so
//! which calls succeed, fail or hang, and how long they take, is the test's
//! to say.

mod common;

use std::time::Duration;

use proptest::prelude::*;
use reflex_breaker::{
    CircuitBreakBuilder, CircuitBreakLayer, MAX_WINDOW_BUCKETS, MAX_WINDOW_CALLS, ManualStateError,
};
use reflex_core::{
    BoxError, BreakerState, Classify, Component, ConfigError, ConfigErrorKind, Outcome, RejectKind,
    Rejected, Signal, TransitionReason,
};
use reflex_tests::support::block_on_paused;
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

use BreakerState::{Closed, Disabled, ForcedOpen, HalfOpen, MetricsOnly, Open};
use TransitionReason::{
    ConsecutiveFailures, FailureRate, HalfOpenTimeout, Manual, OpenDurationElapsed, ProbeFailed,
    ProbesSucceeded, SlowCallRate,
};
use common::{Harness, OPEN_FOR, builder, consecutive, down, ok};

// === helpers ===

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Trips when half of the last 10 calls failed, once 4 are in the window.
fn rate() -> CircuitBreakBuilder {
    builder()
        .failure_rate(0.5)
        .count_window(10)
        .minimum_calls(4)
}

/// Trips a `consecutive(1)` breaker with one failure and lets its open
/// duration pass: the next call is a probe.
async fn trip_and_wait<C: Classify<u32, BoxError>>(h: &mut Harness<C>) {
    h.fail();
    assert_eq!(h.state(), Open);
    advance(OPEN_FOR).await;
}

// === consecutive failures ===

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_run_of_consecutive_failures() {
    let mut h = Harness::new(consecutive(3));
    h.fail();
    h.fail();
    assert_eq!(h.metrics().consecutive_failures, 2);
    h.succeed();
    assert_eq!(h.metrics().consecutive_failures, 0);
    h.fail();
    h.fail();
    assert_eq!(h.state(), Closed, "two in a row since the success");
    h.fail();
    assert_eq!(h.state(), Open, "three in a row");
}

#[tokio::test(start_paused = true)]
async fn open_breaker_refuses_at_once_with_retry_after_until_the_probe() {
    let mut h = Harness::new(consecutive(3));
    for _ in 0..3 {
        h.fail();
    }
    assert_eq!(h.state(), Open);

    assert_eq!(h.refused().retry_after(), Some(OPEN_FOR));
    advance(secs(4)).await;
    assert_eq!(
        h.refused().retry_after(),
        Some(secs(6)),
        "the time left shrinks"
    );
    advance(secs(6) - ms(1)).await;
    assert_eq!(h.refused().retry_after(), Some(ms(1)));
    assert_eq!(h.metrics().rejected_total, 3);

    advance(ms(1)).await;
    let probe = h.start();
    assert_eq!(h.state(), HalfOpen);
    assert_eq!(h.metrics().probes_in_flight, 1);
    probe.finish(ok()).unwrap();
    assert_eq!(h.state(), Closed);
}

// === failure rate, count window ===

#[tokio::test(start_paused = true)]
async fn failure_rate_does_not_trip_below_minimum_calls() {
    let mut h = Harness::new(rate());
    for _ in 0..3 {
        h.fail();
    }
    let m = h.metrics();
    assert_eq!((m.calls, m.failures, m.failure_rate), (3, 3, Some(1.0)));
    assert_eq!(h.state(), Closed, "100% of 3 calls, under the minimum of 4");
    h.fail();
    assert_eq!(h.state(), Open, "100% of 4 calls");
}

#[tokio::test(start_paused = true)]
async fn failure_rate_trips_at_the_threshold_and_not_just_below() {
    let mut h = Harness::new(rate());
    for _ in 0..5 {
        h.succeed();
    }
    for _ in 0..4 {
        h.fail();
    }
    assert_eq!(h.metrics().failure_rate, Some(4.0 / 9.0));
    assert_eq!(h.state(), Closed, "4 of 9 is below one half");
    h.fail();
    assert_eq!(h.state(), Open, "5 of 10 is one half");
    assert_eq!(h.transitions(), vec![(Closed, Open, FailureRate)]);
}

#[tokio::test(start_paused = true)]
async fn a_count_window_forgets_a_call_exactly_n_calls_later() {
    let mut h = Harness::new(rate());
    for _ in 0..6 {
        h.succeed();
    }
    for _ in 0..4 {
        h.fail();
    }
    assert_eq!((h.metrics().calls, h.metrics().failures), (10, 4));
    // Ten successes push the four failures out, one by one, each exactly
    // ten calls after it came in.
    for n in 1..=10u32 {
        h.succeed();
        let m = h.metrics();
        assert_eq!(m.calls, 10, "the window holds 10 calls");
        assert_eq!(m.failures, 4 - n.saturating_sub(6), "after {n} successes");
    }
    // The old failures no longer count: 4 new ones are 4 of 10...
    for _ in 0..4 {
        h.fail();
    }
    assert_eq!(h.metrics().failures, 4);
    assert_eq!(h.state(), Closed);
    // ...and the fifth is 5 of 10.
    h.fail();
    assert_eq!(h.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_window_over_the_failure_rate_trips_once_minimum_calls_are_in_it() {
    let mut h = Harness::new(rate());
    for _ in 0..3 {
        h.fail();
    }
    // 3 failures of 4 calls: 75% over a threshold of 50%, with the
    // minimum of 4 calls in the window.
    h.succeed();
    assert_eq!(h.metrics().failure_rate, Some(0.75));
    assert_eq!(h.state(), Open);
}

// === failure rate, time window ===

/// Trips when half the calls of the last 10 s (in 1 s buckets) failed, once
/// 4 are in the window.
fn timed() -> CircuitBreakBuilder {
    builder()
        .failure_rate(0.5)
        .time_window(secs(10), 10)
        .minimum_calls(4)
}

#[tokio::test(start_paused = true)]
async fn failures_older_than_the_time_window_no_longer_count() {
    let mut h = Harness::new(timed());
    for _ in 0..3 {
        h.fail();
    }
    assert_eq!(h.state(), Closed, "3 calls, under the minimum of 4");
    advance(secs(9)).await;
    assert_eq!(
        h.metrics().calls,
        3,
        "9 s later they are still in the window"
    );
    advance(secs(2)).await;
    assert_eq!(h.metrics().calls, 0, "11 s later they have left it");

    for _ in 0..3 {
        h.fail();
    }
    assert_eq!(h.state(), Closed, "3 in the window, not 6");
    h.fail();
    assert_eq!(h.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_time_window_adds_up_the_calls_of_all_its_buckets() {
    let mut h = Harness::new(timed());
    for _ in 0..3 {
        h.fail();
        advance(secs(3)).await;
    }
    // At 9 s: failures from 0, 3 and 6 s ago, in three buckets.
    assert_eq!(h.metrics().calls, 3);
    assert_eq!(h.state(), Closed);
    h.fail();
    assert_eq!(h.state(), Open, "4 failures within 10 s");
}

// === slow calls ===

#[tokio::test(start_paused = true)]
async fn slow_successes_trip_the_slow_call_rate() {
    let mut h = Harness::new(
        builder()
            .slow_calls(0.5, ms(100))
            .count_window(4)
            .minimum_calls(4),
    );
    let slow = h.start();
    advance(ms(100)).await;
    assert_eq!(
        slow.finish(ok()).unwrap(),
        7,
        "a slow success is still a success to the caller"
    );
    let almost = h.start();
    advance(ms(99)).await;
    almost.finish(ok()).unwrap();
    h.succeed();
    let m = h.metrics();
    assert_eq!(
        (m.calls, m.slow_calls, m.failures),
        (3, 1, 0),
        "100 ms is slow, 99 ms is not"
    );
    assert_eq!(h.state(), Closed);

    let slow = h.start();
    advance(ms(250)).await;
    slow.finish(ok()).unwrap();
    assert_eq!(h.state(), Open, "2 slow calls of 4");
    assert_eq!(h.transitions(), vec![(Closed, Open, SlowCallRate)]);
}

#[tokio::test(start_paused = true)]
async fn a_slow_probe_reopens_the_breaker() {
    let mut h = Harness::new(
        consecutive(1)
            .slow_calls(1.0, ms(100))
            .count_window(10)
            .minimum_calls(10),
    );
    trip_and_wait(&mut h).await;
    let probe = h.start();
    advance(ms(100)).await;
    probe.finish(ok()).unwrap();
    assert_eq!(h.state(), Open);
    assert_eq!(h.transitions().last(), Some(&(HalfOpen, Open, ProbeFailed)));
}

// === half-open ===

#[tokio::test(start_paused = true)]
async fn a_half_open_breaker_admits_exactly_its_probes_at_once() {
    let mut h = Harness::new(consecutive(1).half_open_probes(2).probe_successes(2));
    trip_and_wait(&mut h).await;

    let first = h.start();
    assert_eq!(h.state(), HalfOpen);
    let second = h.start();
    assert_eq!(h.metrics().probes_in_flight, 2);
    h.refused();
    h.refused();
    assert_eq!(h.metrics().probes_in_flight, 2, "refusals take no slot");
    assert_eq!(h.state(), HalfOpen);

    first.finish(ok()).unwrap();
    assert_eq!(h.metrics().probes_in_flight, 1);
    let third = h.start();
    assert_eq!(
        h.metrics().probes_in_flight,
        2,
        "a finished probe's slot is free again"
    );
    drop(third);
    second.finish(ok()).unwrap();
    assert_eq!(h.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn probe_successes_close_the_breaker_only_after_that_many_successes() {
    let mut h = Harness::new(consecutive(1).probe_successes(2));
    trip_and_wait(&mut h).await;
    h.succeed();
    assert_eq!(h.state(), HalfOpen, "one success of two");
    h.succeed();
    assert_eq!(h.state(), Closed);
    assert_eq!(
        h.transitions(),
        vec![
            (Closed, Open, ConsecutiveFailures),
            (Open, HalfOpen, OpenDurationElapsed),
            (HalfOpen, Closed, ProbesSucceeded),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn one_failed_probe_reopens_the_breaker() {
    let mut h = Harness::new(consecutive(1).half_open_probes(2).probe_successes(2));
    trip_and_wait(&mut h).await;
    let first = h.start();
    let second = h.start();
    assert!(second.finish(down()).is_err());
    assert_eq!(h.state(), Open);
    assert_eq!(h.transitions().last(), Some(&(HalfOpen, Open, ProbeFailed)));
    assert_eq!(h.refused().retry_after(), Some(OPEN_FOR));

    // The other probe's success belongs to a half-open spell that is over.
    assert_eq!(first.finish(ok()).unwrap(), 7);
    assert_eq!(h.state(), Open);
    assert_eq!(h.transitions().len(), 3);
}

// === backoff ===

#[tokio::test(start_paused = true)]
async fn successive_reopens_back_off_up_to_the_cap_and_a_close_resets_it() {
    let mut h = Harness::new(consecutive(1).open_backoff(2.0, secs(40)));
    h.fail();
    for open_for in [10, 20, 40, 40] {
        assert_eq!(h.refused().retry_after(), Some(secs(open_for)));
        advance(secs(open_for) - ms(1)).await;
        assert_eq!(h.refused().retry_after(), Some(ms(1)), "still open");
        advance(ms(1)).await;
        h.fail(); // the probe fails: open again, for longer
        assert_eq!(h.state(), Open);
    }
    assert_eq!(h.refused().retry_after(), Some(secs(40)));
    advance(secs(40)).await;
    h.succeed();
    assert_eq!(h.state(), Closed);

    h.fail();
    assert_eq!(
        h.refused().retry_after(),
        Some(OPEN_FOR),
        "a close resets the backoff"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reset_by_hand_resets_the_backoff() {
    let mut h = Harness::new(consecutive(1).open_backoff(3.0, secs(60)));
    trip_and_wait(&mut h).await;
    h.fail();
    assert_eq!(h.refused().retry_after(), Some(secs(30)));
    h.breaker.reset();
    h.fail();
    assert_eq!(h.refused().retry_after(), Some(OPEN_FOR));
}

// === stuck half-open ===

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_gives_its_slot_back() {
    let mut h = Harness::new(consecutive(1));
    trip_and_wait(&mut h).await;
    let probe = h.start();
    h.refused();
    drop(probe);
    assert_eq!(h.metrics().probes_in_flight, 0);
    assert_eq!(h.state(), HalfOpen, "a dropped probe counts for nothing");

    let probe = h.start();
    assert_eq!(h.metrics().probes_in_flight, 1);
    probe.finish(ok()).unwrap();
    assert_eq!(h.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn probes_that_never_finish_cannot_keep_the_breaker_half_open() {
    let mut h = Harness::new(consecutive(1).half_open_max_wait(secs(5)));
    trip_and_wait(&mut h).await;
    let hung = h.start();
    advance(secs(5) - ms(1)).await;
    assert_eq!(
        h.refused().retry_after(),
        Some(ms(1)),
        "refused for as long as the wait has left"
    );
    assert_eq!(h.state(), HalfOpen);

    advance(ms(1)).await;
    assert_eq!(
        h.refused().retry_after(),
        Some(OPEN_FOR),
        "re-opened by the call that found the probe out too long"
    );
    assert_eq!(h.state(), Open);
    assert_eq!(
        h.transitions().last(),
        Some(&(HalfOpen, Open, HalfOpenTimeout))
    );

    // The next half-open spell does not wait on the hung probe.
    advance(OPEN_FOR).await;
    h.succeed();
    assert_eq!(h.state(), Closed);
    assert!(hung.finish(down()).is_err());
    assert_eq!(
        h.state(),
        Closed,
        "the hung probe's late failure counts for nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_max_wait_defaults_to_the_open_duration() {
    let mut h = Harness::new(consecutive(1));
    trip_and_wait(&mut h).await;
    let _hung = h.start();
    advance(OPEN_FOR - ms(1)).await;
    assert_eq!(h.refused().retry_after(), Some(ms(1)));
    advance(ms(1)).await;
    assert_eq!(h.refused().retry_after(), Some(OPEN_FOR));
    assert_eq!(h.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn half_open_max_wait_counts_from_the_last_probe_report() {
    let mut h = Harness::new(
        consecutive(1)
            .probe_successes(3)
            .half_open_max_wait(secs(5)),
    );
    trip_and_wait(&mut h).await;
    let probe = h.start();
    advance(secs(4)).await;
    probe.finish(ok()).unwrap();
    let _second = h.start();
    advance(secs(2)).await;
    // Half-open for 6 s, but a probe reported 2 s ago and the one out has
    // been out for 2 s: within the 5 s the breaker waits for a report.
    h.refused();
    assert_eq!(h.state(), HalfOpen);
}

// === manual states ===

#[tokio::test(start_paused = true)]
async fn forced_open_refuses_everything_without_retry_after_until_reset() {
    let mut h = Harness::new(consecutive(1));
    h.breaker.force_open();
    assert_eq!(h.state(), ForcedOpen);
    assert_eq!(h.refused().retry_after(), None);
    advance(secs(3600)).await;
    assert_eq!(h.refused().retry_after(), None, "no open duration ends it");
    assert_eq!(h.state(), ForcedOpen);
    h.breaker.reset();
    assert_eq!(h.state(), Closed);
    h.succeed();
}

#[tokio::test(start_paused = true)]
async fn disabled_lets_everything_through_and_counts_nothing() {
    let mut h = Harness::new(rate().consecutive_failures(2));
    h.breaker.disable();
    for _ in 0..20 {
        h.fail();
    }
    assert_eq!(h.state(), Disabled);
    let m = h.metrics();
    assert_eq!((m.calls, m.failures, m.consecutive_failures), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn metrics_only_counts_but_never_trips() {
    let mut h = Harness::new(rate().consecutive_failures(2));
    h.breaker.metrics_only();
    for _ in 0..20 {
        h.fail();
    }
    assert_eq!(h.state(), MetricsOnly);
    let m = h.metrics();
    assert_eq!((m.calls, m.failures, m.consecutive_failures), (10, 10, 20));
    assert_eq!(m.failure_rate, Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn reset_returns_to_closed_with_empty_counts() {
    let mut h = Harness::new(rate().consecutive_failures(3));
    for _ in 0..3 {
        h.fail();
    }
    assert_eq!(h.state(), Open);
    h.breaker.reset();
    assert_eq!(h.state(), Closed);
    let m = h.metrics();
    assert_eq!((m.calls, m.failures, m.consecutive_failures), (0, 0, 0));

    // The run starts over: two more failures do not trip.
    h.fail();
    h.fail();
    assert_eq!(h.state(), Closed);
    assert_eq!(h.metrics().calls, 2);
}

#[test]
fn set_state_refuses_the_states_the_breaker_enters_by_itself() {
    let h = Harness::new(consecutive(1));
    let handle = &h.breaker;
    assert_eq!(handle.set_state(Open), Err(ManualStateError(Open)));
    assert_eq!(handle.set_state(HalfOpen), Err(ManualStateError(HalfOpen)));
    assert_eq!(handle.state(), Closed);
    assert_eq!(handle.metrics().transitions_total, 0);
    assert!(h.recorder.signals().is_empty());

    assert_eq!(handle.set_state(MetricsOnly), Ok(()));
    assert_eq!(handle.state(), MetricsOnly);
}

#[test]
fn manual_changes_are_signalled_with_reason_manual() {
    let h = Harness::new(consecutive(1));
    let handle = &h.breaker;
    handle.force_open();
    handle.disable();
    handle.metrics_only();
    handle.reset();
    assert_eq!(
        h.transitions(),
        vec![
            (Closed, ForcedOpen, Manual),
            (ForcedOpen, Disabled, Manual),
            (Disabled, MetricsOnly, Manual),
            (MetricsOnly, Closed, Manual),
        ]
    );
    assert_eq!(handle.metrics().transitions_total, 4);
}

// === classify ===

#[tokio::test(start_paused = true)]
async fn a_classifier_closure_decides_what_is_a_failure() {
    let mut h = Harness::new(
        consecutive(2).classifier(|r: Result<&u32, &BoxError>| match r {
            Ok(&status) if status >= 500 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Success,
        }),
    );
    assert_eq!(
        h.call(Err("not found".into())).unwrap_err().to_string(),
        "not found"
    );
    assert_eq!(
        h.call(Ok(503)).unwrap(),
        503,
        "the caller still gets the response"
    );
    assert_eq!(h.metrics().consecutive_failures, 1);
    assert_eq!(h.call(Ok(500)).unwrap(), 500);
    assert_eq!(h.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_count_for_nothing() {
    let mut h = Harness::new(rate().consecutive_failures(3).classifier(
        |r: Result<&u32, &BoxError>| match r {
            Ok(404) => Outcome::Ignored,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        },
    ));
    h.fail();
    h.fail();
    for _ in 0..10 {
        assert_eq!(h.call(Ok(404)).unwrap(), 404);
    }
    let m = h.metrics();
    assert_eq!(
        (m.calls, m.consecutive_failures),
        (2, 2),
        "neither in the window nor breaking the run"
    );
    h.fail();
    assert_eq!(h.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_rejection_from_an_inner_layer_is_ignored_even_by_the_default_classifier() {
    let mut h = Harness::new(rate().consecutive_failures(1));
    for _ in 0..5 {
        let err = h
            .call(Err(Rejected::new(
                RejectKind::Shed,
                Component::new("inner"),
            )
            .into()))
            .unwrap_err();
        let rejected = Rejected::find(&*err).expect("the inner rejection passes through");
        assert_eq!(rejected.kind(), RejectKind::Shed);
        assert_eq!(rejected.component().as_str(), "inner");
    }
    assert_eq!(h.state(), Closed);
    assert_eq!(h.metrics().calls, 0);
    h.fail();
    assert_eq!(h.state(), Open, "a real failure still trips it");
}

#[tokio::test(start_paused = true)]
async fn a_probe_rejected_by_an_inner_layer_gives_its_slot_back() {
    let mut h = Harness::new(consecutive(1));
    trip_and_wait(&mut h).await;
    let probe = h.start();
    assert!(
        probe
            .finish(Err(Rejected::new(
                RejectKind::Shed,
                Component::new("inner")
            )
            .into()))
            .is_err()
    );
    assert_eq!(h.state(), HalfOpen);
    assert_eq!(h.metrics().probes_in_flight, 0);
    h.succeed();
    assert_eq!(h.state(), Closed);
}

// === dropped calls ===

#[tokio::test(start_paused = true)]
async fn a_dropped_call_counts_as_neither_success_nor_failure() {
    let mut h = Harness::new(rate().consecutive_failures(3));
    h.fail();
    h.fail();
    for _ in 0..5 {
        drop(h.start());
    }
    let m = h.metrics();
    assert_eq!((m.calls, m.failures, m.consecutive_failures), (2, 2, 2));
    h.fail();
    assert_eq!(h.state(), Open, "the drops did not break the run");
}

#[tokio::test(start_paused = true)]
async fn a_call_admitted_before_a_transition_does_not_count_after_it() {
    let mut h = Harness::new(rate().consecutive_failures(2));
    let old = h.start();
    h.fail();
    h.fail();
    assert_eq!(h.state(), Open);
    h.breaker.reset();
    assert!(old.finish(down()).is_err());
    let m = h.metrics();
    assert_eq!((m.calls, m.consecutive_failures), (0, 0));
    h.fail();
    assert_eq!(h.state(), Closed);
}

// === signals, clones ===

#[tokio::test(start_paused = true)]
async fn every_transition_of_a_full_cycle_is_signalled_once_in_order() {
    let mut h = Harness::new(consecutive(2));
    h.fail();
    h.fail();
    h.refused();
    h.refused();
    advance(OPEN_FOR).await;
    let probe = h.start();
    h.refused();
    probe.finish(ok()).unwrap();
    h.succeed();
    h.fail();
    assert_eq!(
        h.recorder.signals(),
        vec![
            (
                Component::new("db"),
                Signal::BreakerTransition {
                    from: Closed,
                    to: Open,
                    reason: ConsecutiveFailures
                }
            ),
            (
                Component::new("db"),
                Signal::BreakerTransition {
                    from: Open,
                    to: HalfOpen,
                    reason: OpenDurationElapsed
                }
            ),
            (
                Component::new("db"),
                Signal::BreakerTransition {
                    from: HalfOpen,
                    to: Closed,
                    reason: ProbesSucceeded
                }
            ),
        ]
    );
    assert_eq!(h.metrics().transitions_total, 3);
    assert_eq!(h.metrics().rejected_total, 3);
}

#[tokio::test(start_paused = true)]
async fn clones_of_a_layer_share_one_breaker() {
    let layer = consecutive(2).build().unwrap();
    let fails = || async { Err::<u32, BoxError>("dependency down".into()) };
    let mut a = layer.layer(service_fn(move |_: u32| fails()));
    let mut b = layer.clone().layer(service_fn(move |_: u32| fails()));
    assert!(a.ready().await.unwrap().call(0).await.is_err());
    assert!(b.ready().await.unwrap().call(0).await.is_err());
    assert_eq!(layer.handle().state(), Open, "one failure through each");
    let err = a.ready().await.unwrap().call(0).await.unwrap_err();
    assert_eq!(
        Rejected::find(&*err).unwrap().kind(),
        RejectKind::CircuitOpen
    );
}

// === config ===

#[test]
fn every_invalid_setting_is_a_config_error_naming_it() {
    use ConfigErrorKind::{OutOfRange, Zero};
    let b = builder;
    let cases: Vec<(
        &str,
        Result<CircuitBreakLayer, ConfigError>,
        &str,
        ConfigErrorKind,
    )> = vec![
        (
            "rate 0",
            b().failure_rate(0.0).build(),
            "failure_rate",
            OutOfRange,
        ),
        (
            "rate 1.5",
            b().failure_rate(1.5).build(),
            "failure_rate",
            OutOfRange,
        ),
        (
            "rate NaN",
            b().failure_rate(f64::NAN).build(),
            "failure_rate",
            OutOfRange,
        ),
        (
            "rate < 0",
            b().failure_rate(-0.5).build(),
            "failure_rate",
            OutOfRange,
        ),
        (
            "consecutive 0",
            b().consecutive_failures(0).build(),
            "consecutive_failures",
            Zero,
        ),
        (
            "count window 0",
            b().count_window(0).build(),
            "count_window",
            Zero,
        ),
        (
            "count window too big",
            b().count_window(MAX_WINDOW_CALLS + 1).build(),
            "count_window",
            OutOfRange,
        ),
        (
            "time window 0 s",
            b().time_window(Duration::ZERO, 10).build(),
            "time_window",
            Zero,
        ),
        (
            "time window 0 buckets",
            b().time_window(secs(10), 0).build(),
            "time_window",
            Zero,
        ),
        (
            "time window too many buckets",
            b().time_window(secs(10), MAX_WINDOW_BUCKETS + 1).build(),
            "time_window",
            OutOfRange,
        ),
        (
            "buckets under a nanosecond",
            b().time_window(Duration::from_nanos(5), 10).build(),
            "time_window",
            OutOfRange,
        ),
        (
            "minimum 0",
            b().minimum_calls(0).build(),
            "minimum_calls",
            Zero,
        ),
        (
            "minimum over the window",
            b().count_window(10).minimum_calls(11).build(),
            "minimum_calls",
            OutOfRange,
        ),
        (
            "open 0",
            b().open_duration(Duration::ZERO).build(),
            "open_duration",
            Zero,
        ),
        (
            "probes 0",
            b().half_open_probes(0).build(),
            "half_open_probes",
            Zero,
        ),
        (
            "successes 0",
            b().probe_successes(0).build(),
            "probe_successes",
            Zero,
        ),
        (
            "max wait 0",
            b().half_open_max_wait(Duration::ZERO).build(),
            "half_open_max_wait",
            Zero,
        ),
        (
            "backoff < 1",
            b().open_backoff(0.5, secs(60)).build(),
            "open_backoff",
            OutOfRange,
        ),
        (
            "backoff NaN",
            b().open_backoff(f64::NAN, secs(60)).build(),
            "open_backoff",
            OutOfRange,
        ),
        (
            "backoff infinite",
            b().open_backoff(f64::INFINITY, secs(60)).build(),
            "open_backoff",
            OutOfRange,
        ),
        (
            "cap under the open duration",
            b().open_backoff(2.0, OPEN_FOR - ms(1)).build(),
            "open_backoff",
            OutOfRange,
        ),
    ];
    for (case, result, setting, kind) in cases {
        let err = result.expect_err(case);
        assert_eq!(err.layer(), "breaker", "{case}");
        assert_eq!(err.setting(), setting, "{case}");
        assert_eq!(err.kind(), kind, "{case}");
    }
}

#[test]
fn slow_call_settings_outside_their_range_are_config_errors() {
    for (rate, duration, kind) in [
        (0.0, ms(100), ConfigErrorKind::OutOfRange),
        (1.1, ms(100), ConfigErrorKind::OutOfRange),
        (f64::NAN, ms(100), ConfigErrorKind::OutOfRange),
        (0.5, Duration::ZERO, ConfigErrorKind::Zero),
    ] {
        let err = builder().slow_calls(rate, duration).build().unwrap_err();
        assert_eq!(err.kind(), kind, "slow_calls({rate}, {duration:?})");
        assert_eq!(err.layer(), "breaker");
    }
}

#[test]
fn slow_call_config_errors_name_the_builder_method() {
    // `ConfigError::setting` is "named as its builder method".
    for (rate, duration) in [(1.5, ms(100)), (0.5, Duration::ZERO)] {
        let err = builder().slow_calls(rate, duration).build().unwrap_err();
        assert_eq!(err.setting(), "slow_calls");
    }
}

#[test]
fn the_edges_of_every_range_are_valid() {
    let valid = [
        builder().failure_rate(1.0).build(),
        builder().failure_rate(f64::MIN_POSITIVE).build(),
        builder().slow_calls(1.0, Duration::from_nanos(1)).build(),
        builder().count_window(10).minimum_calls(10).build(),
        builder().count_window(MAX_WINDOW_CALLS).build(),
        builder().count_window(1).minimum_calls(1).build(),
        builder().time_window(Duration::from_nanos(10), 10).build(),
        builder().time_window(secs(10), MAX_WINDOW_BUCKETS).build(),
        builder()
            .time_window(secs(10), 10)
            .minimum_calls(1000)
            .build(),
        builder().open_backoff(1.0, OPEN_FOR).build(),
        builder().consecutive_failures(1).build(),
    ];
    for (i, result) in valid.into_iter().enumerate() {
        if let Err(err) = result {
            panic!("case {i}: {err}");
        }
    }
}

// === properties ===

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Keep failing seeds out of the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any f64, with the edges and the non-numbers well represented.
fn any_rate() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        -0.5f64..1.5,
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
    ]
}

/// A window size and a minimum number of calls it can hold.
fn window_and_minimum() -> impl Strategy<Value = (u32, u32)> {
    (1u32..8).prop_flat_map(|window| (Just(window), 1..=window))
}

proptest! {
    #![proptest_config(proptest_config(256))]

    #[test]
    fn a_rate_is_valid_exactly_in_zero_exclusive_to_one_inclusive(rate in any_rate()) {
        let valid = rate > 0.0 && rate <= 1.0;
        prop_assert_eq!(builder().failure_rate(rate).build().is_ok(), valid);
        prop_assert_eq!(
            builder().slow_calls(rate, ms(100)).build().is_ok(),
            valid
        );
    }
}

proptest! {
    #![proptest_config(proptest_config(64))]

    /// Against a model: the window is the last `window` calls, the rate
    /// (100% here, so that only a failure can reach it) trips once
    /// `minimum` calls are in it, and `limit` failures in a row trip.
    #[test]
    fn a_count_window_breaker_matches_a_model_of_the_last_n_calls(
        (window, minimum) in window_and_minimum(),
        limit in prop::option::of(1u32..6),
        outcomes in prop::collection::vec(any::<bool>(), 0..40),
    ) {
        block_on_paused(async {
            let mut config = builder()
                .failure_rate(1.0)
                .count_window(window)
                .minimum_calls(minimum);
            if let Some(limit) = limit {
                config = config.consecutive_failures(limit);
            }
            let mut h = Harness::new(config);
            let mut last = std::collections::VecDeque::new();
            let mut run = 0;
            for (i, &success) in outcomes.iter().enumerate() {
                if success {
                    h.succeed();
                    run = 0;
                } else {
                    h.fail();
                    run += 1;
                }
                last.push_back(success);
                if last.len() > window as usize {
                    last.pop_front();
                }
                let calls = last.len() as u32;
                let failures = last.iter().filter(|&&s| !s).count() as u32;
                let m = h.metrics();
                assert_eq!((m.calls, m.failures), (calls, failures), "after call {i}");
                let trips = (calls >= minimum && failures == calls)
                    || limit.is_some_and(|limit| run >= limit);
                if trips {
                    assert_eq!(h.state(), Open, "after call {i}");
                    h.refused();
                    return;
                }
                assert_eq!(h.state(), Closed, "after call {i}");
            }
        });
    }

    /// Each re-open without a close stays open `factor` times longer than
    /// the last, never longer than the cap.
    #[test]
    fn open_durations_grow_by_the_factor_up_to_the_cap(
        factor in 1.0f64..4.0,
        open_ms in 1u64..5_000,
        cap_extra_ms in 0u64..60_000,
        opens in 1i32..8,
    ) {
        block_on_paused(async {
            let open = ms(open_ms);
            let cap = open + ms(cap_extra_ms);
            let mut h = Harness::new(
                consecutive(1).open_duration(open).open_backoff(factor, cap),
            );
            h.fail();
            let mut previous = Duration::ZERO;
            for k in 0..opens {
                let open_for = h.refused().retry_after().expect("open for a known time");
                let expected = (open.as_secs_f64() * factor.powi(k)).min(cap.as_secs_f64());
                assert!(
                    (open_for.as_secs_f64() - expected).abs() < 1e-6,
                    "open {k}: {open_for:?}, expected {expected} s"
                );
                assert!(open_for >= previous && open_for <= cap, "open {k}: {open_for:?}");
                previous = open_for;
                advance(open_for).await;
                h.fail(); // the probe fails
            }
        });
    }
}
