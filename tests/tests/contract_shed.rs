//! The layer contract, run against `ConcurrencyShedLayer`.

use reflex_core::ConfigError;
use reflex_shed::ConcurrencyShedLayer;
use reflex_tests::contract::Subject;

struct Shed;

impl Subject for Shed {
    type Layer = ConcurrencyShedLayer;

    fn layer() -> Self::Layer {
        ConcurrencyShedLayer::builder()
            .hard_limit(4)
            .soft_limit(2)
            .build()
            .expect("valid config")
    }

    fn held(layer: &Self::Layer) -> usize {
        layer.handle().metrics().in_flight
    }

    fn invalid_configs() -> Vec<Result<Self::Layer, ConfigError>> {
        vec![
            ConcurrencyShedLayer::builder().build(),
            ConcurrencyShedLayer::builder().hard_limit(0).build(),
            ConcurrencyShedLayer::builder()
                .hard_limit(usize::MAX)
                .build(),
            ConcurrencyShedLayer::builder()
                .hard_limit(4)
                .soft_limit(4)
                .build(),
            ConcurrencyShedLayer::builder()
                .hard_limit(4)
                .soft_limit(9)
                .build(),
        ]
    }
}

reflex_tests::layer_contract!(Shed);
