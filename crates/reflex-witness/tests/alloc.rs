//! Recording a request allocates nothing, with or without call patterns.

use reflex_tests::support::{Echo, allocations_per_call};
use reflex_witness::Witness;
use tower::Layer;

#[test]
fn recording_a_request_allocates_nothing() {
    let witness = Witness::builder().build().unwrap();
    let mut svc = witness.layer("db").build().unwrap().layer(Echo);
    assert_eq!(allocations_per_call(&mut svc, 1000), 0.0);
    let snapshot = witness.cycle_now();
    assert_eq!(snapshot.component("db").unwrap().succeeded, 1001);
}

#[test]
fn recording_a_chained_request_allocates_nothing() {
    let witness = Witness::builder().call_patterns(10, 2.0).build().unwrap();
    // Two components: the outer one starts each chain, the inner joins it.
    let mut svc = witness
        .layer("api")
        .build()
        .unwrap()
        .layer(witness.layer("db").build().unwrap().layer(Echo));
    assert_eq!(allocations_per_call(&mut svc, 1000), 0.0);
}
