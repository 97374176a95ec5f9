//! The witness's cascade reflex steering real layers: a breaker's and a
//! shed layer's handles, through reflex-core's control traits.

use std::time::Duration;

use reflex_breaker::CircuitBreakLayer;
use reflex_core::{BoxError, BreakerState};
use reflex_shed::ConcurrencyShedLayer;
use reflex_witness::{CascadeReflex, Witness};
use tower::{Layer, ServiceExt, service_fn};

#[tokio::test(start_paused = true)]
async fn four_failing_components_make_a_cascade_that_opens_their_real_breakers_and_halves_their_shed_limits()
 {
    let witness = Witness::builder()
        .no_latency_regression()
        .cascade(3, 5, Duration::from_secs(10))
        .reflex(CascadeReflex::new(Duration::from_secs(5), 0.5))
        .build()
        .unwrap();
    let mut handles = Vec::new();
    let mut services = Vec::new();
    for name in ["api", "auth", "db", "cache"] {
        let breaker = CircuitBreakLayer::builder()
            .component(name)
            .sink(witness.clone())
            .build()
            .unwrap();
        let shed = ConcurrencyShedLayer::builder()
            .component(name)
            .hard_limit(40)
            .build()
            .unwrap();
        witness.control_breaker(name, breaker.handle());
        witness.control_shed(name, shed.handle());
        handles.push((breaker.handle(), shed.handle()));
        let failing = service_fn(|_: ()| async { Err::<(), BoxError>("down".into()) });
        services.push(
            witness
                .layer(name)
                .unwrap()
                .layer(shed.layer(breaker.layer(failing))),
        );
    }
    for _ in 0..5 {
        for svc in &services {
            let _ = svc.clone().oneshot(()).await;
        }
    }
    let snapshot = witness.cycle_now();
    assert_eq!(snapshot.reports.len(), 1);
    assert_eq!(snapshot.reports[0].actions.len(), 8, "4 breakers, 4 limits");
    for (breaker, shed) in &handles {
        assert_eq!(breaker.state(), BreakerState::ForcedOpen);
        assert_eq!(shed.hard_limit(), 20);
    }
    // The breaker's own transition came back to the witness as a signal.
    assert!(
        witness
            .cycle_now()
            .components
            .iter()
            .all(|c| c.breaker.as_deref() == Some("forced_open"))
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(witness.cycle_now().actions.len(), 8);
    for (breaker, shed) in &handles {
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(shed.hard_limit(), 40);
    }
}
