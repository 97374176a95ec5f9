//! The layer contract, run against `CircuitBreakLayer`.
//!
//! What a breaker holds on a request's behalf is a half-open probe slot, so
//! the subject's layer is half-open: every call is a probe, and the
//! contract checks that each path gives its slot back.

use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use reflex_breaker::CircuitBreakLayer;
use reflex_core::{BoxError, BreakerState, ConfigError};
use reflex_tests::contract::Subject;
use tower::{Layer, Service, service_fn};

struct Breaker;

/// Polls one call of `svc` to completion on the spot (its futures are ready
/// at once).
fn call_now<S: Service<u32, Error = BoxError>>(svc: &mut S) -> Result<S::Response, BoxError> {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    match pin!(svc.call(0)).poll(&mut cx) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("ready services only"),
    }
}

impl Subject for Breaker {
    type Layer = CircuitBreakLayer;

    fn layer() -> Self::Layer {
        let layer = CircuitBreakLayer::builder()
            .consecutive_failures(1)
            .open_duration(Duration::from_nanos(1))
            .half_open_probes(4)
            .probe_successes(1000)
            .half_open_max_wait(Duration::from_secs(3600))
            .build()
            .expect("valid config");
        let handle = layer.handle();
        // One failure opens it; once its nanosecond has passed, a call is a
        // probe, and dropping that call leaves the breaker half-open with
        // every slot free.
        let mut failing = layer.layer(service_fn(|_: u32| async {
            Err::<(), BoxError>("down".into())
        }));
        assert!(call_now(&mut failing).is_err());
        let mut pending = layer.layer(service_fn(|_: u32| {
            std::future::pending::<Result<(), BoxError>>()
        }));
        for attempt in 0.. {
            if handle.state() == BreakerState::HalfOpen {
                break;
            }
            // A breaker that never goes half-open fails here, not hangs.
            assert!(attempt < 1_000_000, "the breaker never went half-open");
            let mut cx = Context::from_waker(Waker::noop());
            assert!(pending.poll_ready(&mut cx).is_ready());
            let _dropped = pending.call(0);
        }
        assert_eq!(handle.metrics().probes_in_flight, 0);
        layer
    }

    fn held(layer: &Self::Layer) -> usize {
        layer.handle().metrics().probes_in_flight as usize
    }

    fn invalid_configs() -> Vec<Result<Self::Layer, ConfigError>> {
        vec![
            CircuitBreakLayer::builder().failure_rate(0.0).build(),
            CircuitBreakLayer::builder().failure_rate(f64::NAN).build(),
            CircuitBreakLayer::builder().count_window(0).build(),
            CircuitBreakLayer::builder().minimum_calls(0).build(),
            CircuitBreakLayer::builder().half_open_probes(0).build(),
            CircuitBreakLayer::builder()
                .open_duration(Duration::ZERO)
                .build(),
            CircuitBreakLayer::builder().consecutive_failures(0).build(),
        ]
    }
}

reflex_tests::layer_contract!(Breaker);
