//! The adaptive limit's, the partitions' and the critical reserve's
//! settings: refused with a `ConfigError` naming the setting, never a
//! panic, and extreme values that build run without one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Duration;

use proptest::prelude::*;
use reflex_core::{ConfigError, ConfigErrorKind};
use reflex_shed::{Adaptive, ConcurrencyShedLayer, Critical};
use tower::{Layer, Service, service_fn};

fn refused(built: Result<impl std::fmt::Debug, ConfigError>) -> (&'static str, ConfigErrorKind) {
    let err = built.expect_err("refused");
    (err.setting(), err.kind())
}

fn adaptive(limit: impl Into<Adaptive>) -> Result<ConcurrencyShedLayer, ConfigError> {
    ConcurrencyShedLayer::builder().adaptive(limit).build()
}

#[test]
fn an_adaptive_limits_bounds_are_checked() {
    use ConfigErrorKind::{OutOfRange, Zero};
    let g = Adaptive::gradient;
    assert_eq!(refused(adaptive(g().floor(0))), ("floor", Zero));
    assert_eq!(refused(adaptive(g().ceiling(0))), ("ceiling", Zero));
    assert_eq!(
        refused(adaptive(g().ceiling(1 << 31))),
        ("ceiling", OutOfRange)
    );
    assert_eq!(
        refused(adaptive(g().floor(10).ceiling(5))),
        ("floor", OutOfRange)
    );
    assert_eq!(
        refused(adaptive(g().floor(10).initial(5))),
        ("floor", OutOfRange)
    );
    assert_eq!(
        refused(adaptive(g().ceiling(10).initial(50))),
        ("initial", OutOfRange)
    );
    assert_eq!(refused(adaptive(g().initial(0))), ("initial", Zero));
    // The default initial limit is brought within the bounds.
    let layer = adaptive(g().floor(50).ceiling(60)).unwrap();
    assert_eq!(layer.handle().metrics().hard_limit, 50);
    let layer = adaptive(g().ceiling(5)).unwrap();
    assert_eq!(layer.handle().metrics().hard_limit, 5);
}

#[test]
fn an_adaptive_limits_fractions_and_durations_are_checked() {
    use ConfigErrorKind::{OutOfRange, Zero};
    let g = Adaptive::gradient;
    let a = Adaptive::aimd;
    assert_eq!(
        refused(adaptive(g().window(Duration::ZERO))),
        ("window", Zero)
    );
    assert_eq!(refused(adaptive(g().min_samples(0))), ("min_samples", Zero));
    for bad in [0.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
        assert_eq!(
            refused(adaptive(g().tolerance(bad))),
            ("tolerance", OutOfRange)
        );
        assert_eq!(
            refused(adaptive(g().smoothing(bad))),
            ("smoothing", OutOfRange)
        );
        assert_eq!(refused(adaptive(a().backoff(bad))), ("backoff", OutOfRange));
    }
    assert_eq!(refused(adaptive(a().backoff(1.0))), ("backoff", OutOfRange));
    assert_eq!(
        refused(adaptive(g().probe_depth(1.0))),
        ("probe_depth", OutOfRange)
    );
    assert_eq!(
        refused(adaptive(g().probe_interval(Duration::ZERO))),
        ("probe_interval", Zero)
    );
    assert_eq!(refused(adaptive(a().increase(0))), ("increase", Zero));
    assert_eq!(
        refused(adaptive(a().timeout(Duration::ZERO))),
        ("timeout", Zero)
    );
}

#[test]
fn the_limit_is_fixed_or_adaptive_and_the_last_one_given_counts() {
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(7)
        .adaptive(Adaptive::gradient().initial(9))
        .build()
        .unwrap();
    assert!(layer.handle().metrics().adaptive.is_some());
    let layer = ConcurrencyShedLayer::builder()
        .adaptive(Adaptive::gradient())
        .hard_limit(7)
        .build()
        .unwrap();
    assert_eq!(layer.handle().metrics().adaptive, None);
    // A soft limit is checked against an adaptive limit's initial one.
    let err = ConcurrencyShedLayer::builder()
        .adaptive(Adaptive::aimd().initial(8))
        .soft_limit(8)
        .build()
        .unwrap_err();
    assert_eq!(
        (err.setting(), err.kind()),
        ("soft_limit", ConfigErrorKind::NotBelow)
    );
}

#[test]
fn shares_and_the_reserve_are_checked() {
    use ConfigErrorKind::{Missing, OutOfRange};
    let partitioned = || {
        ConcurrencyShedLayer::builder()
            .hard_limit(10)
            .partition(|n: &u32| Some(*n))
    };
    assert_eq!(refused(partitioned().build()), ("share", Missing));
    assert_eq!(
        refused(partitioned().share(1, 0.0).build()),
        ("share", OutOfRange)
    );
    assert_eq!(
        refused(partitioned().share(1, 1.5).build()),
        ("share", OutOfRange)
    );
    assert_eq!(
        refused(partitioned().share(1, f64::NAN).build()),
        ("share", OutOfRange)
    );
    assert_eq!(
        refused(partitioned().share(1, 0.6).share(2, 0.6).build()),
        ("share", OutOfRange)
    );
    // A key given again keeps its last share.
    assert!(
        partitioned()
            .share(1, 0.9)
            .share(1, 0.5)
            .share(2, 0.5)
            .build()
            .is_ok()
    );
    let critical = || {
        ConcurrencyShedLayer::builder()
            .hard_limit(10)
            .critical(|n: &u32| (*n == 0).then_some(Critical))
    };
    for bad in [1.0, -0.5, f64::NAN] {
        assert_eq!(
            refused(critical().critical_reserve(bad).build()),
            ("critical_reserve", OutOfRange)
        );
    }
    assert!(critical().critical_reserve(0.0).build().is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn extreme_adaptive_settings_never_panic(
        window in prop_oneof![Just(Duration::from_nanos(1)), Just(Duration::MAX), Just(Duration::from_secs(1))],
        interval in prop_oneof![Just(Duration::from_nanos(1)), Just(Duration::MAX)],
        floor in prop_oneof![Just(1usize), Just((1 << 31) - 1)],
        min_samples in prop_oneof![Just(1u32), Just(u32::MAX)],
        tolerance in prop_oneof![Just(f64::MIN_POSITIVE), Just(1.0)],
        aimd in any::<bool>(),
    ) {
        let limit: Adaptive = if aimd {
            Adaptive::aimd().floor(floor).ceiling((1 << 31) - 1).window(window)
                .min_samples(min_samples).timeout(Duration::from_nanos(1)).into()
        } else {
            Adaptive::gradient().floor(floor).ceiling((1 << 31) - 1).window(window)
                .min_samples(min_samples).tolerance(tolerance).probe_interval(interval).into()
        };
        let Ok(layer) = ConcurrencyShedLayer::builder().adaptive(limit).build() else {
            return Err(TestCaseError::fail("valid settings"));
        };
        let handle = layer.handle();
        let mut svc = layer.layer(service_fn(|fail: bool| {
            std::future::ready(if fail { Err(std::io::Error::other("down")) } else { Ok(()) })
        }));
        let mut cx = Context::from_waker(Waker::noop());
        for n in 0..50 {
            let mut call = svc.call(n % 3 == 0);
            let _ = Pin::new(&mut call).poll(&mut cx);
        }
        let metrics = handle.metrics();
        prop_assert_eq!(metrics.in_flight, 0);
        prop_assert!(metrics.hard_limit >= floor.min((1 << 31) - 1));
    }
}
