//! Backoff bounds, for every jitter mode and retry number.

use std::time::Duration;

use proptest::prelude::*;
use reflex_core::ConfigErrorKind;
use reflex_retry::{Backoff, Jitter};

mod common;
use common::{JITTERS, jitter};

proptest! {
    #[test]
    fn every_delay_stays_within_its_bounds_and_never_exceeds_the_cap(
        jitter in jitter(),
        base_ms in 1u64..2_000,
        multiplier in 1.0f64..4.0,
        cap_ms in 1u64..120_000,
        retry in 1u32..200,
        previous_ms in 0u64..300_000,
        unit in 0.0f64..1.0,
    ) {
        let base = Duration::from_millis(base_ms);
        let cap = Duration::from_millis(cap_ms.max(base_ms));
        let backoff = Backoff::new(base, multiplier, cap, jitter).unwrap();
        let previous = Duration::from_millis(previous_ms);
        let ceiling = backoff.ceiling(retry);
        let delay = backoff.delay(retry, previous, unit);
        prop_assert!(delay <= cap);
        prop_assert!(ceiling <= cap && ceiling >= base.min(cap));
        match jitter {
            Jitter::None => prop_assert_eq!(delay, ceiling),
            Jitter::Full => prop_assert!(delay <= ceiling),
            Jitter::Equal => prop_assert!(delay >= ceiling / 2 && delay <= ceiling),
            Jitter::Decorrelated => {
                let high = previous.max(base).saturating_mul(3).min(cap);
                prop_assert!(delay >= base.min(high) && delay <= high);
            }
        }
    }

    #[test]
    fn ceilings_never_shrink_from_one_retry_to_the_next(
        base_ms in 1u64..2_000,
        multiplier in 1.0f64..4.0,
        retry in 1u32..200,
    ) {
        let backoff = Backoff::new(
            Duration::from_millis(base_ms),
            multiplier,
            Duration::from_secs(60),
            Jitter::None,
        )
        .unwrap();
        prop_assert!(backoff.ceiling(retry + 1) >= backoff.ceiling(retry));
    }
}

/// From 1 s, doubling, capped at 60 s.
fn doubling_from_one_second(jitter: Jitter) -> Backoff {
    Backoff::new(Duration::from_secs(1), 2.0, Duration::from_secs(60), jitter).unwrap()
}

#[test]
fn the_default_cap_shape_holds_at_the_seed_60_seconds() {
    let backoff = doubling_from_one_second(Jitter::None);
    let delays: Vec<u64> = (1..=8).map(|n| backoff.ceiling(n).as_secs()).collect();
    assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(60));
}

#[test]
fn samples_outside_the_unit_interval_are_clamped() {
    let backoff = doubling_from_one_second(Jitter::Full);
    assert_eq!(
        backoff.delay(2, Duration::ZERO, 7.0),
        Duration::from_secs(2)
    );
    assert_eq!(backoff.delay(2, Duration::ZERO, -1.0), Duration::ZERO);
    assert_eq!(backoff.delay(2, Duration::ZERO, f64::NAN), Duration::ZERO);
}

#[test]
fn invalid_backoffs_are_config_errors() {
    let s = Duration::from_secs;
    let cases = [
        (
            Backoff::new(Duration::ZERO, 2.0, s(1), Jitter::Full),
            ConfigErrorKind::Zero,
        ),
        (
            Backoff::new(s(1), 0.5, s(10), Jitter::Full),
            ConfigErrorKind::OutOfRange,
        ),
        (
            Backoff::new(s(1), f64::NAN, s(10), Jitter::Full),
            ConfigErrorKind::OutOfRange,
        ),
        (
            Backoff::new(s(1), f64::INFINITY, s(10), Jitter::Full),
            ConfigErrorKind::OutOfRange,
        ),
        (
            Backoff::new(s(10), 2.0, s(1), Jitter::Full),
            ConfigErrorKind::OutOfRange,
        ),
    ];
    for (i, (result, kind)) in cases.into_iter().enumerate() {
        let err = result.expect_err("invalid");
        assert_eq!(err.kind(), kind, "case {i}");
        assert_eq!(err.layer(), "retry");
    }
}

#[test]
fn delays_near_duration_max_stay_within_the_cap_for_every_jitter_and_sample() {
    for jitter in JITTERS {
        for base in [
            Duration::from_nanos(1),
            Duration::from_secs(1),
            Duration::MAX,
        ] {
            for multiplier in [1.0, 2.0, f64::MAX] {
                let backoff = Backoff::new(base, multiplier, Duration::MAX, jitter).unwrap();
                for retry in [1, 2, 64, 65, u32::MAX] {
                    for previous in [Duration::ZERO, Duration::MAX] {
                        for unit in [0.0, 0.5, 1.0 - f64::EPSILON, 1.0, 2.0, f64::NAN] {
                            let delay = backoff.delay(retry, previous, unit);
                            let ceiling = backoff.ceiling(retry);
                            let within = match jitter {
                                Jitter::None => delay == ceiling,
                                Jitter::Full => delay <= ceiling,
                                Jitter::Equal => delay >= ceiling / 2 && delay <= ceiling,
                                Jitter::Decorrelated => delay >= base,
                            };
                            assert!(
                                within,
                                "{jitter:?} {base:?} ×{multiplier} retry {retry} \
                                 after {previous:?} at {unit}: {delay:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}
