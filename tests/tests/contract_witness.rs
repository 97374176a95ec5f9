//! The layer contract, run against `ObserveWitnessLayer`: what a request
//! holds is its place among its component's requests in flight.

use reflex_core::ConfigError;
use reflex_tests::contract::Subject;
use reflex_witness::{ObserveWitnessLayer, Witness};

struct Observe;

impl Subject for Observe {
    type Layer = ObserveWitnessLayer;

    fn layer() -> Self::Layer {
        Witness::builder()
            .build()
            .expect("valid config")
            .layer("contract")
            .build()
            .expect("room for one component")
    }

    fn held(layer: &Self::Layer) -> usize {
        let snapshot = layer.witness().cycle_now();
        let state = snapshot.component("contract").expect("followed");
        usize::try_from(state.in_flight).expect("small")
    }

    fn invalid_configs() -> Vec<Result<Self::Layer, ConfigError>> {
        let full = Witness::builder().max_components(1).build().expect("valid");
        let _first = full.layer("first").build().expect("room");
        vec![
            Witness::builder()
                .interval(std::time::Duration::ZERO)
                .build()
                .and_then(|w| w.layer("x").build()),
            Witness::builder()
                .interval(std::time::Duration::from_nanos(1))
                .build()
                .and_then(|w| w.layer("x").build()),
            Witness::builder()
                .history_limit(0)
                .build()
                .and_then(|w| w.layer("x").build()),
            Witness::builder()
                .history_limit(usize::MAX)
                .build()
                .and_then(|w| w.layer("x").build()),
            full.layer("second").build(),
        ]
    }
}

reflex_tests::layer_contract!(Observe);
