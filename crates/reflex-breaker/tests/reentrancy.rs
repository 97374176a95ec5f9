//! A sink may read and steer the breaker it hears from: transitions report
//! after their lock is released.

use std::sync::{Arc, OnceLock};

use reflex_breaker::{BreakerHandle, CircuitBreakLayer};
use reflex_core::{BoxError, BreakerState, Component, Signal, SignalSink};
use tower::{Layer, Service, ServiceExt, service_fn};

/// On the breaker opening, a reflex forces it open by hand.
#[derive(Clone, Default)]
struct ForceOpenOnTrip(Arc<OnceLock<BreakerHandle>>);

impl SignalSink for ForceOpenOnTrip {
    fn emit(&self, _: &Component, signal: Signal) {
        if let (
            Signal::BreakerTransition {
                to: BreakerState::Open,
                ..
            },
            Some(handle),
        ) = (signal, self.0.get())
        {
            assert_eq!(handle.state(), BreakerState::Open);
            let _ = handle.metrics();
            handle.force_open();
        }
    }
}

#[tokio::test]
async fn a_sink_that_steers_the_breaker_on_a_transition_does_not_deadlock() {
    let sink = ForceOpenOnTrip::default();
    let layer = CircuitBreakLayer::builder()
        .consecutive_failures(1)
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = layer.handle();
    sink.0.set(handle.clone()).ok().unwrap();
    let mut svc = layer.layer(service_fn(|_: ()| async {
        Err::<(), BoxError>("down".into())
    }));
    assert!(svc.ready().await.unwrap().call(()).await.is_err());
    assert_eq!(handle.state(), BreakerState::ForcedOpen);
    assert_eq!(handle.metrics().transitions_total, 2);
}
