//! The layer contract, run against `SlotAdmissionLayer`.
//!
//! Each contract request has a slot of its own, so requests run side by
//! side, and what the layer holds for them is their busy slots.

use reflex_core::ConfigError;
use reflex_slot::{LayerPolicy, SlotAdmissionLayer};
use reflex_tests::contract::Subject;

struct Slot;

type SlotOf = fn(&String) -> Option<String>;

#[allow(clippy::ptr_arg, reason = "the contract's requests are Strings")]
fn slot_of(request: &String) -> Option<String> {
    Some(request.clone())
}

impl Subject for Slot {
    type Layer = SlotAdmissionLayer<String, SlotOf, LayerPolicy>;

    fn layer() -> Self::Layer {
        SlotAdmissionLayer::builder()
            .key(slot_of as SlotOf)
            .build()
            .expect("valid config")
    }

    fn held(layer: &Self::Layer) -> usize {
        layer.handle().metrics().busy_slots
    }

    fn invalid_configs() -> Vec<Result<Self::Layer, ConfigError>> {
        vec![
            SlotAdmissionLayer::builder()
                .key(slot_of as SlotOf)
                .queue_limit(0)
                .build(),
            SlotAdmissionLayer::builder()
                .key(slot_of as SlotOf)
                .global_queue_limit(0)
                .build(),
        ]
    }
}

reflex_tests::layer_contract!(Slot);
