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
