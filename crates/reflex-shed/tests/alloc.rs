//! The happy path allocates nothing.

use reflex_shed::ConcurrencyShedLayer;
use reflex_tests::support::{Echo, allocations_per_call};
use tower::Layer;

#[test]
fn admitting_and_completing_a_request_allocates_nothing() {
    let layer = ConcurrencyShedLayer::builder()
        .hard_limit(8)
        .soft_limit(4)
        .build()
        .unwrap();
    assert_eq!(allocations_per_call(&mut layer.layer(Echo), 1000), 0.0);
    assert_eq!(layer.handle().metrics().in_flight, 0);
}

#[test]
fn the_adaptive_path_allocates_nothing_per_request_either() {
    use reflex_shed::{Adaptive, Critical};

    // Windows close during the measure (one sample each): the recomputation
    // allocates nothing either.
    let layer = ConcurrencyShedLayer::builder()
        .adaptive(
            Adaptive::gradient()
                .min_samples(1)
                .window(std::time::Duration::from_nanos(1)),
        )
        .partition(|n: &u64| Some(n % 2))
        .share(0, 0.5)
        .share(1, 0.5)
        .critical(|n: &u64| (*n % 7 == 0).then_some(Critical))
        .build()
        .unwrap();
    assert_eq!(allocations_per_call(&mut layer.layer(Echo), 1000), 0.0);
    let metrics = layer.handle().metrics();
    assert_eq!(metrics.in_flight, 0);
    assert!(metrics.adaptive.unwrap().windows > 0);
}
