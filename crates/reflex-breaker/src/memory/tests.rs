//! Tests of [`MemoryBackend`]'s internals: counts at their limits.

use super::*;

fn backend(open_backoff: Option<(f64, Duration)>) -> MemoryBackend {
    MemoryBackend::new(BreakerConfig {
        open_backoff,
        ..BreakerConfig::trips_on_first_failure(Duration::from_nanos(1))
    })
}

fn fail(backend: &MemoryBackend) {
    let ticket = backend.admit().expect("admitted");
    backend.record(ticket, Outcome::Failure, None);
}

#[test]
fn opens_in_a_row_saturate_instead_of_wrapping_back_to_the_base_open_duration() {
    let cap = Duration::from_secs(3600);
    let backend = backend(Some((2.0, cap)));
    backend.opens_in_row.store(u32::MAX - 1, Ordering::Relaxed);
    fail(&backend);
    assert_eq!(backend.state(), BreakerState::Open);
    for _ in 0..2 {
        // Its open time over (by hand, not by waiting an hour): a probe,
        // which fails.
        backend.open_until.store(0, Ordering::Release);
        fail(&backend);
        assert_eq!(backend.state(), BreakerState::Open);
        let refused = backend.admit().expect_err("open");
        let open_for = refused.retry_after().unwrap();
        assert!(open_for > cap / 2, "back to the base: {open_for:?}");
    }
}

#[test]
fn failures_in_a_row_saturate_instead_of_wrapping_to_zero() {
    let backend = backend(None);
    backend.set_state(BreakerState::MetricsOnly).unwrap();
    backend.consecutive.store(u32::MAX - 1, Ordering::Relaxed);
    for _ in 0..3 {
        fail(&backend);
    }
    assert_eq!(backend.metrics().consecutive_failures, u32::MAX);
    assert_eq!(backend.state(), BreakerState::MetricsOnly);
}
