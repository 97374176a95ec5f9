//! An uncontended slot admits without allocating, when the layer never
//! replaces (a replaceable runner needs a cancellation token, which does).

use reflex_slot::{Policy, SlotAdmissionLayer};
use reflex_tests::support::{Echo, allocations_per_call};
use tower::Layer;

/// One slot, taken and given back by every call.
fn slot_of(_: &u64) -> Option<u64> {
    Some(7)
}

#[test]
fn an_uncontended_slot_admits_without_allocating_unless_it_may_replace() {
    let queue = SlotAdmissionLayer::builder().key(slot_of).build().unwrap();
    assert_eq!(allocations_per_call(&mut queue.layer(Echo), 1000), 0.0);
    assert_eq!(queue.handle().metrics().busy_slots, 0);

    let replace = SlotAdmissionLayer::builder()
        .key(slot_of)
        .policy(Policy::Replace)
        .build()
        .unwrap();
    assert_eq!(
        allocations_per_call(&mut replace.layer(Echo), 1000),
        1.0,
        "one cancellation token per running request"
    );
}
