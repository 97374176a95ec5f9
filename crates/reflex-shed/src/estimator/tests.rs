//! The estimator's own duties: which refusals count, and windows that
//! completions never close.

use std::time::Duration;

use super::*;
use crate::Adaptive;

const MS: u64 = 1_000_000;

/// `algorithm` with 100 ms windows of at least 10 samples, from a limit
/// of 40.
fn estimator(algorithm: &Adaptive) -> Estimator {
    let config = algorithm.validate().unwrap();
    Estimator::new(config, 7)
}

fn gradient() -> Estimator {
    let gradient = Adaptive::gradient()
        .initial(40)
        .window(Duration::from_millis(100));
    estimator(&gradient.min_samples(10).into())
}

fn aimd() -> Estimator {
    let aimd = Adaptive::aimd()
        .initial(40)
        .window(Duration::from_millis(100));
    estimator(&aimd.min_samples(10).into())
}

/// A first window of 20 calls of 10 ms, 5 in flight, from 1 ms to 101 ms,
/// where the last one closes it.
fn first_window(estimator: &Estimator) -> Recomputed {
    for ms in 1..=100 {
        if ms % 5 == 1 {
            assert!(estimator.record(10 * MS, 5, false, ms * MS).is_none());
        }
    }
    estimator
        .record(10 * MS, 5, false, 101 * MS)
        .expect("the first window closes at its end")
}

#[test]
fn only_refusals_at_its_own_limit_count() {
    let config = Adaptive::from(Adaptive::gradient().initial(10))
        .validate()
        .unwrap();
    let estimator = Estimator::new(config, 7);
    estimator.refused(4, 4, 1);
    assert_eq!(
        estimator.window.take().refused,
        0,
        "a reflex holds the limit at 4: no pressure on the estimate"
    );
    estimator.refused(10, 10, 1);
    estimator.refused(12, 12, 1);
    assert_eq!(estimator.window.take().refused, 2);
}

#[test]
fn calls_that_never_come_back_bring_the_limit_down() {
    let estimator = gradient();
    assert_eq!(first_window(&estimator).limit, 40);
    // Then nothing completes: 40 calls in flight, refusals at the limit,
    // and clients that give up after 50 ms.
    assert!(
        estimator.given_up(50 * MS, 40, 150 * MS).is_none(),
        "not due yet: a window is 100 ms"
    );
    let starved = estimator
        .refused(40, 40, 250 * MS)
        .expect("a starved window closes on a refusal");
    assert_eq!(starved.event, Some(GradientEvent::Starved));
    assert_eq!(starved.limit, 20, "none came back: half of the way to none");
    assert!(
        estimator.given_up(50 * MS, 20, 260 * MS).is_none(),
        "a new window"
    );
    assert_eq!(estimator.given_up(50 * MS, 20, 400 * MS).unwrap().limit, 10);
}

#[test]
fn refusals_alone_starve_no_window() {
    // A burst after an idle spell: nothing came back in the window, and
    // every slot is taken by calls just admitted. Refusals are no sign
    // that calls do not come back.
    let estimator = gradient();
    first_window(&estimator);
    for ms in [5_000, 5_001, 5_002] {
        assert!(estimator.refused(40, 40, ms * MS).is_none());
    }
    assert_eq!(estimator.view().limit, 40);
}

#[test]
fn calls_given_up_on_are_no_samples_and_only_long_waits_count() {
    let estimator = gradient();
    first_window(&estimator);
    // Given up on after 1 ms, below the 10 ms calls take: no sign of
    // anything, and no sample either.
    for ms in 150..250 {
        assert!(estimator.given_up(MS, 40, ms * MS).is_none());
    }
    assert_eq!(estimator.window.count(), (0, 0), "no sample");
    assert!(
        !estimator.window.any_given_up(),
        "a fast cancel says nothing"
    );
    // After 50 ms: calls do not come back.
    let starved = estimator
        .given_up(50 * MS, 40, 251 * MS)
        .expect("a starved window closes on a call given up on");
    assert_eq!(starved.event, Some(GradientEvent::Starved));
    assert_eq!(starved.summary.given_up, 1);
    assert_eq!(starved.summary.successes, 0);
    assert_eq!(starved.limit, 20);
}

#[test]
fn calls_that_come_back_starve_no_window_whatever_is_given_up() {
    // Hedges: a client gives up on some calls after 15 ms, while calls come
    // back in 10 ms, 5 in flight; a window too small to count, due, is no
    // starved one. Calls with an outcome to be ignored came back too.
    for ignored in [false, true] {
        let estimator = gradient();
        first_window(&estimator);
        for ms in (102..=200).step_by(20) {
            if ignored {
                assert!(estimator.ignored(5, ms * MS).is_none());
            } else {
                assert!(estimator.record(10 * MS, 5, false, ms * MS).is_none());
            }
        }
        // Due at 201 ms with 5 calls back: given-up calls close nothing.
        for ms in 202..=260 {
            assert!(
                estimator.given_up(15 * MS, 5, ms * MS).is_none(),
                "ignored {ignored} at {ms} ms"
            );
        }
    }
}

#[test]
fn a_first_window_that_no_completion_closes_closes_with_what_it_has() {
    // Five calls came back in 10 ms; every other one is still waiting.
    let estimator = gradient();
    assert!(
        estimator.refused(40, 40, 500 * MS).is_none(),
        "no first sample yet: no window began"
    );
    for ms in 501..=505 {
        assert!(estimator.record(10 * MS, 40, false, ms * MS).is_none());
    }
    assert!(
        estimator.refused(40, 40, 610 * MS).is_none(),
        "due, but a completion may still come"
    );
    let first = estimator
        .refused(40, 40, 630 * MS)
        .expect("a quarter of a window overdue");
    assert_eq!(first.event, Some(GradientEvent::Baseline));
    assert_eq!(first.summary.successes, 5);
    // From here, the windows in which calls are given up on and none comes
    // back are starved.
    assert_eq!(estimator.given_up(50 * MS, 40, 740 * MS).unwrap().limit, 20);
}

#[test]
fn aimd_backs_off_once_per_starved_window() {
    let estimator = aimd();
    assert_eq!(first_window(&estimator).limit, 40);
    let starved = estimator.given_up(50 * MS, 40, 250 * MS).unwrap();
    assert_eq!(starved.event, Some(GradientEvent::Starved));
    assert_eq!(starved.limit, 36, "backoff 0.9");
}
