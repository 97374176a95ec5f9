//! A request with no key costs nothing more than the check.

use reflex_dedup::DedupLayer;
use reflex_tests::support::{Echo, allocations_per_call};
use tower::Layer;

#[test]
fn a_request_without_a_key_allocates_nothing() {
    let layer = DedupLayer::builder()
        .key(|n: &u64| (*n == u64::MAX).then_some(*n))
        .build()
        .unwrap();
    assert_eq!(allocations_per_call(&mut layer.layer(Echo), 1000), 0.0);
    assert_eq!(layer.handle().metrics().in_flight_keys, 0);
}
