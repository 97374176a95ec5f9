//! The contract every reflex builder, layer and handle shares
//! (`reflex_core::layer`), as the breaker keeps it: generic code builds it,
//! gives it the stack's classifier, and steers it through its control.

use reflex_breaker::{BreakerMetrics, CircuitBreakLayer, KeyedBreakerMetrics};
use reflex_core::{
    BoxError, BreakerState, Classified, Component, ConfigError, Control, Handled, LayerBuilder,
    LayerHandle, Outcome, Sink,
};
use tower::{Layer, Service, ServiceExt, service_fn};

/// What a stack does with any part: classify, name, sink, build.
fn build_part<P, C>(
    part: P,
    classifier: C,
) -> Result<<P::Builder as LayerBuilder>::Layer, ConfigError>
where
    P: Classified<C>,
{
    part.classified_by(classifier)
        .component(Component::new("db"))
        .sink(Sink::none())
        .build()
}

/// Every `Ok(0)` is a failure: a classifier that is not the default one.
fn zero_fails(result: Result<&u32, &BoxError>) -> Outcome {
    match result {
        Ok(0) | Err(_) => Outcome::Failure,
        Ok(_) => Outcome::Success,
    }
}

#[tokio::test]
async fn a_stack_names_classifies_and_builds_the_breaker_and_steers_it_through_its_control() {
    let builder = CircuitBreakLayer::builder().consecutive_failures(1);
    let layer = build_part(builder, zero_fails).unwrap();
    let handle = Handled::handle(&layer);
    assert_eq!(LayerHandle::component(&handle).as_str(), "db");

    // The stack's classifier, not the builder's default, judges the answer.
    let mut svc = layer.layer(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    assert_eq!(svc.ready().await.unwrap().call(0).await.unwrap(), 0);
    let metrics: BreakerMetrics = LayerHandle::metrics(&handle);
    assert_eq!(metrics.state, BreakerState::Open, "Ok(0) was a failure");

    let Some(Control::Breaker(control)) = layer.control() else {
        panic!("the breaker offers a breaker control");
    };
    control.reset();
    assert_eq!(handle.state(), BreakerState::Closed);
    control.trip();
    assert_eq!(handle.state(), BreakerState::Open);
}

#[tokio::test]
async fn a_stack_builds_the_keyed_breaker_the_same_way_and_reads_its_metrics() {
    let builder = CircuitBreakLayer::builder()
        .consecutive_failures(1)
        .key(|n: &u32| Some(n % 3))
        .max_keys(2);
    let layer = build_part(builder, zero_fails).unwrap();
    assert!(layer.control().is_none(), "keys are not components");
    let handle = Handled::handle(&layer);
    assert_eq!(LayerHandle::component(&handle).as_str(), "db");

    let mut svc = layer.layer(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    // 3 and 0 are key 0, 1 is key 1; Ok(0) is a failure.
    for n in [3, 1, 0] {
        svc.ready().await.unwrap().call(n).await.unwrap();
    }
    assert_eq!(handle.get(&0).unwrap().state(), BreakerState::Open);
    assert_eq!(handle.get(&1).unwrap().state(), BreakerState::Closed);
    // Key 2 finds no free place: it takes idle key 1's (key 0 is open).
    svc.ready().await.unwrap().call(2).await.unwrap();
    let metrics: KeyedBreakerMetrics = LayerHandle::metrics(&handle);
    assert_eq!((metrics.keys, metrics.max_keys), (2, 2));
    assert_eq!(metrics.evictions_total, 1);
    assert!(handle.get(&1).is_none());
    assert!(handle.get(&2).is_some());
}

#[test]
fn a_keyed_builder_refuses_zero_keys_through_the_trait_too() {
    let builder = CircuitBreakLayer::builder()
        .key(|n: &u32| Some(*n))
        .max_keys(0);
    let err = LayerBuilder::build(builder).unwrap_err();
    assert_eq!(err.setting(), "max_keys");
}
